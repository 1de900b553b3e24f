"""ZooKeeper kept tidy (issue 14), with real agents around a real ZooKeeper: the heartbeat is
written when it changes or every timing.heartbeat_s (not every loop), a change still goes out at
once, failover does not depend on it, and the agents trim the history to zookeeper.history_keep."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from hacluster.coord.session import Coordinator
from hacluster_lab.localcluster import LocalCluster, spec_text
from hacluster.operator.client import _alive
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]
_seq = itertools.count()


def cluster(zk, tmp_path: Path, n: int = 3, timing: str = "", zookeeper: str = "") -> LocalCluster:
    name = f"tidy{os.getpid()}x{next(_seq)}"
    text = spec_text(zk.hosts, n, "default", name)
    text = text.replace("  profile: default\n", "  profile: default\n" + timing)
    text = text.replace("  session_timeout_s: 4.0\n", "  session_timeout_s: 4.0\n" + zookeeper)
    return LocalCluster(zk.hosts, tmp_path / name, n=n, spec_text_=text)


def versions(obs: Coordinator, nodes: list[str]) -> dict[str, int]:
    return {n: obs.zk.get(obs.paths.member(n))[1].version for n in nodes}


def test_heartbeat_goes_out_on_change_not_every_loop_and_failover_is_unaffected(zk_single, tmp_path: Path) -> None:
    lc = cluster(zk_single, tmp_path, timing="  heartbeat_s: 30\n")
    obs = None
    try:
        lc.start_all()
        holder, _ = lc.wait_holder(timeout=30) or (None, 0)
        assert holder, lc.agent_log_tail("node1")
        obs = lc.coordinator()
        wait_for(lambda: len(obs.snapshot(["store"]).members) == 3, 15, "three members")
        time.sleep(1.0)
        v0 = versions(obs, lc.nodes)
        time.sleep(3.0)  # 15 loops: every-loop heartbeats would be 15 writes per agent
        v1 = versions(obs, lc.nodes)
        assert all(v1[n] - v0[n] <= 1 for n in lc.nodes), (v0, v1)
        # nobody is judged silent for a heartbeat that is 30 s old by design
        c = obs.snapshot(["store"])
        assert all(_alive(lc.spec, c, n)[0] for n in lc.nodes)

        other = next(n for n in lc.nodes if n != holder)
        (lc.state_dir(other) / "standby").touch()
        t = time.monotonic()
        wait_for(lambda: not obs.snapshot(["store"]).members[other].healthy, 5, f"{other} published as standby")
        assert time.monotonic() - t < 3.0  # a change goes out at once, not after heartbeat_s
        assert obs.snapshot(["store"]).members[other].reasons == ("standby",)

        tk = lc.kill(holder)  # leases decide: the heartbeat period plays no part in the takeover
        new = lc.wait_holder(exclude=(holder,), timeout=15, after=tk)
        assert new is not None and new[0] != other
        assert new[1] - tk < lc.spec.timing.takeover_bound_s(ranks=1) + 0.6
        assert lc.dual_holders() == []
    finally:
        if obs is not None:
            obs.stop()
        lc.cleanup()


def test_unchanged_heartbeat_is_refreshed_every_heartbeat_s(zk_single, tmp_path: Path) -> None:
    lc = cluster(zk_single, tmp_path, n=2, timing="  heartbeat_s: 1.0\n")
    obs = None
    try:
        lc.start_all()
        assert lc.wait_holder(timeout=30), lc.agent_log_tail("node1")
        obs = lc.coordinator()
        wait_for(lambda: len(obs.snapshot(["store"]).members) == 2, 15, "two members")
        time.sleep(1.0)
        v0 = versions(obs, lc.nodes)
        time.sleep(5.0)
        v1 = versions(obs, lc.nodes)
        for n in lc.nodes:  # ~5 refreshes, where every loop would have been ~25
            assert 3 <= v1[n] - v0[n] <= 7, (n, v0, v1)
        ages = [m.heartbeat_age_s for m in obs.snapshot(["store"]).members.values()]
        assert all(a is not None and a < lc.spec.timing.heartbeat_stale_s for a in ages), ages
    finally:
        if obs is not None:
            obs.stop()
        lc.cleanup()


def history_names(obs: Coordinator) -> list[str]:
    return sorted((n for n in obs.zk.get_children(obs.paths.history) if n.startswith("h-")), key=lambda n: int(n[2:]))


def test_trim_history_keeps_the_newest_and_leaves_foreign_znodes(zk_single, tmp_path: Path) -> None:
    lc = cluster(zk_single, tmp_path, n=1)
    obs = lc.coordinator()
    try:
        for _ in range(25):
            obs.zk.create(obs.paths.history + "/h-", b'{"at": 1, "event": "x"}', sequence=True)
        obs.zk.create(obs.paths.history + "/note", b"operator's")
        names = history_names(obs)
        assert obs.trim_history(keep=10, batch=5) == 5  # at most a batch per call
        assert history_names(obs) == names[5:]
        assert obs.trim_history(keep=10) == 10
        assert history_names(obs) == names[-10:]
        assert obs.trim_history(keep=10) == 0  # idempotent
        assert "note" in obs.zk.get_children(obs.paths.history)
    finally:
        obs.stop()
        lc.cleanup()


def test_agent_trims_the_history_to_history_keep(zk_single, tmp_path: Path) -> None:
    lc = cluster(zk_single, tmp_path, n=1, zookeeper="  history_keep: 10\n")
    obs = lc.coordinator()
    try:
        for _ in range(40):
            obs.zk.create(obs.paths.history + "/h-", b'{"at": 1, "event": "x"}', sequence=True)
        newest = history_names(obs)[-1]
        lc.start_all()
        assert lc.wait_holder(timeout=30), lc.agent_log_tail("node1")
        wait_for(lambda: len(history_names(obs)) <= 11, 10, "the agent's trim")  # 10, plus its own "acquired"
        assert newest in history_names(obs)
    finally:
        obs.stop()
        lc.cleanup()
