"""A node cut off from ZooKeeper decides nothing on its watch cache (ha_local.py rule 45).

The watch cache (coord/watchcache.py) answers from memory until kazoo notices the lost connection,
which after a silent cut (packets dropped, no reset) takes seconds -- longer than a lease. The
store holder cut from ZooKeeper (drill partition-holder-from-zookeeper on the Vagrant machines)
demoted at its deadline, then read its own expired lease from the cache, reached ACQUIRE at the
very moment the standby did, and its duplicate-address probe ahead of the (failing) write made the
standby's VIP refuse to start (RFC 5227: a simultaneous probe is a conflict): no store holder for
~30 s. Here the agent runs whole cycles against a coordinator whose cache is stale in exactly that
way while the server does not answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hacluster.agent.loop import Agent
from hacluster.coord.model import Cluster, Lease, Member
from hacluster.coord.outcome import AcquireResult, Lost, RenewResult, Unreachable
from hacluster.ha import Action, Held

pytestmark = pytest.mark.timeout(30)

ROLE = "store"


class CutCoord:
    """ZooKeeper gone silent under a kazoo that has not noticed: `connected` stays True, every
    request times out, and the watch cache still holds the world as it was at the cut."""

    def __init__(self, stale: Cluster) -> None:
        self.stale = stale
        self.reads: list[bool] = []  # cached? per snapshot
        self.acquires = 0
        self.server_back = False
        self.connected = True
        self.session_id = 1
        self.heartbeat_carried = False
        self.holding = lambda: False  # the test wires in the agent's view
        self.held_reads: list[bool] = []  # cached? per snapshot read while the agent held the role

    def snapshot(self, roles: Any, timeout: float | None = None, cached: bool = False) -> Cluster:
        self.reads.append(cached)
        if self.holding():
            self.held_reads.append(cached)
        if cached or self.server_back:
            return self.stale
        return Cluster({}, {}, {}, False, connected=False)  # the read from the server timed out

    def heartbeat(self, me: Member, timeout: float | None = None) -> bool:
        return self.server_back

    def renew(self, role: str, term: int, seq: int, version: int, member: Any = None,
              timeout: float | None = None) -> RenewResult:
        return Unreachable("timeout")

    def acquire(self, role: str, seen: Lease) -> AcquireResult:
        self.acquires += 1
        return Lost() if self.server_back else Unreachable("timeout")

    def release(self, role: str, term: int, version: int, handoff_to: str | None, reason: str | None = None) -> bool:
        return False

    def record(self, event: str, role: str | None = None, **fields: Any) -> None:
        pass

    def wrote_term(self, role: str, term: int) -> bool:
        return False

    def trim_history(self, *args: Any, **kwargs: Any) -> None:
        pass


def stale_world(agent: Agent, t: float) -> Cluster:
    """What the cache holds: both nodes healthy, the lease ours at term 3 (version 4), seen at t."""
    me = agent.health.evaluate(holding=True)._replace(config=agent.config)
    members = {"node1": me, "node2": me._replace(name="node2", priority=90)}
    lease = Lease(ROLE, "node1", 3, 0, 4, observed_at=t, zxid=7,
                  lease_s=agent.spec.timing.lease_s, margin_s=agent.spec.timing.margin_s)
    return Cluster(members, {ROLE: lease}, {}, False, connected=True)


@pytest.fixture
def cut_holder(tmp_path: Path, make_agent, fake_clock) -> tuple[Agent, CutCoord]:
    coord = CutCoord(Cluster({}, {}, {}, False))
    agent = make_agent(2, "default", "cut", claims_log=str(tmp_path / "claims.jsonl"), coord=coord, clock=fake_clock)
    coord.stale = stale_world(agent, fake_clock.now())
    coord.holding = lambda: agent.roles[ROLE].held is not None
    rt = agent.roles[ROLE]
    rt.held = Held(3, 0, fake_clock.now() + agent.spec.timing.holder_validity_s, 4)
    rt.renewed_at = fake_clock.now()
    assert agent._start_resources(rt)
    return agent, coord


def run_until(agent: Agent, end: float) -> list[tuple[float, Action]]:
    """Run cycles at the times the agent asks for (at least every 5 ms) until `end`."""
    seen = []
    while agent.clock.now() < end:
        nxt = agent.cycle()
        rt = agent.roles[ROLE]
        if rt.last_verdict is not None:
            seen.append((round(agent.clock.now(), 3), rt.last_verdict.action))
        agent.clock.t = max(nxt, agent.clock.now() + 0.005)
    return seen


def test_cut_off_holder_demotes_and_never_acquires_on_its_stale_cache(cut_holder) -> None:
    agent, coord = cut_holder
    t0 = agent.clock.now()
    verdicts = run_until(agent, t0 + 3 * agent.spec.timing.lease_s)
    rt = agent.roles[ROLE]
    assert rt.held is None  # demoted at its deadline (the renewals timed out): safety as before
    acts = {a for _, a in verdicts}
    # the cached lease (ours, expired) would say ACQUIRE at t0 + lease_s, probe ahead included
    assert Action.ACQUIRE not in acts, verdicts
    assert coord.acquires == 0
    assert rt.last_verdict is not None and "zookeeper unreachable" in rt.last_verdict.reason
    # while it held the role it read the cache (its renewals rest on the CAS; a slow read must not
    # delay the retry); once it held nothing, after the timed-out renewals, every snapshot came
    # from the server
    assert coord.reads[0] is True
    first_uncached = coord.reads.index(False)
    assert not any(coord.reads[first_uncached:]), coord.reads
    assert coord.held_reads and all(coord.held_reads), coord.held_reads


def test_the_cache_is_used_again_once_the_server_answers(cut_holder) -> None:
    agent, coord = cut_holder
    t0 = agent.clock.now()
    run_until(agent, t0 + agent.spec.timing.lease_s)  # past the holder's deadline: demoted, suspicious
    assert agent.roles[ROLE].held is None
    assert coord.reads[-1] is False
    coord.server_back = True
    run_until(agent, agent.clock.now() + 0.5)
    assert coord.reads[-1] is True  # an answer from the server ended the suspicion
