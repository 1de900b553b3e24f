"""Soft anti-colocation from the spec on real agents and a real ZooKeeper (ha.py rule 32):
`store-b` with `avoid_with: [store]` is placed on a node not holding `store` while one is
eligible, also when its holder fails, and still on the `store` holder when that is the only node
left (soft, unlike a Pacemaker colocation of -INF)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster_lab.localcluster import LocalCluster
from .agents import running
from .test_placement_failback import placed
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

B = "store-b"


def two_roles(zk_hosts: str, cluster: str) -> str:
    """The loopback spec (node1 prio 100, node2 90, node3 80): `store` kept on node1, so that
    without rule 32 node1 would always rank first for `store-b` too; `store-b` (a marker file of
    its own) avoids `store`."""
    text = placed(zk_hosts, cluster, "    nodes: [node1]\n")
    block = text[text.index("  store:\n"):text.index("nodes:\n")]
    other = (block.replace("  store:\n", f"  {B}:\n", 1).replace("    nodes: [node1]\n", "    avoid_with: [store]\n", 1)
             .replace("RUNNING", "RUNNING-b"))
    return text.replace(block, block + other, 1)


def holder(lc: LocalCluster, role: str) -> str | None:
    held = lc.believed_holders(role)
    return held[0] if len(held) == 1 else None


@pytest.fixture
def lc(zk_single, tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = f"hpa{os.getpid()}"
    c = LocalCluster(zk_single.hosts, tmp_path / "av", cluster=cluster, spec_text_=two_roles(zk_single.hosts, cluster))
    with running(c):
        yield c


def test_avoid_with_keeps_roles_apart_while_it_can(lc: LocalCluster) -> None:
    # all three healthy: store-b goes to a node not holding store, also when both are due at once
    wait_for(lambda: holder(lc, "store") == "node1", 30, "node1 holding store")
    first = wait_for(lambda: holder(lc, B), 30, f"a {B} holder")
    assert first != "node1"
    # its holder fails: node1 (priority 100) holds store, so the third node takes store-b
    third = next(n for n in lc.nodes if n not in ("node1", first))
    lc.kill(first)
    wait_for(lambda: holder(lc, B) == third, 30, f"{third} taking {B} from the dead {first}")
    assert holder(lc, "store") == "node1"
    # only the store holder is left: soft, so it holds store-b too
    lc.kill(third)
    wait_for(lambda: holder(lc, B) == "node1", 30, f"node1 taking {B} as the last node")
    assert holder(lc, "store") == "node1" and not lc.dual_holders()
