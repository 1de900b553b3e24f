"""The fast engine: exact per-message semantics, computed without an event heap.

Two facts of the model make this possible (see model.py): messages never interact, and an
attempt's outcome depends only on the set of up hosts at that instant (plus the message's own
random draw for equal MX preferences). So:

1. Between two instants at which some host changes state (an *epoch*) the up-set is constant.
   A message whose whole path completes at its arrival instant (every hop accepts at once)
   takes the same path as every other message of its stream in that epoch, unless a random
   equal-preference choice is involved. Such cohorts are counted in bulk: O(epochs), not
   O(messages). Their delay is exactly 0.
2. Every other message is walked individually from attempt to attempt: the next attempt time
   is computed directly (Timeline.next_attempt) instead of simulating every queue scan.

The reference DES (des.py) must give the identical trace; tests/unit/test_mx_engines.py checks.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from functools import partial
from itertools import pairwise

from .model import ACCEPT, BOUNCE, DEFER, MSG_ID_STRIDE, RANDOM, Router, Timeline, Trace, arrival_times, backoff
from .scenario import Scenario


class _Fast:
    def __init__(self, scn: Scenario, record_outcomes: bool) -> None:
        self.scn = scn
        self.end = scn.duration_s
        self.tl = Timeline(scn)
        self.router = Router(scn)
        self.trace = Trace(list(scn.hosts), outcomes={} if record_outcomes else None,
                           attempts={} if record_outcomes else None)

    def run(self) -> Trace:
        tr = self.trace
        tr.messages = self.scn.messages
        epochs = self.tl.epochs()
        for si, (traffic, times) in enumerate(zip(self.scn.traffic, arrival_times(self.scn), strict=True)):
            base = si * MSG_ID_STRIDE
            for e0, e1 in pairwise(epochs):
                lo, hi = bisect_left(times, e0), bisect_left(times, e1)
                if lo == hi:
                    continue
                cohort = self.instant_path(traffic.origin, traffic.domain, e0)
                if cohort is None:
                    for i in range(lo, hi):
                        self.walk(base + i, traffic.origin, traffic.domain, times[i])
                    continue
                n = hi - lo
                status, path = cohort
                if tr.outcomes is not None and tr.attempts is not None:
                    last = path[-1] if path else traffic.origin
                    tried = [traffic.origin] + [h for h in path if not self.scn.hosts[h].final]
                    for i in range(lo, hi):
                        tr.outcomes[base + i] = (status, times[i], last)
                        tr.attempts[base + i] = [(h, times[i]) for h in tried]
                for h in path:
                    tr.accepted_by[h] += n
                if status == "delivered":
                    tr.delivered += n
                    tr.zero_delays += n
                else:
                    tr.bounced += n
        return tr

    def instant_path(self, origin: str, domain: str, t: float) -> tuple[str, list[str]] | None:
        """If every message of this stream arriving in t's epoch is delivered or bounced at its
        arrival instant along one path, return (status, hosts that accepted it); else None."""
        up = self.tl.up
        if not up(origin, t):
            return None
        hosts = self.scn.hosts
        path: list[str] = []
        host, hop = origin, 1
        if hosts[origin].final:
            return "delivered", path
        while True:
            status, what = self.router.attempt(host, domain, lambda h: up(h, t), None, hop, 0)
            if status == BOUNCE:
                return "bounced", path
            if status in (DEFER, RANDOM):
                return None
            assert what is not None
            path.append(what)
            if hosts[what].final:
                return "delivered", path
            host, hop = what, hop + 1

    def walk(self, mid: int, origin: str, domain: str, born: float) -> None:
        """One message from submission to delivery, bounce or the end of the scenario."""
        tr, tl, hosts, end = self.trace, self.tl, self.scn.hosts, self.end
        host, create, hop, n = origin, born, 1, 0
        if hosts[host].final:
            tr.delivered_with(0.0)
            self._outcome(mid, "delivered", born, host)
            return
        a = tl.first_up_at_or_after(host, born)
        while True:
            if a >= end:
                tr.intervals[host].append((create, math.inf))
                self._outcome(mid, "queued", math.inf, host)
                return
            if tr.attempts is not None:
                tr.attempts.setdefault(mid, []).append((host, a))
            status, what = self.router.attempt(host, domain, partial(tl.up, t=a), mid, hop, n)
            pol = hosts[host].policy
            if status == ACCEPT:
                assert what is not None
                if a > create:
                    tr.intervals[host].append((create, a))
                tr.accepted_by[what] += 1
                if hosts[what].final:
                    tr.delivered_with(a - born)
                    self._outcome(mid, "delivered", a, what)
                    return
                host, create, hop, n = what, a, hop + 1, 0
                continue
            if status == BOUNCE or a >= create + pol.lifetime_s:
                if a > create:
                    tr.intervals[host].append((create, a))
                tr.bounced += 1
                self._outcome(mid, "bounced", a, host)
                return
            eligible = a + backoff(pol.min_backoff_s, pol.max_backoff_s, a - create)
            a = tl.next_attempt(host, a, eligible, pol.scan_interval_s, pol.scan_slack_s)
            n += 1

    def _outcome(self, mid: int, status: str, t: float, host: str) -> None:
        if self.trace.outcomes is not None:
            self.trace.outcomes[mid] = (status, t, host)


def run_fast(scn: Scenario, record_outcomes: bool = False) -> Trace:
    """Simulate `scn`; with record_outcomes the fate of every message is kept (for tests)."""
    return _Fast(scn, record_outcomes).run()
