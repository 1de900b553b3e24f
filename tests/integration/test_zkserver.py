"""Real ZooKeeper servers from Debian's package: start, serve, survive a leader kill, clean up."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import psutil
import pytest

from hacluster.zkserver import ZkServerError, ZkServerSpec, ZooKeeperEnsemble, host_port

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

# ensembles this file starts itself: base +50..+72, +80..+82, +90..+92, +95..+97
OWN_PORT = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800")) + 50


def _java_pids_under(base_dir: Path) -> list[int]:
    """Live java processes whose command line mentions base_dir (ours, whatever their pid)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "java" and any(str(base_dir) in arg for arg in cmdline):
            found.append(proc.pid)
    return found


def test_single_server_serves_create_and_get(zk_single, zk_client_factory):
    assert zk_single.leader_id() == 1
    assert zk_single.modes() == {1: "standalone"}
    zk = zk_client_factory(zk_single)
    path = f"/test_zkserver/{uuid.uuid4().hex}"
    zk.create(path, b"hello", makepath=True)
    data, stat = zk.get(path)
    assert data == b"hello" and stat.version == 0
    assert (zk_single.server_dir(1) / "zookeeper.log").stat().st_size > 0  # logs go to DIR


def test_server_purges_old_snapshots_hourly(zk_single):
    """The real server took our zoo.cfg's autopurge settings and scheduled its purge task
    (with ZooKeeper's default it logs "Purge task is not scheduled" and keeps every snapshot)."""
    log = zk_single.log_path(1).read_text(errors="replace")
    assert "autopurge.snapRetainCount set to 3" in log
    assert "autopurge.purgeInterval set to 1" in log
    assert "Purge task started" in log and "Purge task is not scheduled" not in log


def test_leader_kill_elects_new_leader_and_keeps_data(zk_ensemble, zk_client_factory):
    modes = zk_ensemble.modes()
    assert sorted(modes.values()) == ["follower", "follower", "leader"]
    old = zk_ensemble.leader_id()
    assert old is not None

    zk = zk_client_factory(zk_ensemble)
    path = f"/test_zkserver/{uuid.uuid4().hex}"
    zk.create(path, b"survives", makepath=True)

    t0 = time.monotonic()
    zk_ensemble.stop_server(old)  # SIGKILL: a crash, not a handover
    new = None
    while time.monotonic() - t0 < 30 and new is None:
        new = zk_ensemble.leader_id()
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    print(f"re-election after leader kill: {elapsed:.2f}s (zk{old} -> zk{new})")
    assert new is not None and new != old
    assert old not in zk_ensemble.running_ids()

    # the old session reconnects to a survivor; a fresh client sees the data too
    assert zk.get(path)[0] == b"survives"
    assert zk_client_factory(zk_ensemble).get(path)[0] == b"survives"
    zk.set(path, b"written after failover")

    # the old leader rejoins as follower and catches up with the write it missed
    zk_ensemble.start_server(old)
    zk_ensemble.wait_serving(60)
    assert zk_ensemble.modes()[old] == "follower"
    spec = next(s for s in zk_ensemble.servers if s.id == old)
    direct = zk_client_factory(host_port(spec.address, spec.client_port))
    direct.sync(path)
    assert direct.get(path)[0] == b"written after failover"


def test_stop_leaves_no_java_process(tmp_path):
    ens = ZooKeeperEnsemble.local(tmp_path / "zk", n=3, base_port=OWN_PORT)
    t0 = time.monotonic()
    ens.start(timeout=60)
    print(f"3-server ensemble serving after {time.monotonic() - t0:.2f}s")
    pids = [ens._procs[sid].pid for sid in ens.running_ids()]
    assert len(pids) == 3 and sorted(_java_pids_under(tmp_path)) == sorted(pids)
    assert all(psutil.Process(pid).name() == "java" for pid in pids)

    ens.stop()
    ens.stop()  # idempotent
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
    assert _java_pids_under(tmp_path) == []
    assert list((tmp_path / "zk").glob("zk*/zk.pid")) == []
    assert ens.leader_id() is None


def test_cleanup_stale_kills_servers_of_a_crashed_run(tmp_path):
    crashed = ZooKeeperEnsemble.local(tmp_path / "zk", n=1, base_port=OWN_PORT + 30)
    try:
        crashed.start(timeout=60)
        pid = crashed._procs[1].pid
        # a new run on the same ports refuses to start next to the leftover ...
        with pytest.raises(ZkServerError, match="already in use"):
            ZooKeeperEnsemble.local(tmp_path / "other", n=1, base_port=OWN_PORT + 30).start_server(1)
        # ... and cleanup_stale (which start() calls first) kills it from the pid file alone
        assert ZooKeeperEnsemble.cleanup_stale(tmp_path / "zk") == [pid]
        assert _java_pids_under(tmp_path) == []
        assert ZooKeeperEnsemble.cleanup_stale(tmp_path / "zk") == []
    finally:
        crashed.stop()


def test_wrap_prefixes_server_and_probe(tmp_path):
    """The lab runs servers and 4lw probes under `ip netns exec NS`; `env` stands in for it."""
    spec = ZkServerSpec(7, "127.0.0.1", OWN_PORT + 40, OWN_PORT + 41, OWN_PORT + 42)
    seen: list[int] = []

    def wrap(s: ZkServerSpec) -> list[str]:
        seen.append(s.id)
        return ["env", "HACLUSTER_WRAPPED=1"]

    with ZooKeeperEnsemble(tmp_path / "zk", [spec], wrap=wrap) as ens:
        assert ens.leader_id() == 7
        assert ens.hosts == f"127.0.0.1:{OWN_PORT + 40}"
        environ = psutil.Process(ens._procs[7].pid).environ()
        assert environ.get("HACLUSTER_WRAPPED") == "1"
        assert len(seen) >= 2  # the server start and at least one probe went through wrap
    assert _java_pids_under(tmp_path) == []


def test_dead_server_is_reported_with_its_log(tmp_path):
    """A server that cannot start fails fast with its log's error, not after the timeout."""
    spec = ZkServerSpec(1, "127.0.0.1", OWN_PORT + 45, OWN_PORT + 46, OWN_PORT + 47)
    # wrap skips the up-front port check, so ZooKeeper itself meets the occupied client port
    ens = ZooKeeperEnsemble(tmp_path / "zk", [spec], wrap=lambda s: ["env"])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", spec.client_port))
        squatter.listen()
        t0 = time.monotonic()
        try:
            with pytest.raises(ZkServerError, match=r"zk1 exited with code 1; .*zookeeper.log: .*BindException"):
                ens.start(timeout=60)
        finally:
            ens.stop()
    assert time.monotonic() - t0 < 30
    assert _java_pids_under(tmp_path) == []
