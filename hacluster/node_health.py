"""This node's health verdict, as published in its heartbeat and used by `decide`.

Sources: the operator's standby flag (`<state_dir>/standby`, like `crm node standby`), recent
resource start failures (a node that just failed to start a role waits before trying again, so a
broken host doesn't grab the lease in a loop), and the tier's health checks (spec `health:`),
debounced by hacluster.health.checks and judged by hacluster.health.policy.

Checks with scope `holder` (the MTA, the mounted spool) only count while this node holds a role:
a standby store has neither running, and must not look unhealthy for it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .coord.model import Member
from .health.checks import Check, CheckResult, HealthMonitor
from .health.policy import evaluate
from .spec import CheckSpec, ClusterSpec, NodeSpec

log = logging.getLogger(__name__)

FAILURE_BACKOFF_S = 30.0


def build_probe(cs: CheckSpec, subst: dict[str, str]) -> Any:
    """The probe object for one check spec; params may use {node}/{state_dir}/{cluster}."""
    p = {k: (v.format(**subst) if isinstance(v, str) else v) for k, v in cs.params.items()}
    if cs.check == "smtp":
        from .health.smtp import SmtpProbe

        return SmtpProbe(**p)
    if cs.check == "mta":
        from .health.mta import MtaProcessCheck, RestartBudget

        budget = RestartBudget(int(p.pop("max_restarts", 3)), float(p.pop("restart_window_s", 300.0)))
        return MtaProcessCheck(restarts=budget, **p)
    if cs.check == "queue":
        from .health.queue import QueueCheck

        return QueueCheck(**p)
    if cs.check == "spool":
        from .health.spool import SpoolCheck

        return SpoolCheck(**p)
    if cs.check == "raid":
        from .health.raid import RaidCheck

        arrays = p.get("arrays")
        return RaidCheck(mdstat_path=p.get("mdstat", "/proc/mdstat"), arrays=tuple(arrays) if arrays else None)
    raise ValueError(f"unknown check {cs.check}")


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

    def start(self) -> None:
        if self.monitor is not None:
            self.monitor.run_all_once()  # never publish "healthy" before the first check ran
            self.monitor.start()

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()

    def note_failure(self, role: str) -> None:
        self.failures[role] = time.monotonic()

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
            counted = {n: r for n, r in snap.items() if holding or self.scope.get(n) == "node"}
            required = [n for n, sc in self.scope.items() if holding or sc == "node"]
            verdict = evaluate(counted, required)
            healthy = healthy and verdict.healthy
            demote = demote or verdict.demote
            penalty += verdict.score_penalty
            reasons.extend(verdict.reasons)
            details = {n: r.to_json() | {"scope": self.scope.get(n)} for n, r in snap.items()}
            self.last = snap
        return Member(self.node.name, self.node.tier, self.node.priority, healthy, demote, penalty,
                      tuple(reasons), details, None, None)
