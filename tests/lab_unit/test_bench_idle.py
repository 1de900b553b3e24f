"""The idle-cost measurement of `bench election` (lab/hacluster_lab/bench/idle.py): zxid parsing and the
per-agent attribution of writes from znode versions."""

from __future__ import annotations

import pytest

from hacluster_lab.bench.idle import attribute, parse_zxid, writes_between

SRVR = """Zookeeper version: 3.8.0-debian, built on 2023-02-01 00:00 UTC
Latency min/avg/max: 0/0.4/12
Received: 1200
Sent: 1199
Connections: 3
Outstanding: 0
Zxid: 0x2000000c8
Mode: leader
Node count: 12
"""


def test_zxid_is_read_from_srvr() -> None:
    assert parse_zxid(SRVR) == 0x2000000C8
    assert parse_zxid("This ZooKeeper instance is not currently serving requests\n") is None


def test_writes_are_the_zxid_advance_within_one_epoch() -> None:
    assert writes_between(0x200000010, 0x200000042) == 0x32
    with pytest.raises(RuntimeError, match="new leader"):
        writes_between(0x200000010, 0x300000001)  # a new epoch resets the counter


def test_writes_are_attributed_by_znode_version() -> None:
    v0 = {"/m/node1": (10, "node1"), "/m/node2": (4, "node2"), "/r/store/lease": (100, "node1"),
          "/m/node3": (7, "node3")}
    v1 = {"/m/node1": (15, "node1"), "/m/node2": (9, "node2"), "/r/store/lease": (150, "node1"),
          "/m/node3": (0, "node3")}  # node3's znode was re-created: left to `unattributed`
    assert attribute(v0, v1) == {"node1": 55, "node2": 5}
    moved = {**v1, "/r/store/lease": (151, "node2")}  # the lease changed hands: nobody's alone
    assert attribute(v0, moved) == {"node1": 5, "node2": 5}


def test_received_sums_every_server() -> None:
    from hacluster_lab.bench.idle import received

    class Ens:
        def running_ids(self) -> list[int]:
            return [1, 2, 3]

        def srvr(self, sid: int) -> str | None:
            return None if sid == 3 else SRVR.replace("Received: 1200", f"Received: {sid * 100}")

    assert received(Ens()) == 300  # a server that does not answer counts 0
