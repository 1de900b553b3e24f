"""RAID check on the real samples, spool check and Maildir tmp/ scan on a local directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hacluster.health.mdstat import parse_mdstat
from hacluster.health.mta import RestartBudget, read_pid
from hacluster.health.policy import evaluate
from hacluster.health.raid import RaidCheck
from hacluster.health.spool import SpoolCheck, scan_stale_tmp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mdstat"


@pytest.mark.parametrize(
    "fixture,arrays,severity,failed,degraded,missing",
    [
        ("raid1-degraded-faulty.mdstat", None, "warn", [], ["md1"], []),
        ("raid1-degraded-faulty.mdstat", ("md0",), "ok", [], [], []),
        ("raid1-degraded-faulty.mdstat", ("md0", "md5"), "crit", [], [], ["md5"]),
        ("raid1-recovering.mdstat", None, "warn", [], ["md0"], []),
        ("raid5-degraded.mdstat", None, "warn", [], ["md2"], []),
        ("procfs-many-arrays.mdstat", None, "crit", ["md4", "md219"], ["md6", "md8", "md7", "md9", "md11", "md42"], []),
        ("procfs-many-arrays.mdstat", ("md201", "md127"), "ok", [], [], []),  # checking is fine
    ],
)
def test_raid_check_on_samples(fixture, arrays, severity, failed, degraded, missing) -> None:
    res = RaidCheck(str(FIXTURES / fixture), arrays)(1.0)
    assert (res.severity, res.data["failed"], res.data["degraded"], res.data["missing"]) == (severity, failed, degraded, missing)
    want = parse_mdstat((FIXTURES / fixture).read_text())
    assert len(res.data["arrays"]) == (len(want) if arrays is None else len(arrays) - len(missing))


def test_raid_check_verdicts() -> None:
    degraded = RaidCheck(str(FIXTURES / "raid5-degraded.mdstat"))(1.0)
    assert degraded.detail == "md2 degraded"
    v = evaluate({"raid": degraded})
    assert (v.healthy, v.demote, v.score_penalty) == (True, False, 50)  # alert, no failover
    failed = RaidCheck(str(FIXTURES / "procfs-many-arrays.mdstat"))(1.0)
    assert evaluate({"raid": failed}).demote


def test_raid_check_absent_or_broken(tmp_path: Path) -> None:
    absent = RaidCheck(str(tmp_path / "mdstat"))(1.0)
    assert (absent.severity, absent.detail) == ("ok", f"no md arrays ({tmp_path / 'mdstat'} absent)")
    assert RaidCheck(str(tmp_path / "mdstat"), ("md0",))(1.0).severity == "crit"
    bad = tmp_path / "bad"
    bad.write_text("md0 : exploded\n")
    res = RaidCheck(str(bad))(1.0)
    assert (res.ok, res.severity) == (False, "warn") and f"{bad}:1:" in res.detail
    assert not evaluate({"raid": res}).demote


def make_maildir(root: Path, *parts: str) -> Path:
    md = root.joinpath(*parts)
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    return md


def test_stale_tmp_scan(tmp_path: Path) -> None:
    now = time.time()
    a = make_maildir(tmp_path, "alice", "Maildir")
    b = make_maildir(tmp_path, "example.org", "bob", "Maildir", ".Sent")
    deep = make_maildir(tmp_path, "a", "b", "c", "d", "e", "Maildir")  # below max_depth
    files = {a / "tmp" / "old1": 37, a / "tmp" / "fresh": 35, b / "tmp" / "old2": 100, deep / "tmp" / "old3": 50,
             a / "new" / "old-but-delivered": 100}
    for path, hours in files.items():
        path.write_text("x")
        os.utime(path, (now - hours * 3600, now - hours * 3600))
    scan = scan_stale_tmp(str(tmp_path), now - 36 * 3600, max_depth=4, max_entries=10_000, deadline=time.monotonic() + 5)
    assert (scan.stale, scan.maildirs, scan.truncated) == (2, 2, False)
    assert sorted(scan.examples) == sorted([str(a / "tmp" / "old1"), str(b / "tmp" / "old2")])
    capped = scan_stale_tmp(str(tmp_path), now - 36 * 3600, max_depth=4, max_entries=3, deadline=time.monotonic() + 5)
    assert capped.truncated


def test_spool_check_local_dir(tmp_path: Path) -> None:
    ok = SpoolCheck(str(tmp_path), warn_free_pct=0, warn_free_inodes_pct=0)(2.0)
    assert (ok.ok, ok.severity, ok.data["writable"], ok.data["read_only"]) == (True, "ok", True, False)
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    full = SpoolCheck(str(tmp_path), warn_free_pct=100.1)(2.0)
    assert (full.severity, full.data["nearly_full"]) == ("warn", True)
    md = make_maildir(tmp_path, "u", "Maildir")
    (md / "tmp" / "crashed").write_text("x")
    os.utime(md / "tmp" / "crashed", (time.time() - 40 * 3600,) * 2)
    stale = SpoolCheck(str(tmp_path), warn_free_pct=0, warn_free_inodes_pct=0)(2.0)
    assert (stale.severity, stale.data["stale_tmp_files"]) == ("warn", 1)
    assert stale.detail == f"{tmp_path}: 1 Maildir tmp/ files older than 36 h"
    missing = SpoolCheck(str(tmp_path / "gone"))(1.0)
    assert (missing.severity, missing.data["writable"]) == ("crit", False)
    assert evaluate({"spool": missing}).demote


def test_restart_budget_window() -> None:
    b = RestartBudget(max_restarts=2, window_s=10)
    b.note_attempt(0)
    assert not b.exhausted(1)
    b.note_attempt(5)
    assert b.exhausted(6) and b.attempts(6) == 2
    assert not b.exhausted(10.5)  # the first attempt left the window


def test_read_pid(tmp_path: Path) -> None:
    f = tmp_path / "master.pid"
    f.write_text("                            9170\n")
    assert read_pid(f) == 9170
    f.write_text("garbage")
    assert read_pid(f) is None
    assert read_pid(tmp_path / "none") is None
