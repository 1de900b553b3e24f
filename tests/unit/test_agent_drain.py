"""The agent's use of graceful.py (rules 20-22) with a fake drain: a release closes the VIP's SMTP
port and waits for the sessions in flight, renewing meanwhile; a forced demote never waits; a
holder cut off from ZooKeeper closes the port and reopens it once ZooKeeper answers; the stop
always reopens it."""

from __future__ import annotations

from typing import Any

import pytest

from hacluster.agent.loop import Agent, RoleRuntime
from hacluster.coord.outcome import Unreachable
from hacluster.coord.model import Cluster
from hacluster.ha import Action, Held, Verdict
from hacluster.resources.base import OCF, Resource


class FakeDrain:
    def __init__(self, in_flight: list[int]) -> None:
        self.counts = in_flight
        self.closed = False
        self.events: list[str] = []

    def close(self) -> bool:
        self.closed = True
        self.events.append("close")
        return True

    def open(self) -> None:
        self.closed = False
        self.events.append("open")

    def in_flight(self) -> int:
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]


class LoggedCoord:
    """The coordinator's renewals (never acknowledged: the deadline stays), releases and history."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def renew(self, *args: Any, **kwargs: Any) -> Unreachable:
        self.log.append("renew")
        return Unreachable("test")

    def release(self, *args: Any, **kw: Any) -> bool:
        self.log.append("release")
        return True

    def record(self, *args: Any, **kw: Any) -> None:
        pass


@pytest.fixture()
def setup(make_agent, fake_clock) -> tuple[Agent, RoleRuntime, Any, list[str]]:
    log: list[str] = []
    runtime: list[RoleRuntime] = []

    class Mta(Resource):  # logs whether the SMTP port was closed when it was stopped
        name = "mta"
        start = monitor = staticmethod(lambda: OCF.SUCCESS)

        def stop(self) -> OCF:
            drain = runtime[0].drain
            log.append(f"stop {drain is not None and drain.closed}")
            return OCF.SUCCESS

    a = make_agent(name="drain", coord=LoggedCoord(log), clock=fake_clock, resources=lambda ctx: [Mta()])
    rt = a.roles["store"]
    runtime.append(rt)
    now = fake_clock  # at 100.0
    rt.held = Held(3, 1, 100.7, 5)
    rt.running = True
    return a, rt, now, log


def test_release_waits_for_sessions_in_flight_then_stops(setup: tuple) -> None:
    a, rt, now, log = setup
    rt.drain = FakeDrain([2, 2, 1] + [1] * 10 + [0])
    a._release(rt, "node2", "switchover")
    assert rt.drain.events[0] == "close"
    # renewed once meanwhile (every loop_s), stopped with the port still closed (the stop reopens
    # it after the VIP is down), then released
    assert log == ["renew", "stop True", "release"]
    assert 100.2 < now.t < 100.4  # 14 polls of 20 ms: the sessions finished


def test_release_drain_ends_at_drain_max_even_with_sessions_open(setup: tuple) -> None:
    a, rt, now, log = setup
    a.drain_max_s = 0.5
    rt.held = Held(3, 1, 1000.0, 5)  # renewed far ahead: only drain_max_s bounds it
    rt.drain = FakeDrain([3])
    a._release(rt, None, "agent stopping")
    assert abs(now.t - 100.5) < 0.03 and log.count("renew") >= 2 and log[-1] == "release"


def test_release_never_drains_past_the_deadline(setup: tuple) -> None:
    a, rt, now, log = setup
    a.drain_max_s = 30.0
    rt.drain = FakeDrain([3])  # never finishes; the deadline (100.7) is not renewed here
    a._release(rt, None, "unhealthy")
    assert now.t <= 100.7 - a.spec.timing.stop_timeout_s + 0.021


def test_demote_never_waits(setup: tuple) -> None:
    a, rt, now, log = setup
    rt.drain = FakeDrain([5])
    a._demote(rt, "lease expired")
    assert rt.drain.events == [] and now.t == 100.0 and log == ["stop False"]


def test_drain_off_stops_at_once(setup: tuple) -> None:
    a, rt, now, log = setup
    a.drain_max_s = 0
    rt.drain = FakeDrain([5])
    a._release(rt, None, "switchover")
    assert rt.drain.events == [] and now.t == 100.0


def test_cut_off_holder_closes_until_zookeeper_answers(setup: tuple) -> None:
    a, rt, now, log = setup
    rt.drain = FakeDrain([1])
    renew = Verdict("store", Action.RENEW, "holder")
    a.cluster = Cluster({}, {}, {}, False, connected=False)
    a._cut_off_drain(rt, renew)
    assert rt.drain.closed  # rule 22: no new sessions while the role may go at the deadline
    a._cut_off_drain(rt, renew)
    assert rt.drain.events == ["close"]
    a.cluster = Cluster({}, {}, {}, False, connected=True)
    a._cut_off_drain(rt, renew)
    assert not rt.drain.closed and rt.drain.events == ["close", "open"]
    # a failsafe extension (rule 13) keeps the role: nothing closes
    a.cluster = Cluster({}, {}, {}, False, connected=False)
    a._cut_off_drain(rt, renew._replace(extend_to=101.0))
    assert not rt.drain.closed


def test_a_role_without_vip_and_mta_has_no_drain(setup: tuple) -> None:
    a, rt, now, log = setup
    assert rt.drain is None  # the loopback spec's role has neither
