"""Judge a drill: the recorded run (steps, VIP transitions, waits, mail ledger, queue drain) in,
one result per expectation out. Pure, so every rule is unit-tested without a lab.

Each result carries the measured value next to the bound, so a report says *how close* a drill
came, not just pass/fail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .playbook import Expectation, Playbook, Ref
from .target import MonitorData, RoleInfo


@dataclass
class Recording:
    """Everything a run produced (times: CLOCK_MONOTONIC seconds)."""

    t0: float
    t_steps_end: float
    roles: dict[str, RoleInfo]
    monitor: MonitorData
    events: list[dict[str, Any]] = field(default_factory=list)  # {t, t_end, kind, label, line, ok, detail}
    marks: dict[str, float] = field(default_factory=dict)  # step ids and marks -> start time
    waits: dict[str, dict[str, Any]] = field(default_factory=dict)  # wait_until id -> {reached, seconds, timeout, line}
    vars: dict[str, str] = field(default_factory=dict)
    ledger: dict[str, Any] | None = None
    drain: dict[str, Any] | None = None  # {seconds: float|None, remaining: {node: n}}
    errors: list[dict[str, Any]] = field(default_factory=list)  # {line, step, error}
    fence: dict[str, Any] | None = None  # Target.fence_report(): fences and spool writes
    queues: list[tuple[float, dict[str, int | None]]] = field(default_factory=list)  # sampled queue lengths


@dataclass
class Result:
    expect: str
    line: int  # 0: implicit (added by the runner, not written in the playbook)
    passed: bool
    measured: Any
    bound: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def holders_timeline(rec: Recording, vip: str) -> list[tuple[float, tuple[str, ...]]]:
    """(t, holders) at every change of the VIP's holder set, first sample first."""
    return [(tr["t"], tuple(tr["holders"])) for tr in rec.monitor.transitions if tr["vip"] == vip]


def holders_at(tl: list[tuple[float, tuple[str, ...]]], t: float) -> tuple[str, ...]:
    cur: tuple[str, ...] = ()
    for ti, hs in tl:
        if ti > t:
            break
        cur = hs
    return cur


def _window(rec: Recording, e: Expectation) -> tuple[float, float]:
    after = rec.marks.get(e.args.get("after") or "", rec.t0)
    until = rec.marks.get(e.args.get("until") or "", rec.t_steps_end)
    return after, until


def _name(rec: Recording, ref: Ref | None) -> str | None:
    if ref is None:
        return None
    return rec.vars.get(ref.text[1:]) if ref.text.startswith("$") else ref.text


def _role(rec: Recording, pb: Playbook, e: Expectation) -> RoleInfo:
    return rec.roles[e.args.get("role") or pb.role]


def _fmt(s: float | None) -> str:
    return "never" if s is None else f"{s:.3f}s"


#: one expectation kind, judged against the recording: (playbook, recording, expectation) -> result
Checker = Callable[[Playbook, Recording, Expectation], Result]

#: expectation kind -> its checker; the playbook reader's EXPECT_FIELDS names the same kinds with
#: their fields (an unknown kind is a FILE:line error there, before any drill runs)
CHECKERS: dict[str, Checker] = {}


def checker(kind: str) -> Callable[[Checker], Checker]:
    """Register the decorated function as the checker of expectation `kind`."""

    def register(fn: Checker) -> Checker:
        if kind in CHECKERS:
            raise ValueError(f"two checkers for expectation {kind}")
        CHECKERS[kind] = fn
        return fn

    return register


def judge(pb: Playbook, rec: Recording) -> list[Result]:
    out: list[Result] = []
    for e in pb.expect:
        out.append(_judge_one(pb, rec, e))
    if not any(e.kind == "no_dual_holder" for e in pb.expect):
        out.append(_judge_one(pb, rec, Expectation("no_dual_holder", 0, {})))
    for wid, w in rec.waits.items():
        if not w["reached"]:
            out.append(Result("wait_until", w["line"], False, None, f"<= {w['timeout']:g}s",
                              f"{wid}: condition not reached within {w['timeout']:g}s ({w.get('last', '')})"))
    for err in rec.errors:
        out.append(Result("step", err["line"], False, err["error"], "no error", err["step"]))
    return out


