"""What both simulation engines share: host up/down timelines, queue-scan times, arrivals, the
outcome of one delivery attempt, and the trace -> summary reduction.

Model assumptions (the same in both engines, see docs/mx.md):
* An SMTP transfer takes no time and a host accepts whatever it is offered while it is up; so
  messages never interact, and an attempt's outcome depends only on which hosts are up at that
  instant (and, for equal MX preferences, on the message's own random draw).
* Outages are half-open [from, to): at `to` the host is up again. A host that is down neither
  accepts mail nor runs its queue; when it comes back its queue manager restarts and scans at
  once (Postfix qmgr does an immediate deferred scan at startup), then every scan interval.
* A new message is tried at once on arrival (Postfix's incoming queue, sendmail's background
  delivery); a deferred one waits for a queue scan at which it is eligible.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .rng import draw
from .routing import Plan, permute, plan_for
from .scenario import Scenario

ACCEPT, DEFER, BOUNCE, RANDOM = 0, 1, 2, 3
MSG_ID_STRIDE = 1 << 32  # message id = stream index * stride + index within the stream


class Timeline:
    """Up/down state per host over [0, end): merged half-open outages and up intervals."""

    def __init__(self, scn: Scenario) -> None:
        self.end = scn.duration_s
        self.bounds: dict[str, list[float]] = {}
        self.up_starts: dict[str, list[float]] = {}
        self.up_ends: dict[str, list[float]] = {}
        for name in scn.hosts:
            spans = sorted((o.start_s, o.end_s) for o in scn.outages if o.host == name)
            merged: list[list[float]] = []
            for a, b in spans:
                if merged and a <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            flat = [x for span in merged for x in span]
            self.bounds[name] = flat
            starts, ends = [], []
            cur = 0.0
            for a, b in merged:
                if a > cur:
                    starts.append(cur)
                    ends.append(a)
                cur = max(cur, b)
            starts.append(cur)
            ends.append(math.inf)
            self.up_starts[name], self.up_ends[name] = starts, ends

    def up(self, host: str, t: float) -> bool:
        return bisect_right(self.bounds[host], t) % 2 == 0

    def outages(self, host: str) -> list[tuple[float, float]]:
        b = self.bounds[host]
        return [(b[i], b[i + 1]) for i in range(0, len(b), 2)]

    def epochs(self) -> list[float]:
        """Every instant at which some host changes state, with 0 and end: between two of these
        the set of up hosts is constant."""
        pts = {0.0, self.end}
        for b in self.bounds.values():
            pts.update(x for x in b if 0.0 <= x < self.end)
        return sorted(pts)

    def first_up_at_or_after(self, host: str, t: float) -> float:
        if self.up(host, t):
            return t
        b = self.bounds[host]
        i = bisect_right(b, t)  # odd: inside outage b[i-1]..b[i]
        return b[i] if i < len(b) else math.inf

    def next_attempt(self, host: str, after: float, eligible: float, interval: float, slack: float) -> float:
        """The first queue scan s of `host` with s > after and s + slack >= eligible.

        Scans run at u + k*interval (k = 0, 1, ...) within each up interval [u, d). The result is
        the same float the DES computes when it schedules those scans one by one.
        """
        x = max(after, eligible - slack)
        starts, ends = self.up_starts[host], self.up_ends[host]
        i = max(0, bisect_right(starts, x) - 1)
        while i < len(starts):
            u, d = starts[i], ends[i]
            k = 0 if x <= u else max(0, math.ceil((x - u) / interval))
            while k > 0 and _ok(u + (k - 1) * interval, after, eligible, slack):
                k -= 1
            while not _ok(u + k * interval, after, eligible, slack):
                k += 1
            s = u + k * interval
            if s < d:
                return s
            i += 1
        return math.inf


def _ok(s: float, after: float, eligible: float, slack: float) -> bool:
    return s > after and s + slack >= eligible


def backoff(policy_min: float, policy_max: float, age: float) -> float:
    """Postfix qmgr_active_done_3_generic(): delay = clamp(time in queue, min, max)."""
    return min(max(age, policy_min), policy_max)


class Router:
    """Delivery plans per (host, domain), cached, and the outcome of one attempt."""

    def __init__(self, scn: Scenario) -> None:
        self.scn = scn
        self.seed = scn.seed
        self._plans: dict[tuple[str, str], Plan] = {}

    def plan(self, host: str, domain: str) -> Plan:
        key = (host, domain)
        p = self._plans.get(key)
        if p is None:
            p = self._plans[key] = plan_for(self.scn, self.scn.hosts[host], domain)
        return p

    def attempt(self, host: str, domain: str, up: Callable[[str], bool], msg: int | None,
                hop: int, attempt: int) -> tuple[int, str | None]:
        """(ACCEPT, host) | (DEFER, None) | (BOUNCE, reason). With msg None (cohort mode) a
        choice that needs the message's random draw returns (RANDOM, None) instead."""
        plan = self.plan(host, domain)
        if plan.bounce is not None:
            return BOUNCE, plan.bounce
        if hop >= self.scn.hosts[host].policy.hop_limit:
            return BOUNCE, "mail forwarding loop (hop count exceeded)"
        for gi, group in enumerate(plan.groups):
            if len(group) == 1:
                if up(group[0]):
                    return ACCEPT, group[0]
                continue
            ups = [h for h in group if up(h)]
            if not ups:
                continue
            if len(ups) == 1:
                return ACCEPT, ups[0]
            if msg is None:
                return RANDOM, None
            for h in permute(group, self.seed, msg, hop, attempt, gi):
                if up(h):
                    return ACCEPT, h
        return DEFER, None


