"""A lease write of ours that lands when we no longer hold the role is given back at once.

The agent runs with its real resources (the LocalCluster spec's command resource, which writes a
RUNNING marker) and a scripted coordinator in place of ZooKeeper, so the interleavings that are
rare in a real cluster (the ack arrives after the deadline; the guard demotes while the renewal
is in flight) happen every time. The real-ZooKeeper version of the story is
tests/integration/test_agent_zk.py::test_renewal_applied_after_the_holder_demoted_is_given_back_at_once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import pytest

from hacluster.agent.loop import Agent, RoleRuntime
from hacluster.coord.model import Cluster, Lease
from hacluster.coord.outcome import AcquireResult, Acquired, Adopted, Lost, Renewed, RenewResult, Unreachable
from hacluster.ha import Held

pytestmark = pytest.mark.timeout(30)

ROLE = "store"


class ScriptedCoord:
    """Stands in for Coordinator: `renew` runs the test's script; writes are recorded, with
    whether the role's resource was still running when the release was written."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.script: Callable[[], RenewResult] = lambda: Unreachable()
        self.releases: list[tuple[str, int, int, str | None, bool]] = []
        self.records: list[tuple[str, str | None, dict]] = []
        self.written: dict[str, set[int]] = {}
        self.release_ok = True
        self.acquired: AcquireResult = Unreachable()

    def renew(self, role: str, term: int, seq: int, version: int, member: Any = None,
              timeout: float | None = None) -> RenewResult:
        return self.script()

    def acquire(self, role: str, seen: Lease) -> AcquireResult:
        return self.acquired

    def release(self, role: str, term: int, version: int, handoff_to: str | None, reason: str | None = None) -> bool:
        self.releases.append((role, term, version, handoff_to, self.marker.exists()))
        if self.release_ok:  # the real release writes its history entry in the same transaction
            self.records.append(("released", role, {"term": term, "reason": reason}))
        return self.release_ok

    def record(self, event: str, role: str | None = None, **fields: Any) -> None:
        self.records.append((event, role, fields))

    def wrote_term(self, role: str, term: int) -> bool:
        return term in self.written.get(role, ())


@pytest.fixture
def holder(tmp_path: Path, make_agent, fake_clock) -> tuple[Agent, RoleRuntime, ScriptedCoord]:
    """node1 holding term 3 (znode version 4) of the fast profile, its resource running; time
    moves only when a test moves it (the fast lease would run out on a busy machine otherwise)."""
    coord = ScriptedCoord(tmp_path / "state" / "RUNNING")
    agent = make_agent(3, "fast", "demo", claims_log=str(tmp_path / "claims.jsonl"), coord=coord, clock=fake_clock)
    rt = agent.roles[ROLE]
    rt.held = Held(3, 0, fake_clock.now() + agent.spec.timing.holder_validity_s, 4)
    coord.written[ROLE] = {3}
    assert agent._start_resources(rt) and coord.marker.exists()
    return agent, rt, coord


def claims(agent: Agent) -> list[dict]:
    return [json.loads(ln) for ln in Path(agent.claims.f.name).read_text().splitlines()]


def test_renewal_acknowledged_after_its_deadline_stops_then_releases_that_version(holder, caplog) -> None:
    agent, rt, coord = holder
    until = rt.held.until

    def stuck_past_the_deadline() -> RenewResult:
        t_send = agent.clock.now()
        agent.clock.sleep(max(0.0, until - agent.clock.now()) + 0.25)  # the loop was frozen with the ack in flight
        return Renewed(5, t_send)

    coord.script = stuck_past_the_deadline
    agent._renew(rt)
    assert rt.held is None and not coord.marker.exists()
    # released on exactly the version the late renewal left, after the resource stopped
    assert coord.releases == [(ROLE, 3, 5, None, False)]
    evs = [e["event"] for e in claims(agent)]
    assert evs[-2:] == ["demoted", "gave-back"], evs
    demoted, gave = claims(agent)[-2:]
    assert "lease expired" in demoted["reason"] and "acknowledged" in demoted["reason"]
    assert (gave["term"], gave["version"], gave["written"]) == (3, 5, True)
    assert [r[0] for r in coord.records] == ["demoted", "released"]
    assert "late lease write given back: term 3 version 5" in caplog.text