def _judge_one(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    check = CHECKERS.get(e.kind)
    if check is None:  # the reader refuses it first; a hand-built Playbook may not have been read
        raise ValueError(f"unknown expectation {e.kind}")
    return check(pb, rec, e)


@checker("no_dual_holder")
def _no_dual_holder(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    m = rec.monitor
    return Result(e.kind, e.line, m.dual_holder_samples == 0 and m.samples > 0, m.dual_holder_samples, "0 samples",
                  f"{m.samples} samples, max gap {m.max_gap_s * 1000:.1f} ms"
                  + (f", intervals {m.dual_holder_intervals[:3]}" if m.dual_holder_intervals else ""))


def _holder_sets(rec: Recording, pb: Playbook, e: Expectation) -> tuple[RoleInfo, list[tuple[str, ...]]]:
    """The role, and its holder sets from `after` (the one then first) up to `until`."""
    role = _role(rec, pb, e)
    tl = holders_timeline(rec, role.vip)
    after, until = _window(rec, e)
    return role, [holders_at(tl, after)] + [hs for t, hs in tl if after < t <= until]


@checker("holder")
def _holder(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    a = e.args
    role = _role(rec, pb, e)
    tl = holders_timeline(rec, role.vip)
    after, _ = _window(rec, e)
    node = _name(rec, a["node"])
    within = a["within"]

    def wanted(hs: tuple[str, ...]) -> bool:  # `node: any`: one holder, whichever it is
        return len(hs) == 1 if node == "any" else hs == (node,)

    if wanted(holders_at(tl, after)):
        took: float | None = 0.0
    else:
        took = next((t - after for t, hs in tl if t > after and wanted(hs)), None)
    ok = took is not None and took <= within
    return Result(e.kind, e.line, ok, None if took is None else round(took, 3), f"<= {within:g}s",
                  f"{role.name} VIP on {'one node' if node == 'any' else node} {_fmt(took)} after {a.get('after') or 'start'}")


@checker("holder_unchanged")
def _holder_unchanged(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    role, sets = _holder_sets(rec, pb, e)
    distinct: list[tuple[str, ...]] = []
    for hs in sets:
        if hs not in distinct:
            distinct.append(hs)
    return Result(e.kind, e.line, len(distinct) == 1, [list(h) for h in distinct], "one holder set",
                  f"{role.name} holders between {e.args.get('after') or 'start'} and {e.args.get('until') or 'end'}")


@checker("no_takeover")
def _no_takeover(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    role, sets = _holder_sets(rec, pb, e)
    first = set(sets[0])
    new = sorted({h for hs in sets for h in hs} - first)
    return Result(e.kind, e.line, not new, new, "no other holder",
                  f"{role.name} held by {sorted(first) or 'nobody'} at {e.args.get('after') or 'start'}")


@checker("max_gap")
def _max_gap(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    """The longest stretch with nobody holding, inside the window."""
    role = _role(rec, pb, e)
    tl = holders_timeline(rec, role.vip)
    after, until = _window(rec, e)
    gap, start = 0.0, (after if not holders_at(tl, after) else None)
    for t, hs in tl:
        if t <= after or t > until:
            continue
        if not hs and start is None:
            start = t
        elif hs and start is not None:
            gap, start = max(gap, t - start), None
    if start is not None:
        gap = max(gap, until - start)
    return Result(e.kind, e.line, gap <= e.args["max"], round(gap, 3), f"<= {e.args['max']:g}s",
                  f"longest time without a {role.name} holder")


@checker("reached")
def _reached(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    a = e.args
    w = rec.waits.get(a["step"])
    secs = w["seconds"] if w and w["reached"] else None
    return Result(e.kind, e.line, secs is not None and secs <= a["within"], secs, f"<= {a['within']:g}s",
                  f"wait_until {a['step']}")


@checker("no_lost_mail")
def _no_lost_mail(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    a = e.args
    led = rec.ledger
    if led is None:
        return Result(e.kind, e.line, False, None, "lost 0", "no traffic was sent (start_traffic step missing?)")
    min_acc = a.get("min_accepted")
    min_acc = 1 if min_acc is None else min_acc
    max_na = a.get("max_not_accepted")
    max_dup = a.get("max_duplicates") or 0
    measured = {k: led.get(k) for k in ("accepted", "delivered_once", "lost", "duplicates", "not_accepted",
                                        "ambiguous", "late", "waited_s")}
    ok = led["lost"] == 0 and led["duplicates"] <= max_dup and led["accepted"] >= min_acc
    if max_na is not None:
        ok = ok and led["not_accepted"] <= max_na
    detail = ""
    if led["lost"]:
        detail = f"lost {led.get('lost_msgids', [])[:3]}; still queued: {led.get('lost_in_queue', {})}"
    bound = f"lost 0, duplicates <= {max_dup}, accepted >= {min_acc}" + (f", not accepted <= {max_na}" if max_na is not None else "")
    return Result(e.kind, e.line, ok, measured, bound, detail)


@checker("queues_drain")
def _queues_drain(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    d = rec.drain or {"seconds": None, "remaining": {}}
    secs = d["seconds"]
    within = e.args["within"]
    return Result(e.kind, e.line, secs is not None and secs <= within, secs, f"<= {within:g}s",
                  "after the last step" + (f"; still queued: {d['remaining']}" if d.get("remaining") else ""))


def _first_fence(rec: Recording, node: str | None, after: float) -> dict[str, Any] | None:
    fences = (rec.fence or {}).get("fences", [])
    return next((f for f in sorted(fences, key=lambda f: f["t"]) if f["target"] == node and f["ok"] and f["t"] >= after),
                None)


@checker("fenced")
def _fenced(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    """The node was fenced (off, status off) within the bound after the anchor."""
    node = _name(rec, e.args["node"])
    if rec.fence is None:
        return _no_fence_report(e)
    after = rec.marks.get(e.args.get("after") or "", rec.t0)
    f = _first_fence(rec, node, after)
    secs = None if f is None else round(f["t"] - after, 3)
    detail = f"{node} fenced by {f['node']} (fence took {f['seconds']}s)" if f else f"no confirmed fence of {node}"
    return Result(e.kind, e.line, secs is not None and secs <= e.args["within"], secs,
                  f"<= {e.args['within']:g}s", detail)


@checker("no_spool_write_after_fence")
def _no_spool_write_after_fence(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    """The spool audit saw no write of the node after its first fence."""
    node = _name(rec, e.args["node"])
    if rec.fence is None:
        return _no_fence_report(e)
    f = _first_fence(rec, node, rec.t0)
    if f is None:
        return Result(e.kind, e.line, False, None, "0 writes", f"{node} was never fenced: nothing to judge after")
    late = [w for w in rec.fence.get("writes", []) if w["host"] == node and w["t"] > f["t"]]
    unknown = len([w for w in rec.fence.get("writes", []) if w["host"] == "?" and w["t"] > f["t"]])
    return Result(e.kind, e.line, not late, len(late), "0 writes",
                  f"writes by {node} after its fence; unattributed (writer gone before read): {unknown}")


def _no_fence_report(e: Expectation) -> Result:
    return Result(e.kind, e.line, False, None, "a fence report", "this target reports no fencing")


@checker("no_holder")
def _no_holder(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    """Nobody holds the role from `within` after `after` until `until` (a holder that must demote
    and a peer that must not acquire: failsafe mode with the tier split while ZooKeeper is down).
    Measured: when the role was dropped, relative to `after`, and who held it in the window."""
    a = e.args
    role = _role(rec, pb, e)
    tl = holders_timeline(rec, role.vip)
    after, until = _window(rec, e)
    start = after + a["within"]
    dropped = 0.0 if not holders_at(tl, after) else next((t - after for t, hs in tl if t > after and not hs), None)
    seen = sorted({h for hs in [holders_at(tl, start)] + [hs for t, hs in tl if start < t <= until] for h in hs})
    ok = start <= until and not seen
    return Result(e.kind, e.line, ok, {"dropped_s": None if dropped is None else round(dropped, 3), "held_by": seen},
                  f"nobody from {a['within']:g}s after {a['after']} until {a.get('until') or 'end'}",
                  f"{role.name} VIP dropped {_fmt(dropped)} after {a['after']}"
                  + (f"; held by {', '.join(seen)} in the window" if seen else ""))


@checker("max_queued")
def _max_queued(pb: Playbook, rec: Recording, e: Expectation) -> Result:
    """The most messages queued at once on the MTAs (`nodes`, default all) inside the window:
    mail delivered throughout, not parked at the relays for the outage."""
    a = e.args
    after, until = _window(rec, e)
    nodes = None if a.get("nodes") is None else {_name(rec, r) for r in a["nodes"]}
    totals = [sum(v or 0 for n, v in q.items() if nodes is None or n in nodes)
              for t, q in rec.queues if after <= t <= until]
    peak = max(totals) if totals else None
    return Result(e.kind, e.line, peak is not None and peak <= a["max"], peak, f"<= {a['max']} queued",
                  f"{len(totals)} queue samples between {a.get('after') or 'start'} and {a.get('until') or 'end'}"
                  + ("" if totals else " (none: the window is empty or no sample was taken)"))
