"""`lab up` / `lab down` leave nothing behind: no namespaces, no processes, no files, and the
system's Postfix main.cf byte-for-byte as before -- also after a crash in the middle of `up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hacluster_lab.lab import netns
from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.postfix import SYSTEM_MAIN_CF
from hacluster_lab.lab.state import LabOptions

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

PREFIX = "hcl-"
STATE = Path("/run/hacluster-lab-test-life")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hacluster", *args], capture_output=True, text=True, timeout=timeout)


def _lab_pids() -> set[tuple[int, float]]:
    """(pid, start time) of every process in one of our namespaces."""
    out = set()
    for ns in netns.list_ns(PREFIX):
        for pid in netns.pids_in(ns):
            try:
                out.add((pid, psutil.Process(pid).create_time()))
            except psutil.Error:
                pass
    return out


def _alive(pids: set[tuple[int, float]]) -> list[int]:
    alive = []
    for pid, ctime in pids:
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - ctime) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


def _assert_clean(main_cf_before: bytes | None, pids: set[tuple[int, float]]) -> None:
    assert netns.list_ns(PREFIX) == []
    assert _alive(pids) == []
    assert not STATE.exists()
    assert not any(Path("/etc/netns").glob(f"{PREFIX}*")) if Path("/etc/netns").exists() else True
    assert _main_cf_bytes() == main_cf_before


def _main_cf_bytes() -> bytes | None:
    """The system main.cf as it is, None when absent (Debian's "No configuration")."""
    return SYSTEM_MAIN_CF.read_bytes() if SYSTEM_MAIN_CF.exists() else None


@pytest.fixture
def main_cf_before() -> Iterator[bytes | None]:
    before = _main_cf_bytes()
    try:
        yield before
    finally:
        Lab.teardown(STATE, PREFIX)


def test_up_status_down_leaves_nothing(main_cf_before: bytes | None) -> None:
    lab = Lab(None, STATE, PREFIX, LabOptions(agents=False))
    report = lab.up()
    print(f"lab up {report.seconds:.2f}s phases {report.phases}")
    assert report.seconds < 60
    assert report.zk_leader in (1, 2, 3)
    assert sorted(report.namespaces) == netns.list_ns(PREFIX)
    assert b"alternate_config_directories" in SYSTEM_MAIN_CF.read_bytes()
    st = lab.status()
    assert st["up"] is True
    for name in ("relay1", "relay2", "fallback", "client"):
        assert st["hosts"][name]["services"]["postfix"] is True, name
    assert st["hosts"]["dns"]["services"]["dnsmasq"] is True
    assert all(st["hosts"][f"zk{i}"]["services"]["zookeeper"] for i in (1, 2, 3))
    assert st["roles"] == {"store": []}
    pids = _lab_pids()
    assert len(pids) >= 15  # 4 Postfix instances (3+ processes each), dnsmasq, 3 ZooKeepers
    t = time.monotonic()
    down = lab.down()
    print(f"lab down {time.monotonic() - t:.2f}s, killed {down.processes_killed}")
    assert down.maincf_restored and down.state_dir_removed and len(down.namespaces) == 11
    _assert_clean(main_cf_before, pids)
    again = Lab.teardown(STATE, PREFIX)  # idempotent
    assert again.namespaces == [] and again.processes_killed == 0 and not again.maincf_restored


def test_down_after_up_was_killed_midway(main_cf_before: bytes | None) -> None:
    """SIGKILL `hacluster lab up` once Postfix instances run: `lab down` must still find all."""
    proc = subprocess.Popen([sys.executable, "-m", "hacluster", "lab", "up", "--no-agents", "--state-dir", str(STATE),
                             "--prefix", PREFIX], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(STATE.glob("nodes/*/postfix-queue/pid/master.pid")):
                break
            assert proc.poll() is None, "lab up ended before we could crash it"
            time.sleep(0.02)
        else:
            pytest.fail("lab up never started a Postfix instance")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    pids = _lab_pids()
    assert pids, "the crashed run left processes behind (that is what down must clean)"
    assert netns.list_ns(PREFIX)
    res = _cli("lab", "down", "--state-dir", str(STATE), "--prefix", PREFIX)
    assert res.returncode == 0, res.stderr
    _assert_clean(main_cf_before, pids)


def test_down_with_state_dir_lost(main_cf_before: bytes | None) -> None:
    """The state dir vanished (wiped /run): namespaces by prefix, main.cf block by its markers."""
    res = _cli("lab", "up", "--no-agents", "--state-dir", str(STATE), "--prefix", PREFIX)
    assert res.returncode == 0, res.stderr
    pids = _lab_pids()
    subprocess.run(["rm", "-rf", str(STATE)], check=True)
    res = _cli("lab", "down", "--state-dir", str(STATE), "--prefix", PREFIX)
    assert res.returncode == 0, res.stderr
    _assert_clean(main_cf_before, pids)


def test_up_refuses_a_running_lab(main_cf_before: bytes | None) -> None:
    res = _cli("lab", "up", "--no-agents", "--state-dir", str(STATE), "--prefix", PREFIX)
    assert res.returncode == 0, res.stderr
    again = _cli("lab", "up", "--no-agents", "--state-dir", str(STATE), "--prefix", PREFIX)
    assert again.returncode == 1 and "already up" in again.stderr
    assert "Traceback" not in again.stderr
    status = _cli("lab", "status", "--state-dir", str(STATE))
    assert status.returncode == 0 and "role store: VIP held by nobody" in status.stdout
