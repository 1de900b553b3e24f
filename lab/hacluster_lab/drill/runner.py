"""Run a playbook against a target: settle, monitor, execute the steps, drain, audit, judge.

The steps run in order, each bounded; the whole drill is bounded by the playbook's `timeout`.
A step that fails (a fault that cannot be applied, a switchover refused) is recorded as a failed
expectation and the remaining steps still run, so a drill always ends with its restore steps and
the next drill starts from a whole cluster (the runner also settles the target before each drill).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacluster.errors import UserError
from .expect import Recording, Result, judge
from .playbook import Playbook, Ref, Step
from .target import Target

POLL_S = 0.2
QUEUE_SAMPLE_S = 0.5
DEFAULT_RATE = 5.0
DEFAULT_CONNECTIONS = 4
BASELINE_TIMEOUT_S = 60.0


@dataclass
class DrillReport:
    playbook: str
    name: str
    target: str
    passed: bool
    seconds: float
    expectations: list[Result]
    steps: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    timeline: str | None = None
    ledger: dict[str, Any] | None = None
    holders: list[dict[str, Any]] = field(default_factory=list)  # VIP holder changes, t since the start
    logs: str | None = None  # where a failed drill's node logs were copied
    not_applicable: str | None = None  # why the target cannot run this playbook (then nothing ran)
    setup: dict[str, Any] = field(default_factory=dict)  # the spec the agents were moved to first (use_spec)


    def to_dict(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "name": self.name, "target": self.target, "passed": self.passed,
                "seconds": self.seconds, "expectations": [r.to_dict() for r in self.expectations],
                "steps": self.steps, "baseline": self.baseline, "timeline": self.timeline, "ledger": self.ledger,
                "holders": self.holders, "logs": self.logs, "not_applicable": self.not_applicable, "setup": self.setup}


class StepError(Exception):
    pass


class _QueueSampler:
    """Queue lengths every QUEUE_SAMPLE_S in the background: the timeline's "queues drain" panel."""

    def __init__(self, target: Target, end_s: float) -> None:
        self.target = target
        self.samples: list[tuple[float, dict[str, int | None]]] = []
        self._stop = threading.Event()
        self._end = time.monotonic() + end_s
        self._thread = threading.Thread(target=self._run, daemon=True, name="drill-queues")

    def start(self) -> "_QueueSampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._end:
            try:
                self.samples.append((time.monotonic(), self.target.queue_lengths(None)))
            except Exception:  # a sample missed is not a drill failure
                pass
            self._stop.wait(QUEUE_SAMPLE_S)

    def stop(self) -> list[tuple[float, dict[str, int | None]]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples


class Runner:
    def __init__(self, pb: Playbook, target: Target, out_dir: Path | None = None) -> None:
        self.pb = pb
        self.target = target
        self.out_dir = out_dir
        self.roles = target.roles()
        self.vars: dict[str, str] = {}
        self.traffic_on = False
        self.standby_nodes: set[str] = set()  # nodes this drill put in standby (lifted by restore)
        self.scheduled: set[str] = set()  # roles with a switchover this drill scheduled (cancelled by restore)
        self.placed: set[str] = set()  # roles whose placement this drill changed (the spec's again after restore)
        self.submissions: list[Any] = []

    # ------------------------------------------------------------------ references

    def resolve(self, ref: Ref) -> str:
        t = ref.text
        if t.startswith("$"):
            if t[1:] not in self.vars:
                raise StepError(f"{t} is not bound")
            return self.vars[t[1:]]
        if ref.role:
            role = ref.role
            holders = self.target.holders(role)
            if t.startswith("holder("):
                if len(holders) != 1:
                    raise StepError(f"{t}: {len(holders)} holders ({', '.join(holders) or 'none'})")
                return holders[0]
            off = self.target.powered_off()
            for cand in self.roles[role].candidates:
                if cand not in holders and cand not in off:
                    return cand
            raise StepError(f"{t}: no powered-on candidate besides {', '.join(holders) or 'nobody'}")
        if t in ("zk-leader", "zk-follower"):
            modes = self.target.zk_modes()
            want = "leader" if t == "zk-leader" else "follower"
            found = sorted(n for n, m in modes.items() if m == want or (want == "leader" and m == "standalone"))
            if not found:
                raise StepError(f"{t}: none (ZooKeeper modes {modes})")
            return found[0]
        return t

    def resolve_many(self, refs: tuple[Ref, ...]) -> list[str]:
        out: list[str] = []
        for ref in refs:
            out.extend(self.target.zk_hosts() if ref.text == "zk-all" else [self.resolve(ref)])
        return out

    # ------------------------------------------------------------------ run

    def run(self) -> DrillReport:
        pb, target = self.pb, self.target
        t_start = time.monotonic()
        try:
            setup = target.use_spec(dict(pb.spec))  # the drill's spec overrides (none: the target's own spec)
            baseline = target.baseline(BASELINE_TIMEOUT_S)
        except UserError as err:  # the drill cannot start from a whole cluster: say so, run nothing
            res = Result("baseline", 0, False, str(err), "cluster settled before the drill", "steps not run")
            return DrillReport(pb.source, pb.name, target.name, False, round(time.monotonic() - t_start, 3), [res])
        target.start_monitor(duration_s=pb.timeout_s + 300)
        t0 = time.monotonic()
        queues = _QueueSampler(target, pb.timeout_s + 300).start()
        rec = Recording(t0, t0, self.roles, None)  # type: ignore[arg-type]
        deadline = t0 + pb.timeout_s
        try:
            for step in pb.steps:
                if time.monotonic() > deadline:
                    rec.errors.append({"line": step.line, "step": step.label,
                                       "error": f"drill timeout {pb.timeout_s:g}s reached before this step"})
                    break
                self._step(step, rec, deadline)
        finally:
            if self.traffic_on:
                self.submissions = target.stop_traffic()
                self.traffic_on = False
        rec.t_steps_end = time.monotonic()
        rec.vars = dict(self.vars)
        drain_within = max((e.args["within"] for e in pb.expect if e.kind == "queues_drain"), default=None)
        if drain_within is not None:
            nodes = next((e.args.get("nodes") for e in pb.expect if e.kind == "queues_drain"), None)
            rec.drain = self._drain(self.resolve_many(nodes) if nodes else None, drain_within)
        lost_wait = next((e.args.get("wait") or 60.0 for e in pb.expect if e.kind == "no_lost_mail"), None)
        if self.submissions:
            rec.ledger = target.audit(self.submissions, lost_wait or 30.0)
        report_fences = getattr(target, "fence_report", None)  # (duck-typed targets may lack it)
        rec.fence = report_fences() if report_fences is not None else None
        rec.monitor = target.stop_monitor()
        qsamples = queues.stop()
        rec.queues = qsamples
        results = judge(pb, rec)
        report = DrillReport(pb.source, pb.name, target.name, all(r.passed for r in results),
                             round(time.monotonic() - t0, 3), results, [dict(ev) for ev in rec.events], baseline, None,
                             rec.ledger,
                             [{**tr, "t": round(tr["t"] - t0, 3)} for tr in rec.monitor.transitions])
        report.setup = setup
        for ev in report.steps:  # times relative to the drill start, like the picture
            ev["t_end"] = round(ev.get("t_end", ev["t"]) - t0, 3)
            ev["t"] = round(ev["t"] - t0, 3)
        if self.out_dir is not None:
            from .timeline import render

            self.out_dir.mkdir(parents=True, exist_ok=True)
            report.timeline = str(render(self.out_dir / f"{pb.name}.png", pb, rec, self.submissions, qsamples))
        return report

    def _drain(self, nodes: list[str] | None, within: float) -> dict[str, Any]:
        t0 = time.monotonic()
        remaining: dict[str, int | None] = {}
        while True:
            q = self.target.queue_lengths(nodes)
            remaining = {n: v for n, v in q.items() if v}
            if not remaining:
                return {"seconds": round(time.monotonic() - t0, 3), "remaining": {}}
            if time.monotonic() - t0 > within:
                return {"seconds": None, "remaining": remaining}
            time.sleep(POLL_S)

    def _await_holder_windows(self, rec: Recording, cap_s: float = 30.0) -> None:
        """Before restore ends the recording: let every `holder` expectation whose anchor step
        has run see its whole window (until the node holds, or `within` has passed), so the verdict
        does not depend on how soon the playbook's last step followed (a switchover is "done" when
        the lease moved; the VIP follows some ms later)."""
        end = time.monotonic() + cap_s
        for e in self.pb.expect:
            if e.kind != "holder" or e.args.get("after") not in rec.marks:
                continue
            ref = e.args["node"]
            node = self.vars.get(ref.text[1:]) if ref.text.startswith("$") else ref.text
            until = min(end, rec.marks[e.args["after"]] + e.args["within"])
            role = e.args.get("role") or self.pb.role
            while time.monotonic() < until and self.target.holders(role) != [node]:
                time.sleep(0.05)

    def _step(self, step: Step, rec: Recording, deadline: float) -> None:
        t = time.monotonic()
        if step.id:
            rec.marks[step.id] = t
        ev: dict[str, Any] = {"t": t, "kind": step.kind, "label": step.label, "line": step.line, "ok": True}
        rec.events.append(ev)
        try:
            detail = self._do(step, rec, deadline)
            if detail is not None:
                ev["detail"] = detail
                if isinstance(detail, dict) and detail.get("resolved"):
                    what = step.args.get("kind") or step.args.get("sample") or step.args.get("fill") or ""
                    peer = detail.get("peer")
                    ev["label"] = " ".join(x for x in (step.kind, what, detail["resolved"],
                                                       f"| {peer}" if peer else "") if x)
                if isinstance(detail, dict) and "t_mono" in detail:
                    ev["t"] = detail["t_mono"]  # the lab's own stamp, taken just before the action
                    if step.id:
                        rec.marks[step.id] = detail["t_mono"]
        except (StepError, UserError, OSError) as err:
            ev["ok"] = False
            ev["error"] = str(err)
            rec.errors.append({"line": step.line, "step": step.label, "error": str(err)})
        ev["t_end"] = time.monotonic()
        if step.kind == "wait_until" and step.id:
            rec.marks[step.id] = ev["t_end"]  # "after: ID" means after the condition was reached

    def _do(self, step: Step, rec: Recording, deadline: float) -> Any:
        a, target = step.args, self.target
        if step.kind == "wait":
            time.sleep(max(0.0, min(a["seconds"], deadline - time.monotonic())))
            return None
        if step.kind == "mark":
            rec.marks[a["name"]] = time.monotonic()
            return None
        if step.kind == "bind":
            for var, ref in a["vars"].items():
                self.vars[var] = self.resolve(ref)
            return {"bound": {v: self.vars[v] for v in a["vars"]}}
        if step.kind == "start_traffic":
            target.start_traffic(a.get("rate") or DEFAULT_RATE, a.get("connections") or DEFAULT_CONNECTIONS)
            self.traffic_on = True
            return None
        if step.kind == "stop_traffic":
            if self.traffic_on:
                self.submissions = target.stop_traffic()
                self.traffic_on = False
            return {"submitted": len(self.submissions), "accepted": sum(1 for s in self.submissions if s.accepted)}
        if step.kind in ("fault", "restart_agent", "raid", "spool"):
            node = self.resolve(a["node"]) if a.get("node") is not None else None
            if step.kind == "fault":
                peer = self.resolve_many(a["peer"]) if a.get("peer") is not None else None
                out = target.fault(a["kind"], node, peer)
            elif step.kind == "restart_agent":
                out = target.fault("restart-agent", node, None)
            elif step.kind == "raid":
                out = target.raid_sample(node or "", a["sample"])
            else:
                out = target.spool_fill(node or "", a["fill"])
            if a.get("as") and node:
                self.vars[a["as"]] = node
            return {**out, "resolved": node} if isinstance(out, dict) else out
        if step.kind == "restore":
            self._await_holder_windows(rec)
            lifted = self._lift_placement()
            out = target.restore()
            return {**out, "lifted": lifted} if lifted and isinstance(out, dict) else out
        if step.kind in ("standby", "unstandby"):
            node = self.resolve(a["node"])
            args = ["node", step.kind, node]
            if step.kind == "standby":
                args += ["--wait", f"{a.get('wait') or 10.0:g}"] + (["--lifetime", f"{a['lifetime']:g}"] if a.get("lifetime") else [])
                self.standby_nodes.add(node)
            else:
                self.standby_nodes.discard(node)
            out = target.operator(args, timeout=(a.get("wait") or 10.0) + 30)
            if out.get("rc") != 0:
                raise StepError(f"node {step.kind} {node}: {out.get('error') or out}")
            if a.get("as"):
                self.vars[a["as"]] = node
            return out
        if step.kind == "placement":
            role = a.get("role") or self.pb.role
            keys = {k: a[k] for k in ("failback", "prefer", "nodes", "avoid_with") if a.get(k) is not None}
            out = target.set_placement(role, keys)
            self.placed.add(role)
            return out
        if step.kind == "imap":
            # poll (bounded by `timeout` and the drill's deadline) until the mailbox shows enough
            end = min(time.monotonic() + (a.get("timeout") or 0.0), deadline)
            user = a.get("user") or "user"
            token = target.send_probe(user) if a.get("send") else None  # a fresh message, sent by MX now
            tries = 0
            while True:
                tries += 1
                out = target.imap_read(user, token)
                if not out.get("error") and out.get("messages", 0) >= (a.get("min_messages") or 0) \
                        and (token is None or out.get("found")):
                    break
                if time.monotonic() >= end:
                    raise StepError(f"imap through the VIP: {out.get('error') or out}")
                time.sleep(0.5)
            out["tries"] = tries
            if token is not None:
                out["token"] = token
            if a.get("as"):
                self.vars[a["as"]] = str(out.get("messages"))
            return out
        if step.kind == "switchover" and a.get("at"):
            role = a.get("role") or self.pb.role
            to = self.resolve(a["to"]) if a.get("to") is not None else None
            when = f"+{a['at']:g}s"  # from when the CLI runs: its start-up (slow on a loaded host) does not eat it
            out = target.operator(["switchover", role, "--yes", "--at", when] + (["--to", to] if to else []))
            if out.get("rc") != 0:
                raise StepError(f"switchover {role} at {when}: {out.get('error') or out}")
            self.scheduled.add(role)
            return {**out, "at": when}
        if step.kind == "switchover":
            role = a.get("role") or self.pb.role
            to = self.resolve(a["to"]) if a.get("to") is not None else None
            out = target.switchover(role, to, a.get("wait") or 10.0)
            if out.get("rc") != 0 or not out.get("done"):
                raise StepError(f"switchover {role} to {to or '(any)'}: {out.get('error') or out}")
            return out
        if step.kind == "maintenance":
            out = target.maintenance(a["state"] == "on")
            if out.get("rc") != 0:
                raise StepError(f"maintenance {a['state']}: {out.get('out')}")
            return out
        if step.kind == "wait_until":
            return self._wait_until(step, rec, deadline)
        raise StepError(f"unknown step {step.kind}")

    def _lift_placement(self) -> dict[str, Any]:
        """Restore undoes the operator's placement a drill left behind (a standby, a scheduled
        switchover not carried out), so the next drill starts from a clean cluster."""
        lifted: dict[str, Any] = {}
        for node in sorted(self.standby_nodes):
            lifted[f"unstandby {node}"] = self.target.operator(["node", "unstandby", node]).get("rc")
        for role in sorted(self.placed):
            lifted[f"placement {role}"] = self.target.set_placement(role, None).get("restarted")
        for role in sorted(self.scheduled):
            lifted[f"cancel {role}"] = self.target.operator(["switchover", role, "--cancel"]).get("rc")
        self.standby_nodes.clear()
        self.scheduled.clear()
        self.placed.clear()
        return lifted

    def _wait_until(self, step: Step, rec: Recording, deadline: float) -> dict[str, Any]:
        a = step.args
        cond = a["condition"]
        t0 = time.monotonic()
        end = min(t0 + a["timeout"], deadline)
        check = self._condition(a)
        last = ""
        reached = False
        while True:
            ok, last = check()
            if ok:
                reached = True
                break
            if time.monotonic() >= end:
                break
            time.sleep(POLL_S)
        secs = round(time.monotonic() - t0, 3)
        wid = step.id or f"line {step.line}"
        rec.waits[wid] = {"reached": reached, "seconds": secs, "timeout": a["timeout"], "line": step.line,
                          "condition": cond, "last": last}
        return {"reached": reached, "seconds": secs, "state": last}

    def _condition(self, a: dict[str, Any]):
        """A zero-argument check -> (satisfied, what was seen), with references resolved once."""
        cond, target = a["condition"], self.target
        if cond == "holder":
            role = a.get("role") or self.pb.role
            node = a["node"]  # "any", "none" or a Ref: required by the playbook reader
            want = None if node == "any" else [] if node == "none" else [self.resolve(node)]

            def holder() -> tuple[bool, str]:
                hs = target.holders(role)
                ok = len(hs) == 1 if want is None else hs == want
                return ok, f"{role} held by {', '.join(hs) or 'nobody'}"
            return holder
        if cond == "zk_leader":
            old = self.resolve(a["not"])

            def leader() -> tuple[bool, str]:
                modes = target.zk_modes()
                lead = [n for n, m in modes.items() if m in ("leader", "standalone")]
                return bool(lead) and lead[0] != old, f"ZooKeeper modes {modes}"
            return leader
        if cond == "zk_serving":
            n = a["count"]

            def serving() -> tuple[bool, str]:
                modes = target.zk_modes()
                return sum(1 for m in modes.values() if m) >= n, f"ZooKeeper modes {modes}"
            return serving
        if cond == "member":
            node = self.resolve(a["node"])

            def member() -> tuple[bool, str]:
                m = target.member(node)
                if m is None:
                    return False, f"{node}: no membership record"
                reasons = " | ".join(m.get("reasons") or [])
                ok = True
                if a.get("reason") is not None:
                    ok = ok and a["reason"] in reasons
                if a.get("no_reason") is not None:
                    ok = ok and a["no_reason"] not in reasons
                if a.get("healthy") is not None:
                    ok = ok and bool(m.get("healthy")) == a["healthy"]
                return ok, f"{node}: healthy={m.get('healthy')} reasons=[{reasons}]"
            return member
        if cond == "queues_empty":
            nodes = self.resolve_many(a["nodes"]) if a.get("nodes") else None

            def empty() -> tuple[bool, str]:
                q = {n: v for n, v in target.queue_lengths(nodes).items() if v}
                return not q, f"queued {q}"
            return empty
        raise StepError(f"unknown condition {cond}")


def run_playbook(pb: Playbook, target: Target, out_dir: Path | None) -> DrillReport:
    return Runner(pb, target, out_dir).run()