def test_renewal_acknowledged_in_time_after_the_guard_demoted_is_given_back(holder) -> None:
    agent, rt, coord = holder

    def guard_fires_meanwhile() -> RenewResult:
        t_send = agent.clock.now()
        agent._demote(rt, "lease expired 0.001s ago (no acknowledged renewal)")  # what the guard thread does
        return Renewed(6, t_send)

    coord.script = guard_fires_meanwhile
    agent._renew(rt)
    assert rt.held is None and not coord.marker.exists()
    assert coord.releases == [(ROLE, 3, 6, None, False)]
    assert [e["event"] for e in claims(agent)][-2:] == ["demoted", "gave-back"]


def test_an_adopted_earlier_renewal_after_demotion_is_given_back(holder) -> None:
    agent, rt, coord = holder

    def adopt_after_demotion() -> RenewResult:
        agent._demote(rt, "lease expired 0.001s ago (no acknowledged renewal)")
        return Adopted(7)  # our timed-out renewal landed: BadVersion, then the znode names us at 7

    coord.script = adopt_after_demotion
    agent._renew(rt)
    assert coord.releases == [(ROLE, 3, 7, None, False)]


#: the agent's answer to each renewal outcome, the holder untouched meanwhile: (what renew
#: answered -> still holding, the znode version held after, the ZooKeeper-failed flag of this loop
#: (ha_local.py rule 44 turns it into the stall), releases)
RENEW_ROWS = [
    ("renewed in time", lambda now: Renewed(5, now), True, 5, False, []),
    ("adopted: an earlier renewal landed, the resend too", lambda now: Adopted(7), True, 7, False, []),
    ("lost to another writer", lambda now: Lost(), False, None, False, []),
    ("zookeeper unreachable", lambda now: Unreachable("timeout"), True, 4, True, []),
]


@pytest.mark.parametrize("name,result,holds,version,stalled,releases", RENEW_ROWS, ids=[r[0] for r in RENEW_ROWS])
def test_each_renewal_outcome_maps_to_one_agent_action(holder, name, result, holds, version, stalled, releases) -> None:
    agent, rt, coord = holder
    until = rt.held.until
    coord.script = lambda: result(agent.clock.now())
    agent.clock.sleep(0.01)  # a loop later
    agent._renew(rt)
    assert (rt.held is not None) == holds and coord.marker.exists() == holds
    if holds:
        # an adopted write is sent again at once (once): two CAS answers, each one seq further
        assert rt.held.version == version and rt.held.seq == {4: 0, 7: 2}.get(version, 1)
        # only an acknowledged renewal, whose send time is known, moves the deadline
        assert (rt.held.until > until) == (name == "renewed in time")
    assert agent._zk_failed == stalled
    assert coord.releases == releases


def test_an_adopted_renewal_is_sent_again_at_once_and_that_one_extends(holder) -> None:
    """A ZooKeeper stall ends: the renewal that timed out landed (Adopted, no extension); the
    agent renews again on the version it left in the same call, not a loop later (timing.stall_s
    budgets exactly that), and that renewal's send time moves the deadline."""
    agent, rt, coord = holder
    until = rt.held.until
    answers: list[RenewResult] = [Adopted(7)]
    sent: list[float] = []

    def stall_ended() -> RenewResult:
        sent.append(agent.clock.now())
        return answers.pop(0) if answers else Renewed(8, sent[-1])

    coord.script = stall_ended
    agent.clock.sleep(0.01)
    agent._renew(rt)
    assert len(sent) == 2 and sent[1] == sent[0]  # no loop in between
    assert rt.held is not None and (rt.held.version, rt.held.seq) == (8, 2)
    assert rt.held.until == pytest.approx(sent[1] + agent.spec.timing.holder_validity_s) and rt.held.until > until
    assert rt.renewed_at == sent[1] and coord.releases == []


