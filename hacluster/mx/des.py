"""The reference engine: a plain discrete-event simulation with a heap, one message at a time.

It is written to be obviously right rather than fast: every host has a queue, queue scans are
real events, up/down changes are events processed before anything else at the same instant.
The fast engine (fast.py) must produce exactly the same trace; the tests compare them.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from .model import ACCEPT, BOUNCE, MSG_ID_STRIDE, Router, Timeline, Trace, arrival_times, backoff
from .scenario import Scenario

_STATE, _WORK = 0, 1  # at equal times, up/down changes first


@dataclass
class _Msg:
    mid: int
    domain: str
    born: float  # submission at the origin
    create: float  # arrival in the current host's queue (Postfix create_time)
    hop: int  # hosts that have accepted it so far, origin included
    attempts: int = 0  # attempts in the current host's queue
    last_attempt: float = -math.inf
    eligible: float = -math.inf


class _Sim:
    def __init__(self, scn: Scenario, record_outcomes: bool) -> None:
        self.scn = scn
        self.end = scn.duration_s
        self.router = Router(scn)
        self.trace = Trace(list(scn.hosts), outcomes={} if record_outcomes else None,
                           attempts={} if record_outcomes else None)
        self.queue: dict[str, dict[int, _Msg]] = {h: {} for h in scn.hosts}
        self.is_up: dict[str, bool] = {h: True for h in scn.hosts}
        self.gen: dict[str, int] = {h: 0 for h in scn.hosts}
        self.heap: list[tuple] = []
        self.seq = 0

    def push(self, t: float, prio: int, kind: str, *data: object) -> None:
        if t < self.end:
            self.seq += 1
            heapq.heappush(self.heap, (t, prio, self.seq, kind, data))

    # -- events ---------------------------------------------------------------------------

    def run(self) -> Trace:
        tl = Timeline(self.scn)
        for h in self.scn.hosts:
            for a, b in tl.outages(h):
                self.push(a, _STATE, "down", h)
                self.push(b, _STATE, "up", h)
            self.push(0.0, _WORK, "scan", h, 0, 0.0, 0)  # qmgr starts with the host
        for si, (traffic, times) in enumerate(zip(self.scn.traffic, arrival_times(self.scn), strict=True)):
            for i, t in enumerate(times):
                self.push(t, _WORK, "arrive", si * MSG_ID_STRIDE + i, traffic.origin, traffic.domain)
        self.trace.messages = self.scn.messages
        while self.heap:
            t, _, _, kind, data = heapq.heappop(self.heap)
            getattr(self, "on_" + kind)(t, *data)
        for h, q in self.queue.items():
            for m in q.values():
                self.trace.intervals[h].append((m.create, math.inf))
                if self.trace.outcomes is not None:
                    self.trace.outcomes[m.mid] = ("queued", math.inf, h)
        return self.trace

    def on_down(self, t: float, host: str) -> None:
        if self.is_up[host]:
            self.is_up[host] = False
            self.gen[host] += 1

    def on_up(self, t: float, host: str) -> None:
        if not self.is_up[host]:
            self.is_up[host] = True
            self.gen[host] += 1
            self.push(t, _WORK, "scan", host, self.gen[host], t, 0)

    def on_scan(self, t: float, host: str, gen: int, u: float, k: int) -> None:
        if gen != self.gen[host] or not self.is_up[host]:
            return
        pol = self.scn.hosts[host].policy
        for m in sorted(self.queue[host].values(), key=lambda m: m.mid):
            if m.mid in self.queue[host] and t > m.last_attempt and t + pol.scan_slack_s >= m.eligible:
                self.attempt(host, m, t)
        self.push(u + (k + 1) * pol.scan_interval_s, _WORK, "scan", host, gen, u, k + 1)

    def on_arrive(self, t: float, mid: int, origin: str, domain: str) -> None:
        m = _Msg(mid, domain, t, t, 1)
        self.enter(origin, m, t)

    # -- the message life ------------------------------------------------------------------

    def enter(self, host: str, m: _Msg, t: float) -> None:
        if self.scn.hosts[host].final:
            self.trace.delivered_with(t - m.born)
            if self.trace.outcomes is not None:
                self.trace.outcomes[m.mid] = ("delivered", t, host)
            return
        m.create, m.attempts, m.last_attempt, m.eligible = t, 0, -math.inf, -math.inf
        self.queue[host][m.mid] = m
        if self.is_up[host]:
            self.attempt(host, m, t)

    def leave(self, host: str, m: _Msg, t: float) -> None:
        del self.queue[host][m.mid]
        if t > m.create:
            self.trace.intervals[host].append((m.create, t))

    def attempt(self, host: str, m: _Msg, t: float) -> None:
        if self.trace.attempts is not None:
            self.trace.attempts.setdefault(m.mid, []).append((host, t))
        status, what = self.router.attempt(host, m.domain, self.is_up.__getitem__, m.mid, m.hop, m.attempts)
        if status == ACCEPT:
            assert what is not None
            self.leave(host, m, t)
            self.trace.accepted_by[what] += 1
            m.hop += 1
            self.enter(what, m, t)
            return
        pol = self.scn.hosts[host].policy
        if status == BOUNCE or t >= m.create + pol.lifetime_s:
            self.leave(host, m, t)
            self.trace.bounced += 1
            if self.trace.outcomes is not None:
                self.trace.outcomes[m.mid] = ("bounced", t, host)
            return
        m.last_attempt = t
        m.eligible = t + backoff(pol.min_backoff_s, pol.max_backoff_s, t - m.create)
        m.attempts += 1


def run_des(scn: Scenario, record_outcomes: bool = False) -> Trace:
    """Simulate `scn` event by event (the reference; use run_fast for big scenarios)."""
    return _Sim(scn, record_outcomes).run()
