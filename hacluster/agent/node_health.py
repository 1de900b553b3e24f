"""This node's health verdict, as published in its heartbeat and used by `decide`.

Sources: the operator's standby flag (`<state_dir>/standby`, like `crm node standby`), recent
resource start failures (a node that just failed to start a role waits before trying again, so a
broken host doesn't grab the lease in a loop), and the tier's health checks (spec `health:`),
debounced by hacluster.health.checks and judged by hacluster.health.policy.

Checks with scope `holder` (the MTA, the mounted spool) only count while this node holds a role:
a standby store has neither running, and must not look unhealthy for it. Two refinements (see
`_counted`): a holder check counts only from the first probe that started after the holding
began, and a holder check that demoted the node keeps counting while it still says "demote"
(otherwise the demoted node looks healthy at once and takes the role back: flapping).

Repair (the policy's "unhealthy: a holder keeps its roles while the agent repairs"): when the MTA
check finds the master dead on a holder, *after* it was seen running under the current holding
(before that, the role's own resource start is in charge), `MtaRepair` restarts the instance on a
thread of its own (a Postfix start takes ~0.3-1 s; the loop must keep renewing the lease) and
records the attempt in the check's RestartBudget. Once the budget is spent the check reports
"not restartable" and the policy demotes. A repair that finishes after the node stopped holding
stops the instance again.

Every change of the verdict's findings is logged (WARNING when something is wrong, INFO when it
cleared), so an alert that does not fail over (a degraded array) is still in the agent log.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from hacluster.coord.model import Member
from hacluster.health.checks import Check, CheckResult, HealthMonitor
from hacluster.health.policy import evaluate
from hacluster.spec import CheckSpec, ClusterSpec, NodeSpec

log = logging.getLogger(__name__)

FAILURE_BACKOFF_S = 30.0


def build_probe(cs: CheckSpec, subst: dict[str, str]) -> Any:
    """The probe object for one check spec; params may use {node}/{state_dir}/{cluster}."""
    def sub(v: Any) -> Any:
        if isinstance(v, str):  # only our names: a shell command's own braces stay as written
            for k, val in subst.items():
                v = v.replace("{" + k + "}", val)
        elif isinstance(v, list):
            v = [sub(x) for x in v]
        return v

    p: dict[str, Any] = {k: sub(v) for k, v in cs.params.items()}
    if cs.check == "smtp":
        from hacluster.health.smtp import SmtpProbe

        return SmtpProbe(**p)
    if cs.check == "mta":
        from hacluster.health.mta import MtaProcessCheck, RestartBudget

        budget = RestartBudget(int(p.pop("max_restarts", 3)), float(p.pop("restart_window_s", 300.0)))
        return MtaProcessCheck(restarts=budget, **p)
    if cs.check == "queue":
        from hacluster.health.queue import QueueCheck

        return QueueCheck(**p)
    if cs.check == "spool":
        from hacluster.health.spool import SpoolCheck

        return SpoolCheck(**p)
    if cs.check == "raid":
        from hacluster.health.raid import RaidCheck

        arrays = p.get("arrays")
        return RaidCheck(mdstat_path=p.get("mdstat", "/proc/mdstat"), arrays=tuple(arrays) if arrays else None,
                         simulated=bool(p.get("simulated", False)))
    if cs.check == "command":
        from hacluster.health.command import CommandProbe

        cmd = p["exec"]
        return CommandProbe(cmd if isinstance(cmd, str) else tuple(cmd), p.get("on_fail", "demote"))
    if cs.check == "link":
        from hacluster.health.link import LinkProbe

        return LinkProbe(p["interface"], p.get("on_fail", "demote"))
    if cs.check in ("imap", "pop3", "submission", "smtps"):
        from hacluster.health.mailproto import MailProtocolProbe

        return MailProtocolProbe(cs.check, **p)
    if cs.check == "config_digest":
        from hacluster.health.config_digest import ConfigDigestProbe

        pc = p.get("postconf", False)
        return ConfigDigestProbe(tuple(pc) if isinstance(pc, list) else bool(pc), tuple(p.get("files") or ()),
                                 p.get("config_dir"), tuple(p.get("exclude") or ()),
                                 tuple(str(f) for f in cs.params.get("files") or ()))
    raise ValueError(f"unknown check {cs.check}")


class MtaRepair:
    """Restarts a holder's dead MTA within the check's RestartBudget (see the module docstring)."""

    def __init__(self, node: str, runner: Any, probe: Any) -> None:
        self.node = node
        self.runner = runner  # CheckRunner of the mta check
        self.probe = probe  # MtaProcessCheck (config_dir, restarts)
        self.holding = False
        self.holding_since = 0.0
        self.seen_up = False  # the master ran at some point during the current holding
        self.last_attempt = 0.0
        self.last_done = 0.0  # a probe that started before the last restart ended proves nothing
        self.thread: threading.Thread | None = None
        self.attempts_total = 0

    def update(self, holding: bool) -> None:
        now = time.monotonic()
        if holding and not self.holding:
            self.holding_since, self.seen_up = now, False
        self.holding = holding
        if not holding:
            return
        raw, ran_at = self.runner.raw, self.runner.last_run
        if raw is None or ran_at is None or ran_at < self.holding_since:
            return  # no result from this holding yet
        running = raw.data.get("running") if isinstance(raw.data, dict) else None
        if running is True:
            self.seen_up = True
            return
        if (running is False and self.seen_up and raw.data.get("restartable") is True
                and ran_at > self.last_done and not (self.thread and self.thread.is_alive())):
            self.last_attempt = time.monotonic()
            self.probe.restarts.begin()
            self.attempts_total += 1
            log.warning("%s: mta %s: master dead on the holder; restart attempt %d (budget %d in %gs)",
                        self.node, self.probe.config_dir, self.probe.restarts.attempts(),
                        self.probe.restarts.max_restarts, self.probe.restarts.window_s)
            self.thread = threading.Thread(target=self._restart, name="mta-repair", daemon=True)
            self.thread.start()

    def _restart(self) -> None:
        from hacluster.resources.base import OCF
        from hacluster.resources.mta import MtaResource

        mta = MtaResource(f"repair:{self.probe.config_dir}", self.probe.config_dir, restart_attempts=0)
        try:
            rc = mta.start()
        finally:
            self.last_done = time.monotonic()
            self.probe.restarts.end()
        if rc != OCF.SUCCESS:
            log.error("%s: mta %s: restart failed (%s)", self.node, self.probe.config_dir, rc.name)
        elif not self.holding:
            log.warning("%s: mta %s: restarted after this node stopped holding; stopping it again",
                        self.node, self.probe.config_dir)
            mta.stop()
        else:
            log.warning("%s: mta %s: restarted", self.node, self.probe.config_dir)


class NodeHealth:
    def __init__(self, spec: ClusterSpec, node: NodeSpec, state_dir: Path) -> None:
        self.spec = spec
        self.node = node
        self.standby_file = state_dir / "standby"
        self.failures: dict[str, float] = {}
        subst = {"node": node.name, "state_dir": str(state_dir), "cluster": spec.name}
        self.specs = spec.health.get(node.tier, ())
        self.scope = {cs.check: cs.scope for cs in self.specs}
        self.monitor: HealthMonitor | None = None
        if self.specs:
            self.monitor = HealthMonitor([
                Check(cs.check, build_probe(cs, subst), cs.interval_s, cs.timeout_s, cs.rise, cs.fall)
                for cs in self.specs
            ])
        self.last: dict[str, CheckResult] = {}
        self.repair: MtaRepair | None = None
        if self.monitor is not None and "mta" in self.monitor.runners:
            runner = self.monitor.runners["mta"]
            self.repair = MtaRepair(node.name, runner, runner.check.probe)
        self._reasons: tuple[str, ...] = ()
        self._holding_since: float | None = None
        self._sticky: set[str] = set()  # holder checks that demoted us and still fail

    def start(self) -> None:
        if self.monitor is not None:
            self.monitor.run_all_once()  # never publish "healthy" before the first check ran
            self.monitor.start()

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()

    def note_failure(self, role: str) -> None:
        self.failures[role] = time.monotonic()

    def _counted(self, snap: dict[str, CheckResult], holding: bool) -> dict[str, CheckResult]:
        """The results that count now. scope node: always. scope holder: while holding, only
        results of probes that started after the holding began (a standby's "MTA not running"
        must not demote the node the moment it acquires, before its own resource start ran);
        while not holding, only a holder check that demoted this node and still says "demote"
        (sticky: an unwritable spool or a spent MTA restart budget keeps the node out of the
        running until it recovers, instead of re-acquiring and demoting again)."""
        now = time.monotonic()
        if holding and self._holding_since is None:
            self._holding_since = now
        elif not holding:
            self._holding_since = None
        runners = self.monitor.runners if self.monitor is not None else {}
        out: dict[str, CheckResult] = {}
        for n, r in snap.items():
            if self.scope.get(n) == "node":
                out[n] = r
            elif holding:
                ran = runners[n].last_run if n in runners else None
                if ran is not None and self._holding_since is not None and ran >= self._holding_since:
                    out[n] = r
            elif n in self._sticky and evaluate({n: r}).demote:
                out[n] = r
        if holding:
            self._sticky = {n for n, r in out.items() if self.scope.get(n) == "holder" and evaluate({n: r}).demote}
        else:
            self._sticky = {n for n in self._sticky if n in out}
        return out

    def evaluate(self, holding: bool = False) -> Member:
        reasons: list[str] = []
        healthy, demote, penalty = True, False, 0
        details: dict[str, Any] = {}
        if self.standby_file.exists():
            healthy, demote = False, True
            reasons.append("standby")
        recent = [r for r, t in self.failures.items() if time.monotonic() - t < FAILURE_BACKOFF_S]
        if recent:
            healthy = False
            reasons.append("resource start failed: " + ",".join(sorted(recent)))
        if self.monitor is not None:
            snap = self.monitor.snapshot()
            counted = self._counted(snap, holding)
            required = [n for n, sc in self.scope.items() if holding or sc == "node"]
            verdict = evaluate(counted, required)
            healthy = healthy and verdict.healthy
            demote = demote or verdict.demote
            penalty += verdict.score_penalty
            reasons.extend(verdict.reasons)
            details = {n: r.to_json() | {"scope": self.scope.get(n)} for n, r in snap.items()}
            self.last = snap
        if self.repair is not None:
            self.repair.update(holding)
        if tuple(reasons) != self._reasons:
            if reasons:
                log.warning("%s health: %s%s (penalty %d)", self.node.name, "DEMOTE: " if demote else
                            ("" if healthy else "unhealthy: "), "; ".join(reasons), penalty)
            else:
                log.info("%s health: all checks pass", self.node.name)
            self._reasons = tuple(reasons)
        return Member(self.node.name, self.node.tier, self.node.priority, healthy, demote, penalty,
                      tuple(reasons), details, None, None)
