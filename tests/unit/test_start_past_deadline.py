"""Issue 19, the fast profile under load: a resource start refused because the lease it was
started under ran out meanwhile is a lost lease, not a resource failure (no 30 s bar). The
scripted coordinator of test_late_renewal stands in for ZooKeeper; the lab measurement is
`hacluster bench false-failover` (docs/vip.md)."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_late_renewal import ROLE, ScriptedCoord  # noqa: E402

from hacluster import clock  # noqa: E402
from hacluster.agent.loop import Agent, RoleRuntime  # noqa: E402
from hacluster.coord.model import Cluster  # noqa: E402
from hacluster.coord.outcome import Renewed  # noqa: E402
from hacluster.ha import Held  # noqa: E402

pytestmark = pytest.mark.timeout(30)


class RecordingCoord(ScriptedCoord):
    def __init__(self, marker: Path) -> None:
        super().__init__(marker)
        self.calls: list[dict[str, Any]] = []

    def renew(self, role: str, term: int, seq: int, version: int, **_kw: Any) -> Any:
        self.calls.append({"role": role, "version": version})
        return Renewed(version + 1, clock.now())


def make(tmp_path: Path, make_agent: Any, failsafe: bool = False, left_s: float = 5.0) -> tuple[Agent, RoleRuntime, RecordingCoord]:
    """node1 holding term 3 (version 4) with `left_s` to its deadline (generous: a loaded test
    machine must not let it pass before the call under test) and a renewal due."""
    coord = RecordingCoord(tmp_path / "state" / "RUNNING")
    # relaxed: renew_s 1.5 s, no second renewal falls due on a slow machine
    agent = make_agent(3, "relaxed", "renew", claims_log=str(tmp_path / "claims.jsonl"), coord=coord)
    if failsafe:
        agent.spec = dataclasses.replace(agent.spec, failsafe=True)
    spec = agent.spec
    rt = agent.roles[ROLE]
    rt.held = Held(3, 0, clock.now() + left_s, 4)
    rt.renewed_at = clock.now() - spec.timing.renew_s  # due now
    agent.cluster = Cluster({}, {}, {}, False, connected=True)
    return agent, rt, coord


def test_a_start_refused_because_the_lease_ran_out_is_no_resource_failure(tmp_path: Path, make_agent: Any) -> None:
    """The VIP refuses to add its address once the deadline has passed; that is a lost lease,
    and counting it as a resource failure kept the node out of the running for 30 s (issue 19:
    under load both stores at once, the role unheld for ~30 s)."""
    from hacluster.resources.base import OCF

    agent, rt, coord = make(tmp_path, make_agent, left_s=0.2)
    until = rt.held.until

    def start_past_the_deadline() -> OCF:
        time.sleep(max(0.0, until - clock.now()) + 0.01)
        return OCF.ERR_GENERIC

    rt.resources[0].start = start_past_the_deadline  # type: ignore[method-assign]
    assert agent._start_resources(rt) is True


def test_a_start_that_fails_within_the_lease_is_still_a_failure(tmp_path: Path, make_agent: Any) -> None:
    from hacluster.resources.base import OCF

    agent, rt, coord = make(tmp_path, make_agent)
    rt.resources[0].start = lambda: OCF.ERR_GENERIC  # type: ignore[method-assign]
    assert agent._start_resources(rt) is False
