"""Holder-claim intervals from agents' claims logs, and the overlap check.

A claim runs from the acknowledged acquisition to the first of: release, demotion, or the last
acknowledged deadline (`until`) -- an agent never acts as holder past `until`, even if it was
frozen and only noticed later. Two intervals of the same role on different nodes that overlap
are a dual-holder event: the one thing that must never happen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, NamedTuple


class Claim(NamedTuple):
    node: str
    role: str
    term: int
    start: float
    end: float


def read_events(paths: Iterable[Path]) -> list[dict]:
    events = []
    for p in paths:
        try:
            lines = Path(p).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line cut short by SIGKILL
            if isinstance(ev, dict) and {"t", "node", "role", "event"} <= ev.keys():
                events.append(ev)
    return sorted(events, key=lambda e: e["t"])


def claims(events: list[dict], now: float | None = None) -> list[Claim]:
    open_: dict[tuple[str, str], list] = {}  # (node, role) -> [term, start, until]
    out: list[Claim] = []
    for ev in events:
        key = (ev["node"], ev["role"])
        kind = ev["event"]
        if kind == "acquired":
            if key in open_:
                term, start, until = open_.pop(key)
                out.append(Claim(key[0], key[1], term, start, min(until, ev["t"])))
            open_[key] = [ev.get("term", 0), ev["t"], ev.get("until", ev["t"])]
        elif kind == "renewed" and key in open_:
            open_[key][2] = max(open_[key][2], ev.get("until", 0))
        elif kind in ("released", "demoted") and key in open_:
            term, start, until = open_.pop(key)
            out.append(Claim(key[0], key[1], term, start, min(until, ev["t"])))
    for (node, role), (term, start, until) in open_.items():
        # still holding at the end of the log (or killed): bounded by its deadline
        out.append(Claim(node, role, term, start, until if now is None else min(until, max(now, start))))
    return sorted(out, key=lambda c: c.start)


def overlaps(cl: list[Claim]) -> list[tuple[Claim, Claim]]:
    """Pairs of claims on the same role by different nodes that overlap in time.

    A claim that ended before it began (an acquisition acknowledged only after its own deadline,
    e.g. the agent froze mid-acquire) never held anything and overlaps nothing."""
    bad = []
    by_role: dict[str, list[Claim]] = {}
    for c in cl:
        if c.end > c.start:
            by_role.setdefault(c.role, []).append(c)
    for items in by_role.values():
        items.sort(key=lambda c: c.start)
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                if b.start >= a.end:
                    break
                if b.node != a.node:
                    bad.append((a, b))
    return bad
