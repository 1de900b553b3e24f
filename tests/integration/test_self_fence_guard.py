"""Self-fencing of a whole role by its guard process, on real parts: a VIP on a veth, a real
Postfix whose queue lives on a shared spool (ext4 on a loop device, mounted by SharedSpool), two
busy processes loading the 2 cores. The agent (this test) stops extending the deadline, as a frozen
agent would: by `stop_timeout_s` (0.2 s, default profile) after the deadline the VIP is gone, no
process of the Postfix instance is left and the spool is detached (docs/safety.md) -- by the
guard's own clock (it runs SCHED_FIFO); this test's observations, spawning `ip` on a loaded host,
confirm each is gone and that none went before the deadline."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from hacluster.clock import now
from hacluster.resources.base import OCF
from hacluster.resources.mta import MtaResource
from hacluster.resources.role_guard import RoleGuard, collect_steps
from hacluster.resources.spool import SharedSpool
from hacluster.resources.vip_guard import GuardClient, Target, _proc_table, tree_of
from hacluster.spool.mount import is_mounted
from hacluster.timing import PROFILES

from .postfix_conf import MASTER_CF, main_cf

pytestmark = pytest.mark.timeout(120)
VIP = "198.51.100.99"


def sh(*cmd: str) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{cmd}: {p.stderr}"
    return p.stdout.strip()


def has_vip(ifname: str) -> bool:
    return f"{VIP}/24" in subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", ifname],
                                          capture_output=True, text=True, timeout=10).stdout


@pytest.fixture
def world() -> Iterator[dict]:
    """veth with the VIP, a loop-device spool mounted by SharedSpool, Postfix queued on it."""
    base = Path(tempfile.mkdtemp(prefix="hc-sfg-", dir="/var/tmp"))
    base.chmod(0o755)
    ifname, peer = f"sfg{os.getpid() % 100000}", f"sfp{os.getpid() % 100000}"
    dev = None
    mta = None
    burners: list[subprocess.Popen[bytes]] = []
    try:
        sh("ip", "link", "add", ifname, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", ifname, "up")
        sh("ip", "addr", "add", f"{VIP}/24", "dev", ifname)
        img = base / "spool.img"
        with open(img, "wb") as f:
            f.truncate(32 << 20)
        sh("mkfs.ext4", "-q", "-F", str(img))
        dev = sh("losetup", "-f", "--show", str(img))
        spool = SharedSpool("spool", dev, base / "spool", "store1", subdirs=("postfix-queue",))
        spool.set_fencing_token(1)
        assert spool.start() == OCF.SUCCESS
        for sub in ("etc", "data"):
            (base / sub).mkdir()
        shutil.chown(base / "data", "postfix")
        port = 20000 + os.getpid() % 20000
        (base / "etc" / "main.cf").write_text(main_cf(base, "sfg.example").replace(
            f"queue_directory = {base}/queue", f"queue_directory = {base}/spool/postfix-queue"))
        (base / "etc" / "master.cf").write_text(MASTER_CF.format(port=port))
        mta = MtaResource("postfix", base / "etc", warm_address="")
        assert mta.start() == OCF.SUCCESS, (base / "maillog").read_text() if (base / "maillog").exists() else ""
        # keep the queue busy: a few messages that defer (the relayhost is nowhere)
        for i in range(5):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                f = s.makefile("rwb")
                f.readline()
                for line in (b"HELO t", b"MAIL FROM:<a@example>", b"RCPT TO:<b@remote.example>", b"DATA"):
                    f.write(line + b"\r\n")
                    f.flush()
                    f.readline()
                f.write(b"Subject: %d\r\n\r\nbody\r\n.\r\nQUIT\r\n" % i)
                f.flush()
                f.readline()
        # load: both cores busy for the whole measurement (bounded: killed in finally)
        burners = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
        yield {"base": base, "ifname": ifname, "spool": spool, "mta": mta}
    finally:
        for b in burners:
            b.kill()
            b.wait()
        if mta is not None:
            mta.stop()
        for _ in range(3):
            if is_mounted(base / "spool"):
                subprocess.run(["umount", "-l", str(base / "spool")], capture_output=True, timeout=30)
        if dev:
            subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", ifname], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def test_guard_removes_vip_kills_mta_and_detaches_spool_within_stop_timeout(world: dict) -> None:
    base, ifname, spool, mta = world["base"], world["ifname"], world["spool"], world["mta"]
    master = mta.master_pid()
    assert master is not None
    tree = tree_of(master, _proc_table())
    assert len(tree) >= 3, tree  # master, qmgr, pickup at least
    targets, steps = collect_steps([spool, mta])
    assert [k for k, _ in steps] == ["umount", "kill-pidfile"]  # the guard orders them itself
    targets = [Target(VIP, 24, ifname)]
    log = base / "guard.log"
    stop_timeout = PROFILES["default"].stop_timeout_s
    with open(log, "w") as errf:
        guard = GuardClient.spawn(targets, now() + 60, "store-guard", steps, stderr=errf.fileno())
    try:
        end = now() + 30
        while not guard.ready():
            assert now() < end, "guard never ready"
            time.sleep(0.01)
        assert has_vip(ifname) and is_mounted(base / "spool")
        until = now() + 0.3
        assert guard.extend(until)  # as a renewal does; then the agent "freezes": no further extension
        gone: dict[str, float] = {}
        while len(gone) < 3 and now() < until + 3:
            # each time is taken after its check saw the thing gone: an upper bound on when it went
            if "vip" not in gone and not has_vip(ifname):
                gone["vip"] = now()
            if "mta" not in gone and not any(_alive(p) for p in tree):
                gone["mta"] = now()
            if "spool" not in gone and not is_mounted(base / "spool"):
                gone["spool"] = now()
            time.sleep(0.002)
        guard.proc.wait(5)  # its log line comes after the last step
        text = log.read_text()
        assert set(gone) == {"vip", "mta", "spool"}, (gone, text)
        # nothing went before the deadline; everything by the deadline + stop_timeout_s
        assert all(t >= until for t in gone.values()), (gone, until)
        late = {k: round(t - until, 4) for k, t in gone.items()}
        print("seen gone after the deadline:", late, "|", text.strip())
        # the guard's own clock: woke this late, took this long for all three steps
        woke = float(re.search(r"expired \(([0-9.]+)s after the deadline\)", text)[1])
        took = float(re.search(r"done ([0-9.]+)s after it began", text)[1])
        assert woke + took <= stop_timeout, (woke, took, text)
        # what this (unprivileged-priority, loaded) observer saw is a loose upper bound only
        assert max(late.values()) <= 2.0, (late, text)
        assert "kill-pidfile" in text and "umount" in text and "expired" in text, text
        assert text.index(VIP) < text.index("kill-pidfile") < text.index("umount"), text
        assert mta.master_pid() is None
    finally:
        guard.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_role_guard_released_after_a_clean_stop_fences_nothing(world: dict) -> None:
    """The agent stopped everything itself: the release lets the guard exit without acting."""
    base, ifname, spool, mta = world["base"], world["ifname"], world["spool"], world["mta"]
    g = RoleGuard("store", [Target(VIP, 24, ifname)], collect_steps([spool, mta])[1])
    g.lease_extended(now() + 60)
    assert g.start() == OCF.SUCCESS and g.monitor() == OCF.SUCCESS
    client = g.client
    assert client is not None
    end = now() + 30
    while not client.ready():
        assert now() < end
        time.sleep(0.01)
    proc = client.proc
    assert g.stop() == OCF.SUCCESS and g.monitor() == OCF.NOT_RUNNING
    assert proc.wait(10) == 0  # gone: it can never act on this lease again
    assert has_vip(ifname) and is_mounted(base / "spool") and mta.master_pid() is not None