def arrival_times(scn: Scenario) -> list[list[float]]:
    """Arrival times per traffic stream, sorted. `poisson` draws the N times uniformly in
    [start, end) (a Poisson process conditioned on its count, so counts stay exact)."""
    out: list[list[float]] = []
    for si, t in enumerate(scn.traffic):
        span = t.end_s - t.start_s
        if t.arrivals == "poisson":
            rnd = random.Random(draw(scn.seed, si, 0x5EED, 0, 0, 0))
            r = rnd.random
            times = sorted([t.start_s + r() * span for _ in range(t.messages)])
        else:
            step = span / t.messages if t.messages else 0.0
            start = t.start_s + step / 2
            times = [start + i * step for i in range(t.messages)]
        out.append(times)
    return out


# --------------------------------------------------------------------------- the trace


@dataclass
class Trace:
    """What an engine produces: counts, delays, and queue-residence intervals per host.

    `intervals[host]` holds (enter, leave) for every stay of positive length; leave is math.inf
    for messages still queued at the end. Delays of zero are only counted (a million zeros need
    no list)."""

    hosts: list[str]
    messages: int = 0
    delivered: int = 0
    bounced: int = 0
    zero_delays: int = 0
    delays: list[float] = field(default_factory=list)
    accepted_by: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    outcomes: dict[int, tuple[str, float, str]] | None = None  # msg -> (status, time, last host)
    attempts: dict[int, list[tuple[str, float]]] | None = None  # msg -> [(host, time)] of attempts

    def __post_init__(self) -> None:
        for h in self.hosts:
            self.accepted_by.setdefault(h, 0)
            self.intervals.setdefault(h, [])

    def delivered_with(self, delay: float) -> None:
        self.delivered += 1
        if delay == 0.0:
            self.zero_delays += 1
        else:
            self.delays.append(delay)

    @property
    def in_queue(self) -> int:
        return sum(1 for ivs in self.intervals.values() for _, b in ivs if b == math.inf)


def _nearest_rank(sorted_nonzero: list[float], zeros: int, p: float) -> float | None:
    n = zeros + len(sorted_nonzero)
    if n == 0:
        return None
    r = max(1, math.ceil(p * n))
    return 0.0 if r <= zeros else sorted_nonzero[r - zeros - 1]


def depth_steps(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, int]]:
    """(time, depth after time) steps of a queue from its residence intervals; departures at an
    instant are counted before arrivals at the same instant (intervals are half-open)."""
    events: list[tuple[float, int]] = []
    for a, b in intervals:
        events.append((a, 1))
        if b != math.inf:
            events.append((b, -1))
    events.sort()
    steps: list[tuple[float, int]] = []
    depth = 0
    for t, d in events:
        depth += d
        if steps and steps[-1][0] == t:
            steps[-1] = (t, depth)
        else:
            steps.append((t, depth))
    return steps


def summarize(trace: Trace) -> dict:
    """The result keys of issue 5, exactly."""
    delays = sorted(trace.delays)
    peak = {h: max((d for _, d in depth_steps(trace.intervals[h])), default=0) for h in trace.hosts}
    r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {
        "messages": trace.messages,
        "delivered": trace.delivered,
        "bounced": trace.bounced,
        "in_queue_at_end": trace.in_queue,
        "delay_s": {
            "p50": r3(_nearest_rank(delays, trace.zero_delays, 0.50)),
            "p95": r3(_nearest_rank(delays, trace.zero_delays, 0.95)),
            "max": r3(_nearest_rank(delays, trace.zero_delays, 1.0)),
        },
        "accepted_by": dict(sorted(trace.accepted_by.items())),
        "queue_peak": dict(sorted(peak.items())),
    }