def test_failed_give_back_is_logged_and_not_recorded_as_a_release(holder, caplog) -> None:
    agent, rt, coord = holder
    caplog.set_level(logging.INFO, "hacluster.agent")
    coord.release_ok = False  # a new holder wrote since: the CAS changes nothing
    agent._demote(rt, "lease expired 0.001s ago (no acknowledged renewal)")
    agent._give_back(rt, 3, 5, "test")
    assert coord.releases == [(ROLE, 3, 5, None, False)]
    assert [r[0] for r in coord.records] == ["demoted"]
    assert "could not be given back" in caplog.text


def snapshot_with(holder_: str | None, term: int, version: int = 9) -> Cluster:
    return Cluster({}, {ROLE: Lease(ROLE, holder_, term, 1, version)}, {}, False, connected=True)


def test_snapshot_naming_us_at_a_version_after_our_last_ack_is_given_back(holder, caplog) -> None:
    """Version 4 was our last acknowledged write; version 9 naming us is one that landed late."""
    agent, rt, coord = holder
    agent._demote(rt, "lease expired 0.001s ago (no acknowledged renewal)")
    agent.cluster = snapshot_with("node1", 3, 9)
    agent._give_back_stale()
    assert coord.releases == [(ROLE, 3, 9, None, False)]
    assert "last acknowledged: version 4" in caplog.text


def test_an_acquisition_whose_reply_was_lost_is_given_back(holder) -> None:
    agent, rt, coord = holder
    agent._demote(rt, "lease expired 0.001s ago (no acknowledged renewal)")
    coord.written[ROLE].add(4)  # we sent term 4's acquisition; it timed out but landed
    agent.cluster = snapshot_with("node1", 4, 5)
    agent._give_back_stale()
    assert coord.releases == [(ROLE, 4, 5, None, False)]


@pytest.mark.parametrize("case", ["still holding", "our last acknowledged lease", "another holder",
                                  "a term we never wrote", "free", "zookeeper unreachable"])
def test_snapshot_give_back_only_for_our_own_stale_write(holder, case: str) -> None:
    agent, rt, coord = holder
    if case != "still holding":
        agent._demote(rt, "lease expired 0.001s ago (no acknowledged renewal)")
    agent.cluster = {
        "still holding": snapshot_with("node1", 3),
        "our last acknowledged lease": snapshot_with("node1", 3, 4),  # runs out by the deadline rules
        "another holder": snapshot_with("node2", 4),
        "a term we never wrote": snapshot_with("node1", 2),  # a previous agent process's lease
        "free": snapshot_with(None, 3),
        "zookeeper unreachable": snapshot_with("node1", 3)._replace(connected=False),
    }[case]
    agent._give_back_stale()
    assert coord.releases == []
    assert coord.marker.exists() == (case == "still holding")


@pytest.mark.parametrize("result", [Acquired(4, 0, 0.0), Lost(), Unreachable("timeout")], ids=lambda r: type(r).__name__)
def test_each_acquire_outcome_maps_to_holding_or_not(tmp_path: Path, make_agent, fake_clock, result) -> None:
    """Only Acquired makes us the holder, its deadline counted from the send time; Lost and
    Unreachable leave us a candidate for the next loop."""
    coord = ScriptedCoord(tmp_path / "state" / "RUNNING")
    agent = make_agent(3, "fast", "demo", coord=coord, clock=fake_clock)
    rt = agent.roles[ROLE]
    t_send = fake_clock.now()
    coord.acquired = Acquired(4, 0, t_send) if isinstance(result, Acquired) else result
    agent.cluster = snapshot_with(None, 3)
    agent._acquire(rt)
    if rt.starter is not None:
        rt.starter.join(10)
    try:
        if isinstance(result, Acquired):
            assert rt.held == Held(4, 0, t_send + agent.spec.timing.holder_validity_s, 0)
            assert [r[0] for r in coord.records] == ["acquired"] and coord.marker.exists()
        else:
            assert rt.held is None and rt.starter is None and coord.records == []
    finally:
        agent._stop_resources(rt, "test")
