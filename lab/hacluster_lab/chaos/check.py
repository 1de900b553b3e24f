"""The invariants a chaos run must keep (pure: plain dicts in, violations out).

* dual_holder   -- the invariant monitor saw two hosts holding one VIP (must never happen).
* lost          -- mail acknowledged with 250 that no store has when the audit ends (must be 0).
* recovery      -- after the final heal, something (VIP holder, SMTP on the VIP and the MX hosts,
                   a ZooKeeper server, an agent) did not come back within the bound.
* no_load       -- a mail stream got no message accepted at all: the run proved nothing about
                   mail, so it can't pass.
* heal          -- the heal itself failed (a host that could not be powered on, ...).
* duplicate     -- a message delivered twice (two Maildir unique names), beyond the run's explicit
                   budget (`--allow-duplicates`, default 0). SMTP is at-least-once (a 250 lost in a
                   partition makes the relay send again, RFC 1047), but a user who reads a message
                   twice was served badly: the cluster owes every accepted message exactly once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: the default recovery bound after the final heal (docs/chaos.md explains the budget)
RECOVERY_BOUND_S = 30.0


@dataclass(frozen=True)
class Violation:
    kind: str  # dual_holder | lost | duplicate | recovery | no_load | heal
    detail: str
    t_mono: float | None = None  # when (CLOCK_MONOTONIC), if known: the shrinker's hint

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    ok: bool
    violations: list[Violation] = field(default_factory=list)

    @property
    def kinds(self) -> set[str]:
        return {v.kind for v in self.violations}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "violations": [v.to_dict() for v in self.violations]}


def evaluate(monitor: dict[str, Any], ledgers: dict[str, dict[str, Any]], recovery: dict[str, Any],
             heal: dict[str, Any] | None = None, recovery_bound_s: float = RECOVERY_BOUND_S,
             submissions_t: dict[str, float] | None = None, allow_duplicates: int = 0) -> Verdict:
    """monitor: MonitorReport.to_dict(); ledgers: stream name -> Ledger.to_dict(); recovery: as
    runner.wait_recovered returns; submissions_t: msgid -> time of its outcome (for the hint);
    allow_duplicates: the run's budget of duplicated messages over all streams."""
    out: list[Violation] = []
    dual = int(monitor.get("dual_holder_samples", 0))
    if dual:
        ivs = monitor.get("dual_holder_intervals") or []
        first = ivs[0] if ivs else {}
        where = (f"; first: {first.get('vip')} held by {', '.join(first.get('holders', []))} "
                 f"for {first.get('samples', '?')} samples") if first else ""
        out.append(Violation("dual_holder", f"{dual} dual-holder samples in {len(ivs)} intervals{where}",
                             first.get("t_start")))
    for name, led in sorted(ledgers.items()):
        lost = int(led.get("lost", 0))
        if lost:
            ids = led.get("lost_msgids") or []
            t = min((submissions_t or {}).get(m, float("inf")) for m in ids) if ids else float("inf")
            queued = led.get("lost_in_queue") or {}
            qtxt = f"; still queued on {', '.join(sorted(queued))}" if queued else ""
            out.append(Violation("lost", f"{name}: {lost} accepted messages lost (e.g. {', '.join(ids[:3])}){qtxt}",
                                 None if t == float("inf") else t))
        if int(led.get("accepted", 0)) == 0:
            out.append(Violation("no_load", f"{name}: no message accepted out of {led.get('submitted', 0)}"))
    total_dups = sum(int(led.get("duplicates", 0)) for led in ledgers.values())
    if total_dups > allow_duplicates:
        for name, led in sorted(ledgers.items()):
            dups = int(led.get("duplicates", 0))
            if not dups:
                continue
            ids = led.get("duplicate_msgids") or []
            first = ids[0] if ids else None
            where = ""
            if first:
                landed = (led.get("duplicate_copies") or {}).get(first) or []
                where = f"; {first} in " + ", ".join(f"{c['store']}/{c['mailbox']}" for c in landed)
            t = min((submissions_t or {}).get(m, float("inf")) for m in ids) if ids else float("inf")
            out.append(Violation("duplicate", f"{name}: {dups} messages delivered twice (budget {allow_duplicates} "
                                              f"for the run){where}", None if t == float("inf") else t))
    mx = recovery.get("max_recovery_s")
    if mx is None:
        out.append(Violation("recovery", f"not recovered within {recovery.get('limit_s')}s after the heal: "
                                         f"{', '.join(recovery.get('not_recovered', []))}"))
    elif mx > recovery_bound_s:
        comp = recovery.get("components_s", {})
        worst = max(comp, key=lambda k: comp[k] if comp[k] is not None else -1) if comp else "?"
        out.append(Violation("recovery", f"max_recovery_s {mx} > bound {recovery_bound_s} ({worst})"))
    if heal and heal.get("errors"):
        out.append(Violation("heal", "; ".join(heal["errors"])[:500]))
    return Verdict(not out, out)


def same_failure(original: Verdict, rerun: Verdict) -> bool:
    """A re-run reproduces the failure if it breaks one of the same invariants (no_load alone is
    not a reproduction: a subset without mail faults may simply have had no trouble)."""
    want = original.kinds - {"no_load"}
    return bool(want & rerun.kinds) if want else bool(rerun.kinds)
