"""Our own resources shipped as OCF agents (agents/ocf/*), driven through our OCF runner exactly as
Pacemaker would drive them: a shared spool on a bind mount, a mirrored spool with its replicator
clone on two directories over 127.0.0.1, and a VIP in a network namespace of our own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from hacluster.resources.base import OCF
from hacluster.resources.ocf import OcfResource
from hacluster.spool.marker import read_marker
from hacluster.spool.maildir import ensure_maildir
from hacluster.spool.mount import is_mounted

pytestmark = pytest.mark.timeout(120)

AGENTS = Path(__file__).resolve().parents[2] / "agents" / "ocf"
NETNS = "hcs-ocfvip"


@pytest.fixture(autouse=True)
def _our_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HACLUSTER_PYTHON", sys.executable)


def agent(rtype: str, instance: str, params: dict, node: str = "store1", timeout_s: float = 30) -> OcfResource:
    return OcfResource(instance, str(AGENTS / f"hacluster-{rtype}"), params, timeout_s=timeout_s, node=node)


def test_shared_spool_agent_fences_with_the_runner_token(tmp_path: Path) -> None:
    share, mp1, mp2 = tmp_path / "export", tmp_path / "node1", tmp_path / "node2"
    share.mkdir()
    a = agent("spool", "spool", {"mode": "shared", "device": str(share), "path": str(mp1),
                                 "subdirs": "mail postfix-queue", "state_dir": str(tmp_path / "st1")})
    b = agent("spool", "spool", {"mode": "shared", "device": str(share), "path": str(mp2),
                                 "state_dir": str(tmp_path / "st2")}, node="store2")
    try:
        assert a.monitor() == OCF.NOT_RUNNING
        a.set_fencing_token(7)  # our runner passes it as HACLUSTER_TOKEN
        assert a.start() == OCF.SUCCESS, a.last.stderr
        assert is_mounted(mp1) and (mp1 / "postfix-queue").is_dir()
        assert read_marker(share).token == 7 and read_marker(share).node == "store1"
        assert a.monitor() == OCF.SUCCESS
        b.set_fencing_token(6)
        assert b.start() == OCF.ERR_GENERIC and not is_mounted(mp2)
        b.set_fencing_token(8)
        assert b.start() == OCF.SUCCESS
        assert a.monitor() == OCF.ERR_GENERIC  # a later call still knows its token (state_dir) and is stale
        assert a.stop() == OCF.SUCCESS and b.stop() == OCF.SUCCESS
        assert not is_mounted(mp1) and not is_mounted(mp2)
        assert b.monitor() == OCF.NOT_RUNNING
    finally:
        for m in (mp1, mp2):
            if is_mounted(m):
                subprocess.run(["umount", "-l", str(m)], timeout=30)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mirrored_spool_agent_with_replicator_clone(tmp_path: Path) -> None:
    a, b = tmp_path / "store1", tmp_path / "store2"
    ensure_maildir(a / "example.org" / "alice")
    port = _free_port()
    rep = agent("replicator", "spool-rx", {"path": str(b), "listen": f"127.0.0.1:{port}",
                                           "state_dir": str(tmp_path / "rx")}, node="store2")
    spool = agent("spool", "spool", {"mode": "mirrored", "path": str(a), "peer": f"127.0.0.1:{port}",
                                     "scan_interval_s": "0.5", "state_dir": str(tmp_path / "tx")})
    try:
        assert rep.start() == OCF.SUCCESS, rep.last.stderr
        assert rep.monitor() == OCF.SUCCESS
        spool.set_fencing_token(3)
        assert spool.start() == OCF.SUCCESS, spool.last.stderr
        assert spool.monitor() == OCF.SUCCESS
        md = a / "example.org" / "alice"
        for i in range(20):
            (md / "tmp" / f"{i}.M{i}.store1").write_bytes(b"mail %d" % i)
            os.rename(md / "tmp" / f"{i}.M{i}.store1", md / "new" / f"{i}.M{i}.store1")
        target = b / "example.org" / "alice" / "new"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not target.is_dir() or len(os.listdir(target)) < 20):
            time.sleep(0.05)
        assert sorted(os.listdir(target)) == sorted(os.listdir(md / "new"))
        assert read_marker(b).token == 3
        assert spool.stop() == OCF.SUCCESS and spool.monitor() == OCF.NOT_RUNNING
        assert (tmp_path / "tx" / "promotion-3.json").exists()
    finally:
        spool.stop()
        rep.stop()
    assert rep.monitor() == OCF.NOT_RUNNING


@pytest.fixture
def netns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        for cmd in (["link", "add", "v0", "type", "veth", "peer", "name", "v1"], ["link", "set", "v0", "up"],
                    ["link", "set", "v1", "up"], ["link", "set", "lo", "up"]):
            subprocess.run(["ip", "-n", NETNS, *cmd], check=True)
        yield NETNS
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def _vip(ns: str, action: str, state: Path) -> int:
    env = {**os.environ, "OCF_RESKEY_ip": "192.0.2.10", "OCF_RESKEY_cidr_netmask": "24", "OCF_RESKEY_nic": "v0",
           "OCF_RESKEY_state_dir": str(state), "OCF_RESOURCE_INSTANCE": "vip", "HA_NODENAME": "store1"}
    return subprocess.run(["ip", "netns", "exec", ns, str(AGENTS / "hacluster-vip"), action], env=env,
                          capture_output=True, timeout=60).returncode


def _has_vip(ns: str) -> bool:
    out = subprocess.run(["ip", "-n", ns, "-o", "addr", "show", "dev", "v0"], capture_output=True, text=True).stdout
    return "192.0.2.10/24" in out


def test_vip_agent_in_a_namespace(netns: str, tmp_path: Path) -> None:
    assert _vip(netns, "monitor", tmp_path) == OCF.NOT_RUNNING
    assert _vip(netns, "start", tmp_path) == OCF.SUCCESS and _has_vip(netns)
    assert _vip(netns, "monitor", tmp_path) == OCF.SUCCESS
    assert _vip(netns, "stop", tmp_path) == OCF.SUCCESS and not _has_vip(netns)
    assert _vip(netns, "monitor", tmp_path) == OCF.NOT_RUNNING
