"""Recurring resource monitors on real agents and a real ZooKeeper (resource_monitor.py): the
holder's resource dies under it (its RUNNING marker removed) -- `on_fail: restart` starts it again
in place, same holder and term; `on_fail: demote` hands the role to another node."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster_lab.localcluster import LocalCluster, spec_text
from .agents import running
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]


def monitored(zk_hosts: str, cluster: str, on_fail: str) -> str:
    return spec_text(zk_hosts, n=2, cluster=cluster).replace(
        "        timeout_s: 5\n", f"        timeout_s: 5\n        monitor_interval_s: 0.3\n        on_fail: {on_fail}\n", 1)


@pytest.fixture(params=["restart", "demote"])
def lc(request: pytest.FixtureRequest, zk_single, tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = f"hrm{os.getpid()}{request.param}"
    c = LocalCluster(zk_single.hosts, tmp_path / "c", cluster=cluster,
                     spec_text_=monitored(zk_single.hosts, cluster, request.param))
    with running(c):
        yield c


def test_a_failed_monitor_restarts_or_hands_over(lc: LocalCluster) -> None:
    on_fail = lc.spec.roles["store"].resources[0].params["on_fail"]
    first = wait_for(lambda: (h := lc.believed_holders("store")) and len(h) == 1 and h[0], 30, "a holder")
    marker = lc.state_dir(first) / "RUNNING"
    wait_for(marker.exists, 10, "the resource up")
    token = marker.read_text()
    marker.unlink()  # the resource dies under the holder; only the monitor can notice
    if on_fail == "restart":
        wait_for(marker.exists, 10, "the resource started again")
        assert marker.read_text() == token  # same term: restarted in place, not a new holding
        wait_for(lambda: "restarted in place" in lc.log_path(first).read_text(), 10, "the log line")
        assert lc.believed_holders("store") == [first]
    else:
        other = next(n for n in lc.nodes if n != first)
        wait_for(lambda: lc.believed_holders("store") == [other], 20, "the role on the other node")
        assert "failed its monitor (NOT_RUNNING, on_fail demote)" in lc.log_path(first).read_text()
    assert not lc.dual_holders()
