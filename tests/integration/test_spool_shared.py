"""Shared spool on real mounts: one ext4 filesystem on a loop device, mounted at two mount points
that stand for two store nodes (same kernel, so both see the same files at once -- exactly the
dangerous case the owner marker must catch), plus a bind-mounted directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from hacluster.resources.base import OCF
from hacluster.resources.spool import SharedSpool
from hacluster.spool.marker import read_marker
from hacluster.spool.mount import is_mounted

pytestmark = pytest.mark.timeout(120)


def sh(*cmd: str) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{cmd}: {p.stderr}"
    return p.stdout.strip()


@pytest.fixture
def loopfs() -> Iterator[tuple[str, Path]]:
    base = Path(tempfile.mkdtemp(prefix="hcs-spool-", dir="/var/tmp"))
    img = base / "spool.img"
    dev = None
    try:
        with open(img, "wb") as f:
            f.truncate(64 << 20)
        sh("mkfs.ext4", "-q", "-F", str(img))
        dev = sh("losetup", "-f", "--show", str(img))
        yield dev, base
    finally:
        for m in sorted(base.glob("node*"), reverse=True):
            for _ in range(3):
                if is_mounted(m):
                    subprocess.run(["umount", "-l", str(m)], capture_output=True, timeout=30)
        if dev:
            subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def deliver(root: Path, name: str, data: bytes) -> None:
    md = root / "mail" / "example.org" / "alice"
    for sub in ("tmp", "new", "cur"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    (md / "tmp" / name).write_bytes(data)
    os.rename(md / "tmp" / name, md / "new" / name)


def test_stale_holder_is_refused_and_detected(loopfs: tuple[str, Path]) -> None:
    dev, base = loopfs
    a = SharedSpool("spool", dev, base / "node1", "store1", subdirs=("mail", "postfix-queue"))
    b = SharedSpool("spool", dev, base / "node2", "store2", subdirs=("mail", "postfix-queue"))
    assert a.monitor() == OCF.NOT_RUNNING
    a.set_fencing_token(1)
    assert a.start() == OCF.SUCCESS and a.monitor() == OCF.SUCCESS
    assert a.start() == OCF.SUCCESS  # idempotent
    assert (base / "node1" / "postfix-queue").is_dir()
    deliver(base / "node1", "1700000000.M1.store1", b"accepted by store1")
    # store1 freezes with the spool mounted; store2 takes over with the next term
    b.set_fencing_token(2)
    assert b.start() == OCF.SUCCESS
    assert (base / "node2/mail/example.org/alice/new/1700000000.M1.store1").read_bytes() == b"accepted by store1"
    assert read_marker(base / "node2").token == 2
    # store1 wakes up: its monitor sees the newer owner, a fresh start with its old token is refused
    assert a.monitor() == OCF.ERR_GENERIC
    stale = SharedSpool("spool", dev, base / "node1", "store1")
    stale.set_fencing_token(1)
    assert stale.start() == OCF.ERR_GENERIC
    assert not is_mounted(base / "node1")  # a refused start lets go of the spool
    assert a.stop() == OCF.SUCCESS  # already unmounted: stop of a stopped resource
    assert b.monitor() == OCF.SUCCESS
    assert b.stop() == OCF.SUCCESS and b.monitor() == OCF.NOT_RUNNING
    assert not is_mounted(base / "node2")
    # after the hand-over the old holder cannot come back with its old term either
    assert stale.start() == OCF.ERR_GENERIC and not is_mounted(base / "node1")
    stale.set_fencing_token(3)  # ...but can with the next one
    assert stale.start() == OCF.SUCCESS and read_marker(base / "node1").node == "store1"
    assert stale.stop() == OCF.SUCCESS


def test_busy_spool_is_unmounted_lazily_after_a_bounded_wait(loopfs: tuple[str, Path]) -> None:
    dev, base = loopfs
    s = SharedSpool("spool", dev, base / "node1", "store1", umount_wait_s=0.5)
    s.set_fencing_token(1)
    assert s.start() == OCF.SUCCESS
    f = open(base / "node1" / "busy", "w+")  # a process that still has a file open on the spool
    try:
        t0 = time.monotonic()
        assert s.stop() == OCF.SUCCESS
        took = time.monotonic() - t0
        assert 0.5 <= took < 5, took
        assert not is_mounted(base / "node1")
        f.write("still writable through the open fd")  # lazily detached: the fd keeps working
        f.flush()
    finally:
        f.close()


def test_bind_mounted_directory(tmp_path: Path) -> None:
    share = tmp_path / "export"
    share.mkdir()
    mp1, mp2 = tmp_path / "node1", tmp_path / "node2"
    a = SharedSpool("spool", str(share), mp1, "store1")
    b = SharedSpool("spool", str(share), mp2, "store2")
    try:
        a.set_fencing_token(4)
        assert a.start() == OCF.SUCCESS and is_mounted(mp1)
        assert read_marker(share).token == 4
        b.set_fencing_token(3)
        assert b.start() == OCF.ERR_GENERIC and not is_mounted(mp2)
        assert a.stop() == OCF.SUCCESS and not is_mounted(mp1)
        missing = SharedSpool("spool", str(tmp_path / "nope"), mp1, "store1")
        assert missing.start() == OCF.ERR_CONFIGURED
    finally:
        for m in (mp1, mp2):
            if is_mounted(m):
                subprocess.run(["umount", "-l", str(m)], timeout=30)
