"""Spool check on a real tmpfs (root): nearly full, full, out of inodes, read-only remount, and the
full runner -> policy path. Every mount is unmounted in a finally, also on failure."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from hacluster.health.checks import Check, HealthMonitor
from hacluster.health.policy import evaluate
from hacluster.health.spool import SpoolCheck

Mount = Callable[..., Path]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    mounted: list[Path] = []

    def mount(size: str = "4m", inodes: int = 1000) -> Path:
        path = Path(tempfile.mkdtemp(prefix="hch-spool-"))
        sh("mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes},mode=0755", "hch-spool", str(path))
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)
        os.rmdir(path)


def fill(path: Path, leave_bytes: int) -> None:
    """Write a file until only about `leave_bytes` are available (f_bavail)."""
    st = os.statvfs(path)
    want = st.f_bavail * st.f_frsize - leave_bytes
    with open(path / "ballast", "wb") as fh:
        chunk = b"\0" * 65536
        while want > 0:
            n = fh.write(chunk[: min(len(chunk), want)])
            want -= n
        fh.flush()
        os.fsync(fh.fileno())


def test_healthy_tmpfs(tmpfs: Mount) -> None:
    spool = tmpfs()
    res = SpoolCheck(str(spool))(2.0)
    assert (res.ok, res.severity, res.data["writable"], res.data["read_only"]) == (True, "ok", True, False)
    assert res.data["total_bytes"] == 4 * 1024 * 1024 and res.data["total_inodes"] == 1000
    assert res.detail == f"{spool}: writable, 100.0% free"
    assert os.listdir(spool) == []  # no probe file left behind


def test_nearly_full_only_alerts(tmpfs: Mount) -> None:
    spool = tmpfs()
    fill(spool, leave_bytes=200 * 1024)  # ~5% of 4 MiB left
    res = SpoolCheck(str(spool), warn_free_pct=10)(2.0)
    assert (res.ok, res.severity, res.data["nearly_full"], res.data["writable"]) == (True, "warn", True, True)
    assert 3.0 < res.data["free_pct"] < 6.0
    v = evaluate({"spool": res})
    assert (v.healthy, v.demote, v.score_penalty) == (True, False, 20)


def test_full_spool_is_unwritable_and_demotes(tmpfs: Mount) -> None:
    spool = tmpfs()
    fill(spool, leave_bytes=0)
    res = SpoolCheck(str(spool))(2.0)
    assert (res.ok, res.severity, res.data["writable"], res.data["read_only"]) == (False, "crit", False, False)
    assert res.data["probe_error"] == "ENOSPC: No space left on device"
    assert evaluate({"spool": res}).demote
    assert sorted(os.listdir(spool)) == ["ballast"]  # the failed probe cleaned up after itself


def test_out_of_inodes_is_unwritable(tmpfs: Mount) -> None:
    spool = tmpfs(inodes=20)
    n = 0
    while n < 100:  # bounded: tmpfs has 20 inodes, the root dir takes one
        try:
            (spool / f"f{n}").touch()
        except OSError:
            break
        n += 1
    assert n < 100
    res = SpoolCheck(str(spool))(2.0)
    assert res.data["probe_error"].startswith("ENOSPC") and res.severity == "crit"
    os.unlink(spool / "f0")  # one inode free again: writable, but nearly out of inodes
    res = SpoolCheck(str(spool), warn_free_pct=0)(2.0)
    assert (res.severity, res.data["writable"], res.data["nearly_full"]) == ("warn", True, True)
    assert "inodes free" in res.detail


def test_read_only_remount_demotes(tmpfs: Mount) -> None:
    spool = tmpfs()
    (spool / "keep").write_text("mail")
    sh("mount", "-o", "remount,ro", str(spool))
    res = SpoolCheck(str(spool))(2.0)
    assert (res.ok, res.severity, res.data["read_only"], res.data["writable"]) == (False, "crit", True, False)
    assert res.detail == f"{spool}: read-only (EROFS: mounted read-only)"
    v = evaluate({"spool": res})
    assert v.demote and v.reasons[0].startswith("spool: read-only")
    sh("mount", "-o", "remount,rw", str(spool))
    assert SpoolCheck(str(spool))(2.0).severity == "ok"


def test_stale_maildir_tmp_on_tmpfs(tmpfs: Mount) -> None:
    spool = tmpfs()
    for sub in ("cur", "new", "tmp"):
        (spool / "alice" / "Maildir" / sub).mkdir(parents=True)
    old = spool / "alice" / "Maildir" / "tmp" / "1700000000.M1P2.store1"
    old.write_text("partial")
    t = time.time() - 37 * 3600
    os.utime(old, (t, t))
    res = SpoolCheck(str(spool))(2.0)
    assert (res.severity, res.data["stale_tmp_files"], res.data["stale_tmp_examples"]) == ("warn", 1, [str(old)])
    assert evaluate({"spool": res}).score_penalty == 1


def test_monitor_debounces_then_demotes(tmpfs: Mount) -> None:
    """The whole chain on a live mount: monitor thread -> rise/fall -> policy."""
    spool = tmpfs()
    mon = HealthMonitor([Check("spool", SpoolCheck(str(spool)), interval_s=0.05, timeout_s=1, rise=2, fall=3)])
    runner = mon.runners["spool"]
    with mon:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "spool" not in mon.snapshot():
            time.sleep(0.01)
        assert not evaluate(mon.snapshot()).demote
        sh("mount", "-o", "remount,ro", str(spool))
        flipped_at = None
        while time.monotonic() < deadline:
            if evaluate(mon.snapshot()).demote:
                flipped_at = time.monotonic()
                break
            time.sleep(0.01)
        assert flipped_at is not None
        assert runner.state.up is False
        sh("mount", "-o", "remount,rw", str(spool))
        while time.monotonic() < deadline and evaluate(mon.snapshot()).demote:
            time.sleep(0.01)
        assert not evaluate(mon.snapshot()).demote
