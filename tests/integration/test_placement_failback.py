"""Placement from the spec on real agents and a real ZooKeeper (ha.py rules 30-34): a prefer
weight puts the role on a lower-priority node; a node outside roles.R.nodes never holds it, even
when it is the only one left; failback returns the role to the preferred node once it has been
healthy for delay_s (and not before); without failback the role stays where it is (sticky);
`switchover --to` a node outside roles.R.nodes is refused before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster_lab.localcluster import LocalCluster, spec_text
from .agents import running
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]

ROLE = "store"
DELAY_S = 3.0


def placed(zk_hosts: str, cluster: str, extra: str) -> str:
    """node1 prio 100, node2 90 (+60 preferred), node3 80 and not allowed."""
    return spec_text(zk_hosts, n=3, cluster=cluster).replace(
        "    tier: store\n    resources:", f"    tier: store\n{extra}    resources:", 1)


def holder(lc: LocalCluster) -> str | None:
    held = lc.believed_holders(ROLE)
    return held[0] if len(held) == 1 else None


def make(zk, tmp_path: Path, name: str, extra: str) -> LocalCluster:
    cluster = f"hpf{os.getpid()}{name}"
    return LocalCluster(zk.hosts, tmp_path / name, cluster=cluster,
                        spec_text_=placed(zk.hosts, cluster, extra))


@pytest.fixture
def failback(zk_single, tmp_path: Path) -> Iterator[LocalCluster]:
    lc = make(zk_single, tmp_path, "fb", f"    nodes: [node1, node2]\n    prefer: {{node2: 60}}\n"
                                         f"    failback: {{delay_s: {DELAY_S:g}}}\n")
    with running(lc):
        yield lc


def test_prefer_nodes_and_failback(failback: LocalCluster) -> None:
    lc = failback
    # rule 31: node2 (90 + 60) outranks node1 (100); rule 30: node3 is never a candidate
    assert wait_for(lambda: holder(lc), 30, "a holder") == "node2"
    lc.kill("node2")
    wait_for(lambda: holder(lc) == "node1", 30, "node1 takes over from the dead node2")
    lc.kill("node1")  # node3 is left, healthy, not in roles.store.nodes: nobody may take it
    time.sleep(3 * lc.spec.timing.lease_s)
    assert lc.believed_holders(ROLE) == []
    assert "not in roles.store.nodes" in lc.log_path("node3").read_text()
    lc.start("node1")
    wait_for(lambda: holder(lc) == "node1", 30, "node1 back")
    # rule 33: node2 returns; the role goes back only once node2 has been healthy for DELAY_S
    lc.start("node2")
    wait_for(lambda: "failback in" in lc.log_path("node1").read_text(), 30, "node1 plans the failback")
    seen = time.monotonic()
    wait_for(lambda: holder(lc) == "node2", 30, "the failback to node2")
    assert time.monotonic() - seen >= DELAY_S - 1.0, "failed back before node2 was healthy for delay_s"
    assert "failback to node2" in lc.log_path("node1").read_text()
    assert not lc.dual_holders()


def test_sticky_without_failback_and_switchover_respects_nodes(zk_single, tmp_path: Path) -> None:
    lc = make(zk_single, tmp_path, "st", "    nodes: [node1, node2]\n    prefer: {node2: 60}\n")
    lc.start_all()
    try:
        assert wait_for(lambda: holder(lc), 30, "a holder") == "node2"
        res = subprocess.run([sys.executable, "-m", "hacluster", "switchover", ROLE, "--to", "node3", "--yes",
                              "--config", str(lc.spec_path)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and "node3 may not hold store (roles.store.nodes: node1, node2" in res.stderr
        lc.kill("node2")
        wait_for(lambda: holder(lc) == "node1", 30, "node1 takes over")
        lc.start("node2")
        time.sleep(DELAY_S + 3 * lc.spec.timing.lease_s)  # bounded: no failback configured, nothing moves
        assert holder(lc) == "node1"
    finally:
        lc.stop()
        lc.print_log_tails(15)
