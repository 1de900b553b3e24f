"""One chaos run in a fresh lab (`run_once`), and the whole command: run, check, shrink (`chaos`).

run_once: lab up -> a single store holder -> invariant monitor + two mail streams (by MX to the
relays, and straight to the store VIP) -> the schedule -> heal everything -> recovery times ->
stop the mail -> audit every Maildir -> check -> lab down (always).

chaos: run_once on the seeded schedule; on a violation, shrink: re-run subsets of the faults
(each in a fresh lab, compacted in time) until a minimal failing sequence is found or the budget
ends. `execute` is injectable so the check-and-shrink path is tested without a lab.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .check import RECOVERY_BOUND_S, Verdict, evaluate, same_failure
from .schedule import Fault, Schedule
from .shrink import ShrinkResult, shrink

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
RERUN_OVERHEAD_S = 90.0  # lab up, holder, heal, recovery, audit, lab down around a re-run's faults


@dataclass(frozen=True)
class RunOptions:
    state_dir: str = "/run/hacluster-lab-hx"
    prefix: str = "hx-"
    rate_per_s: float = 2.0  # per mail stream
    recovery_limit_s: float = 90.0  # stop waiting for recovery after this (then: violation)
    recovery_bound_s: float = RECOVERY_BOUND_S  # max_recovery_s above this is a violation
    audit_wait_s: float = 120.0
    monitor_interval_s: float = 0.01
    holder_timeout_s: float = 60.0
    supervise_s: float | None = 1.0  # systemd RestartSec for agents that exit by themselves (None: off)
    allow_duplicates: int = 0  # duplicated messages the run may have before it fails (explicit budget)
    failsafe: bool = False  # the lab spec with `failsafe: true` (docs/safety.md "Failsafe mode")
    # the stores deliver into one Maildir tree (LabOptions.shared_spool): the duplicate record of
    # the delivery agent (hacluster.spool.dedup) is then one for both, as on a real store pair's
    # shared or replicated storage; per-node trees cannot see each other's deliveries
    shared_maildir: bool = True


@dataclass
class RunResult:
    verdict: Verdict
    report: dict[str, Any]
    t0: float | None = None  # CLOCK_MONOTONIC of the schedule's start
    submissions_t: dict[str, float] = field(default_factory=dict)


def _quiet(_: str) -> None:
    pass


def run_once(schedule: Schedule, opts: RunOptions, progress: Progress = _quiet) -> RunResult:
    """Run `schedule` in a fresh lab; the lab is torn down whatever happens."""
    from ..lab.lab import Lab
    from ..lab.mailload import MailLoad, audit
    from ..lab.variant import with_failsafe
    from hacluster.spec import default_spec_text, parse_spec
    from .runner import Runner, heal_everything, wait_recovered

    t_start = time.monotonic()
    from ..lab.state import LabOptions

    options = LabOptions(shared_spool=opts.shared_maildir)
    lab = Lab(None, opts.state_dir, opts.prefix, options)
    if opts.failsafe:
        text = with_failsafe(default_spec_text(), True)
        lab = Lab(parse_spec(text, "<lab spec, failsafe on>"), opts.state_dir, opts.prefix, options, spec_text=text)
    loads: dict[str, MailLoad] = {}
    mon = None
    runner: Runner | None = None
    try:
        up = lab.up()
        progress(f"lab up in {up.seconds:.1f}s ({opts.prefix}, {opts.state_dir})")
        holder = _single_holder(lab, opts.holder_timeout_s)
        progress(f"store VIP on {holder}; {len(schedule.faults)} faults over {schedule.duration_s:g}s, seed {schedule.seed}")
        mon = lab.monitor(interval_s=opts.monitor_interval_s,
                          duration_s=schedule.duration_s + opts.recovery_limit_s + opts.audit_wait_s + 300).start()
        vip = next(v.ip for v in lab.plan.vips if v.role == "store" and v.address.version == 4)
        max_s = schedule.duration_s + opts.recovery_limit_s + 120
        for name, target in (("mx", "mx"), ("vip", vip)):
            loads[name] = MailLoad(lab, target, rate_per_s=opts.rate_per_s, connections=2, timeout_s=3.0,
                                   max_s=max_s, run_id=f"hx{schedule.seed % 10**6}{name}").start()
        runner = Runner(lab, schedule, on_action=lambda r: progress(_fmt_action(r)), supervise_s=opts.supervise_s)
        t0 = time.monotonic()
        fault_log = runner.run(t0)
        progress("schedule done: healing everything")
        heal = heal_everything(lab)
        recovery = wait_recovered(lab, heal["t_mono"], opts.recovery_limit_s)
        progress(f"recovery: max {recovery['max_recovery_s']}s {recovery['components_s']}")
        time.sleep(2.0)  # mail keeps flowing through the healed cluster for a moment
        subs = {name: ld.stop() for name, ld in loads.items()}
        queues = {h.name: lab.paths.postfix_queue(h.name)
                  for h in lab.plan.of_kind("client", "relay", "fallback", "store")}
        ledgers = {}
        for name, ss in subs.items():
            led = audit(lab, ss, wait_s=opts.audit_wait_s, stores=lab.maildirs(), queues=queues)
            ledgers[name] = led.to_dict()
        mrep = mon.stop().to_dict()
        mon = None
        lost_ids = [m for led in ledgers.values() for m in led.get("lost_msgids") or []]
        diagnostics = None
        if lost_ids:  # the lab's logs and queues go with it: keep the evidence now
            from .diag import collect

            diagnostics = collect(lab, lost_ids)
        submissions_t = {s.msgid: s.t for ss in subs.values() for s in ss}  # a duplicate may lack its 250
        verdict = evaluate(mrep, ledgers, recovery, heal, opts.recovery_bound_s, submissions_t,
                           opts.allow_duplicates)
        report = _report(schedule, opts, up.seconds, fault_log, heal, recovery, mrep, ledgers, verdict,
                         time.monotonic() - t_start)
        report["duplicate_details"] = duplicate_details(schedule, ledgers, submissions_t, t0)
        if diagnostics is not None:
            report["diagnostics"] = diagnostics
        return RunResult(verdict, report, t0, submissions_t)
    finally:
        if runner is not None:
            runner.stop()
        for ld in loads.values():
            try:
                ld.stop(timeout_s=15)
            except Exception:  # the lab teardown below matters more
                log.exception("stopping mail load")
        if mon is not None:
            mon.stop()
        lab.down()


def _single_holder(lab: Any, timeout_s: float) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        holders = lab.status()["roles"].get("store") or []
        if len(holders) == 1:
            return holders[0]
        time.sleep(0.2)
    from ..lab.netns import LabError

    raise LabError(f"no single store holder within {timeout_s:g}s after lab up")


def _fmt_action(r: dict[str, Any]) -> str:
    peer = f"|{r['peer']}" if r.get("peer") else ""
    late = f" (late {r['late_s']:.2f}s)" if r.get("late_s", 0) > 0.5 else ""
    err = "" if r.get("ok") else f" FAILED: {r.get('error')}"
    who = f"#{r['fault']}" if r.get("fault") else "supervisor:"
    return f"  t={r['at']:7.2f}s {who} {r['op']} {r['node']}{peer}{late}{err}"


MAIL_KEYS = ("submitted", "accepted", "delivered_once", "lost", "duplicates", "not_accepted", "ambiguous",
             "not_accepted_delivered", "lost_msgids", "duplicate_msgids", "duplicate_copies", "lost_in_queue", "queued",
             "by_target", "by_store", "waited_s", "settled")


def _report(schedule: Schedule, opts: RunOptions, up_s: float, fault_log: list[dict[str, Any]],
            heal: dict[str, Any], recovery: dict[str, Any], mrep: dict[str, Any],
            ledgers: dict[str, dict[str, Any]], verdict: Verdict, wall_s: float) -> dict[str, Any]:
    late = [r["late_s"] for r in fault_log]
    return {
        "seed": schedule.seed,
        "duration_s": schedule.duration_s,
        "failsafe": opts.failsafe,
        "ok": verdict.ok,
        "violations": [v.to_dict() for v in verdict.violations],
        "dual_holder_samples": mrep.get("dual_holder_samples", 0),
        "accepted": sum(int(d.get("accepted", 0)) for d in ledgers.values()),
        "lost": sum(int(d.get("lost", 0)) for d in ledgers.values()),
        "duplicates": sum(int(d.get("duplicates", 0)) for d in ledgers.values()),
        "allow_duplicates": opts.allow_duplicates,
        "max_recovery_s": recovery.get("max_recovery_s"),
        "recovery_bound_s": opts.recovery_bound_s,
        "recovery": recovery,
        "mail": {name: {k: d.get(k) for k in MAIL_KEYS} for name, d in ledgers.items()},
        "faults": {"count": len(schedule.faults), "by_kind": schedule.counts(), "actions": len(fault_log),
                   "failed_actions": sum(1 for r in fault_log if not r.get("ok")),
                   "agent_restarts": sum(1 for r in fault_log if r["op"] == "restart"),
                   "supervise_s": opts.supervise_s,
                   "max_late_s": round(max(late), 3) if late else 0.0},
        "monitor": {k: mrep.get(k) for k in ("samples", "seconds", "max_gap_s", "mean_gap_s", "dual_holder_samples",
                                             "dual_holder_intervals", "errors")}
        | {"moves": len(mrep.get("moves") or [])},
        "vip_outages_s": _outages(mrep.get("moves") or []),
        "heal": heal,
        "lab_up_s": up_s,
        "wall_s": round(wall_s, 1),
        "fault_log": fault_log,
        "schedule": [f.describe() for f in schedule.faults],
    }


def duplicate_details(schedule: Schedule, ledgers: dict[str, dict[str, Any]], submissions_t: dict[str, float],
                      t0: float, limit: int = 20) -> list[dict[str, Any]]:
    """Each duplicate (up to `limit`): its stream, where both copies landed, when its outcome
    came (seconds into the schedule) and the faults in force at that moment -- what a reader
    needs to tell which fault made the second copy."""
    out: list[dict[str, Any]] = []
    for name, led in sorted(ledgers.items()):
        for m in led.get("duplicate_msgids") or []:
            if len(out) >= limit:
                return out
            t = submissions_t.get(m)
            t_rel = None if t is None else round(t - t0, 2)
            in_force = [] if t_rel is None else [f.describe() for f in schedule.faults
                                                 if f.start <= t_rel and (f.to_heal or t_rel <= f.end)]
            out.append({"stream": name, "msgid": m, "t": t_rel,
                        "copies": (led.get("duplicate_copies") or {}).get(m, []), "faults_in_force": in_force})
    return out


def _outages(moves: list[dict[str, Any]]) -> dict[str, Any]:
    """VIP moves that followed a time with no holder: how long the address was nowhere
    (availability under faults; safety is the dual-holder count)."""
    gaps = sorted(m["t_vip"] - m["t_from_lost"] for m in moves if m.get("t_from_lost") is not None)
    if not gaps:
        return {"count": 0}
    return {"count": len(gaps), "p50": round(gaps[len(gaps) // 2], 3),
            "p95": round(gaps[min(len(gaps) - 1, int(0.95 * len(gaps)))], 3), "max": round(gaps[-1], 3)}


def hint(schedule: Schedule, result: RunResult) -> list[int]:
    """Faults in force around the violations: dual holder -> the 15 s before it; lost or
    duplicated mail -> from 5 s before the outcome to 60 s after it (the message may die, or be
    sent again, from a queue a little later)."""
    if result.t0 is None:
        return []
    out: set[int] = set()
    for v in result.verdict.violations:
        if v.t_mono is None:
            continue
        t = v.t_mono - result.t0
        lo, hi = (t - 15.0, t) if v.kind == "dual_holder" else (t - 5.0, t + 60.0)
        out |= {f.id for f in schedule.faults if f.start <= hi and f.end >= lo}
    return sorted(out)


def chaos(schedule: Schedule, execute: Callable[[Schedule], RunResult], *, do_shrink: bool = True,
          shrink_tests: int = 6, shrink_budget_s: float = 900.0, progress: Progress = _quiet) -> dict[str, Any]:
    """Run, check, and on failure shrink. Returns the report (plus `shrink` and `minimal` on failure)."""
    first = execute(schedule)
    report = dict(first.report)
    report["repro"] = f"hacluster chaos --seed {schedule.seed} --duration {schedule.duration_s:g}"
    if first.verdict.ok:
        return report
    progress(f"FAILED (seed {schedule.seed}): " + "; ".join(v.detail for v in first.verdict.violations))
    if not do_shrink or len(schedule.faults) == 0:
        report["minimal"] = [f.describe() for f in schedule.faults]
        report["shrink"] = None
        return report

    deadline = time.monotonic() + shrink_budget_s

    def fails(ids: list[int]) -> bool:
        sub = schedule.subset(ids, compact=True)
        left = deadline - time.monotonic()
        if sub.duration_s + RERUN_OVERHEAD_S > left:
            progress(f"shrink: {ids} skipped: a {sub.duration_s:g}s re-run does not fit the {left:.0f}s left")
            return False
        progress(f"shrink: re-running faults {ids} ({sub.duration_s:g}s)")
        res = execute(sub)
        bad = same_failure(first.verdict, res.verdict)
        progress(f"shrink: {ids} -> {'fails' if bad else 'passes'}")
        return bad

    res: ShrinkResult = shrink(schedule.ids(), fails, max_tests=shrink_tests, hint=hint(schedule, first),
                               deadline=deadline)
    by_id: dict[int, Fault] = {f.id: f for f in schedule.faults}
    report["shrink"] = res.to_dict()
    report["minimal"] = [by_id[i].describe() for i in res.minimal]
    report["reproduced"] = any(t["fails"] for t in res.trials)
    if len(res.minimal) < len(schedule.faults):
        report["minimal_repro"] = (f"hacluster chaos --seed {schedule.seed} --duration {schedule.duration_s:g} "
                                   f"--only {','.join(str(i) for i in res.minimal)}")
    return report
