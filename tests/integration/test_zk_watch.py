"""Watch-driven snapshots and the holder's renewal cadence (issue 14), on a real ZooKeeper.

The snapshot re-reads only what a watch said changed (coord/watchcache.py): an idle cluster
costs no reads, a change made by another client shows up in the next snapshots, and after the
connection drops everything is read again. A holder renews every timing.renew_s, not every loop.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from hacluster.coord.outcome import Acquired, Renewed
from hacluster_lab.bench.idle import parse_zxid
from hacluster_lab.bench.txnlog import transactions
from hacluster.coord.session import Coordinator
from hacluster_lab.localcluster import LocalCluster, spec_text
from hacluster.spec import parse_spec
from .waiting import until_done, wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]
_seq = itertools.count()


def coordinators(zk, n: int = 2) -> list[Coordinator]:
    spec = parse_spec(spec_text(zk.hosts, 3, "default", f"watch{os.getpid()}x{next(_seq)}"))
    out = [Coordinator(spec, f"t{i}", request_timeout=5.0) for i in range(n)]
    for c in out:
        c.start()
    return out


def test_snapshot_reads_only_what_changed_and_sees_every_change(zk_single) -> None:
    obs, writer = coordinators(zk_single)
    obs.snapshot(["store"], timeout=5.0)  # uncached (CLI commands): no watched read is made
    assert obs.cache.reads == 0
    try:
        first = obs.snapshot(["store"], timeout=5.0, cached=True)
        assert first.connected and not first.maintenance and not first.requests and not first.constraints
        r0 = obs.cache.reads
        assert r0 >= 5  # members, lease, request, maintenance, constraints
        for _ in range(20):  # 20 loops of an idle cluster: not one read
            assert obs.snapshot(["store"], timeout=5.0, cached=True).maintenance is False
        assert obs.cache.reads == r0

        # another client's writes reach the snapshot through the watches
        writer.set_maintenance(True, by="test")
        wait_for(lambda: obs.snapshot(["store"], timeout=5.0, cached=True).maintenance, 5, "maintenance seen")
        writer.put_request("store", "switchover", "node2", by="test")
        wait_for(lambda: "store" in obs.snapshot(["store"], timeout=5.0, cached=True).requests, 5, "request seen")
        assert obs.snapshot(["store"], timeout=5.0, cached=True).requests["store"].to == "node2"
        writer.put_constraint("node3", None, by="test", until=None)
        wait_for(lambda: obs.snapshot(["store"], timeout=5.0, cached=True).constraints, 5, "constraint seen")
        writer.put_request("store", "switchover", "node3", by="test")  # a change of an existing znode
        wait_for(lambda: obs.snapshot(["store"], timeout=5.0, cached=True).requests["store"].to == "node3", 5, "request changed")
        writer.clear_request("store")
        writer.set_maintenance(False, by="test")
        wait_for(lambda: not obs.snapshot(["store"], timeout=5.0, cached=True).requests, 5, "request gone")
        wait_for(lambda: not obs.snapshot(["store"], timeout=5.0, cached=True).maintenance, 5, "maintenance gone")
        got = writer.acquire("store", writer.snapshot(["store"], timeout=5.0).leases["store"])
        assert isinstance(got, Acquired), got
        wait_for(lambda: obs.snapshot(["store"], timeout=5.0, cached=True).leases["store"].holder == "t1", 5, "lease seen")
        # a renewal (same holder and term, new version) is seen afresh: decoded leases are reused
        # only while the version and its first-seen time are the same (coord/session.py)
        seen1 = obs.snapshot(["store"], timeout=5.0, cached=True).leases["store"]
        assert obs.max_term("store") == seen1.term == got.term and seen1.version == got.version
        renewed = writer.renew("store", got.term, 1, got.version)
        assert isinstance(renewed, Renewed), renewed
        wait_for(lambda: obs.snapshot(["store"], timeout=5.0, cached=True).leases["store"].version == renewed.version,
                 5, "renewal seen")
        seen2 = obs.snapshot(["store"], timeout=5.0, cached=True).leases["store"]
        assert seen2.observed_at > seen1.observed_at and seen2.zxid > seen1.zxid and seen2.seq == 1
        # each change cost a read or two, not a full snapshot per loop
        r1 = obs.cache.reads
        assert r1 - r0 < 27, (r0, r1)
        for _ in range(10):
            obs.snapshot(["store"], timeout=5.0, cached=True)
        assert obs.cache.reads == r1
    finally:
        obs.stop()
        writer.stop()


def test_after_the_connection_dropped_everything_is_read_again(zk_single) -> None:
    obs, writer = coordinators(zk_single)
    try:
        obs.snapshot(["store"], timeout=5.0, cached=True)
        r0 = obs.cache.reads
        obs.snapshot(["store"], timeout=5.0, cached=True)
        assert obs.cache.reads == r0
        full = r0  # a snapshot with nothing cached
        zk_single.stop_server(1)
        wait_for(lambda: not obs.connected, 15, "observer disconnected")
        zk_single.start_server(1)
        zk_single.wait_serving(60)
        wait_for(lambda: obs.connected, 30, "observer reconnected")
        until_done(lambda: writer.set_maintenance(True, by="test"), 30, "maintenance set")  # writer may still reconnect
        wait_for(lambda: obs.snapshot(["store"], timeout=5.0, cached=True).maintenance, 15, "maintenance seen after the reconnect")
        assert obs.cache.reads - r0 >= full - 1  # read afresh (the maintenance read may come from its watch)
    finally:
        obs.stop()
        writer.stop()


def test_holder_renews_every_renew_s_not_every_loop(zk_single, tmp_path: Path) -> None:
    name = f"renew{os.getpid()}x{next(_seq)}"
    lc = LocalCluster(zk_single.hosts, tmp_path / name, n=2, spec_text_=spec_text(zk_single.hosts, 2, "default", name))
    obs = None
    try:
        lc.start_all()
        holder, _ = lc.wait_holder(timeout=30) or (None, 0)
        assert holder, lc.agent_log_tail("node1")
        t = lc.spec.timing
        assert t.renew_s == pytest.approx(1.05) and t.loop_s == pytest.approx(0.2)
        obs = lc.coordinator()
        path = obs.paths.lease("store")
        sid = zk_single.running_ids()[0]
        z0 = parse_zxid(zk_single.srvr(sid) or "")
        v0, t0 = obs.zk.get(path)[1].version, time.monotonic()
        time.sleep(5.0)
        v1, t1 = obs.zk.get(path)[1].version, time.monotonic()
        z1 = parse_zxid(zk_single.srvr(sid) or "")
        rate = (v1 - v0) / (t1 - t0)
        # every loop would be 5/s; every renew_s is 0.95/s (a busy machine wakes late: fewer; 4-5
        # renewals fall in the 5 s window)
        assert 0.6 <= rate <= 1 / t.renew_s + 0.25, rate
        # the holder's every write in the window, from the server's transaction log: renewals, and
        # its heartbeat refresh (every 2 s) inside a renewal's multi -- one transaction, not two
        assert z0 is not None and z1 is not None
        me = obs.paths.member(holder)
        session = obs.zk.get(me)[1].ephemeralOwner
        mine = [x for x in transactions(zk_single.server_dir(sid) / "data", z0, z1) if x.session == session]
        kinds = {(x.op, x.paths) for x in mine}
        assert ("multi", (path, me)) in kinds, kinds
        assert kinds <= {("set", (path,)), ("multi", (path, me)), ("set", (me,))}, kinds
        # and the lease never lapsed meanwhile: one claim, one term, no demotion in the log
        assert lc.believed_holders() == [holder] and not lc.dual_holders()
        assert "demot" not in lc.agent_log_tail(holder, 400).lower()
    finally:
        if obs is not None:
            obs.stop()
        lc.cleanup()


def test_renewal_carrying_the_heartbeat_renews_alone_when_the_member_znode_is_gone(zk_single) -> None:
    """A multi is all or nothing: if the heartbeat part fails, the renewal goes out alone at once
    (a holder must not lose its lease over its member znode), and says the heartbeat did not go."""
    from hacluster.coord.model import Member

    (c,) = coordinators(zk_single, 1)
    try:
        got = c.acquire("store", c.snapshot(["store"]).leases["store"])
        assert isinstance(got, Acquired), got
        term, version = got.term, got.version
        me = Member("t0", "store", 100, True, False)
        assert c.heartbeat(me)
        res = c.renew("store", term, 1, version, member=me)
        assert isinstance(res, Renewed) and c.heartbeat_carried, res
        assert c.zk.get(c.paths.member("t0"))[1].mzxid == c.zk.get(c.paths.lease("store"))[1].mzxid  # one transaction
        c.zk.delete(c.paths.member("t0"))
        res2 = c.renew("store", term, 2, res.version, member=me)
        assert isinstance(res2, Renewed) and res2.version == res.version + 1 and not c.heartbeat_carried, res2
        assert c.zk.exists(c.paths.member("t0")) is None
    finally:
        c.stop()
