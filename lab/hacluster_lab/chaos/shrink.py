"""Shrink a failing fault schedule to a minimal failing subset (delta debugging, bounded).

Zeller's ddmin over fault ids: try chunks, then complements, refining the granularity; every
test is a real re-run in the lab, so the number of tests and the wall time are bounded and the
result says whether it is 1-minimal (no single fault can be dropped) or just the best found.
Pure: `fails(ids) -> bool` is the only contact with the world, so the search is unit-tested.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence


@dataclass
class ShrinkResult:
    minimal: list[int]
    tests: int
    one_minimal: bool  # every single-fault removal was tried and passed
    exhausted: bool  # stopped by the test or time budget
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chunks(xs: list[int], n: int) -> list[list[int]]:
    size, rem = divmod(len(xs), n)
    out, i = [], 0
    for k in range(n):
        j = i + size + (1 if k < rem else 0)
        out.append(xs[i:j])
        i = j
    return [c for c in out if c]


def shrink(ids: Sequence[int], fails: Callable[[list[int]], bool], *, max_tests: int = 8,
           hint: Sequence[int] | None = None, deadline: float | None = None,
           clock: Callable[[], float] = time.monotonic) -> ShrinkResult:
    """The smallest failing subset of `ids` found with at most max_tests calls of `fails`
    (and before `deadline` on `clock`). `ids` itself is assumed to fail. `hint`: a likely
    culprit subset (the faults active around the violation), tried first."""
    current = list(ids)
    cache: dict[frozenset[int], bool] = {frozenset(current): True}
    trials: list[dict[str, Any]] = []
    state: dict[str, Any] = {"tests": 0, "out": False}  # the counter and the flag test() updates

    def test(sub: list[int]) -> bool:
        key = frozenset(sub)
        if key in cache:
            return cache[key]
        if state["tests"] >= max_tests or (deadline is not None and clock() >= deadline):
            state["out"] = True
            return False
        state["tests"] += 1
        res = bool(fails(sorted(sub)))
        cache[key] = res
        trials.append({"ids": sorted(sub), "fails": res})
        return res

    if hint:
        h = [i for i in current if i in set(hint)]
        if h and len(h) < len(current) and test(h):
            current = h
    n = 2
    while len(current) >= 2 and not state["out"]:
        reduced = False
        chunks = _chunks(current, n)
        for c in chunks:
            if test(c):
                current, n, reduced = c, 2, True
                break
        if not reduced and n > 2:  # with n == 2 each complement is the other chunk: tested
            for c in chunks:
                comp = [x for x in current if x not in set(c)]
                if comp and test(comp):
                    current, n, reduced = comp, max(n - 1, 2), True
                    break
        if state["out"]:
            break
        if not reduced:
            if n >= len(current):
                break
            n = min(2 * n, len(current))
    # ddmin ends unforced only at single-fault granularity: then no one fault can be dropped
    return ShrinkResult(sorted(current), state["tests"], not state["out"], state["out"], trials)
