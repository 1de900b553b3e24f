"""Counting what a false-failover run did to the VIP: a pure function over a timeline of samples.

A sample is (t, the hosts holding the VIP at t). Raw monitor samples and the monitor's change
records are both timelines: only the instants at which the holder set changes matter.

* An **unplanned move** is a sample whose single holder differs from the last single holder
  (A -> B, A -> nobody -> B, A -> {A, B} -> B: one move each). A -> nobody -> A is no move: the
  role came back, but the gap counts.
* A **VIP gap** is a stretch with no holder at all, from the first sample without a holder to the
  next sample with one (or the end of the window); `vip_gap_s_total` is their sum.
* Two holders at once are counted apart (`dual_holder_s`): they are a safety matter, not a move.

Samples before `start` only set the state at `start`; samples after `end` are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Move:
    t: float
    frm: str | None
    to: str

    def to_dict(self, t0: float = 0.0) -> dict[str, object]:
        return {"t_s": round(self.t - t0, 3), "from": self.frm, "to": self.to}


@dataclass(frozen=True)
class Gap:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Count:
    moves: tuple[Move, ...]
    gaps: tuple[Gap, ...]
    dual_holder_s: float
    first_holder: str | None
    last_holder: str | None

    @property
    def unplanned_moves(self) -> int:
        return len(self.moves)

    @property
    def vip_gap_s_total(self) -> float:
        return round(float(sum(g.seconds for g in self.gaps)), 6)

    @property
    def vip_gap_s_max(self) -> float:
        return round(float(max((g.seconds for g in self.gaps), default=0.0)), 6)


def count_moves(samples: Iterable[tuple[float, Sequence[str]]], start: float, end: float) -> Count:
    """Moves, gaps and two-holder time of one VIP in [start, end] (see the module docstring)."""
    if end < start:
        raise ValueError(f"end ({end}) before start ({start})")
    ordered = sorted(((t, tuple(sorted(h))) for t, h in samples), key=lambda s: s[0])
    state: tuple[str, ...] | None = None  # the holder set at `start`
    rest: list[tuple[float, tuple[str, ...]]] = []
    for t, holders in ordered:
        if t <= start:
            state = holders
        elif t <= end:
            rest.append((t, holders))
    moves: list[Move] = []
    gaps: list[Gap] = []
    dual = 0.0
    last_single: str | None = None
    first: str | None = None
    gap_from: float | None = None
    dual_from: float | None = None
    timeline = ([(start, state)] if state is not None else []) + rest
    for t, holders in timeline:
        if holders:
            if gap_from is not None:
                gaps.append(Gap(gap_from, t))
                gap_from = None
        elif gap_from is None:
            gap_from = t
        if len(holders) > 1:
            dual_from = t if dual_from is None else dual_from
        elif dual_from is not None:
            dual += t - dual_from
            dual_from = None
        if len(holders) == 1:
            h = holders[0]
            if last_single is None and first is None:
                first = h
            elif h != last_single:
                moves.append(Move(t, last_single, h))
            last_single = h
    if gap_from is not None:
        gaps.append(Gap(gap_from, end))
    if dual_from is not None:
        dual += end - dual_from
    return Count(tuple(moves), tuple(gaps), round(float(dual), 6), first, last_single)
