"""A real agent (and its real VIP guard) at the priority docs/operations.md promises, read from
/proc: every thread of the agent 10 nice levels above where it was started (relative: this suite
runs under `nice -n 19`, so 9), the guard above the agent (SCHED_FIFO, else a lower nice value),
and `HACLUSTER_RAISE_PRIORITY=0` (the unit's /etc/default/hacluster-agent) leaving it as started.
Real ZooKeeper (Debian's package); the VIP on a veth in the test's private network namespace (.ci/isolated)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hacluster.agent.priority import FLOOR
from hacluster.examples import loopback_spec
from hacluster.zkserver import ZooKeeperEnsemble
from hacluster_lab.localcluster import LocalCluster
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

VIP = "192.0.2.219/24"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


def nice_of(path: str) -> int:
    """Field 19 of /proc/PID[/task/TID]/stat: the nice value."""
    return int(Path(path, "stat").read_text().rsplit(")", 1)[1].split()[16])


def thread_nices(pid: int) -> set[int]:
    return {nice_of(f"/proc/{pid}/task/{tid}") for tid in os.listdir(f"/proc/{pid}/task")}


def guard_pids(marker: str) -> list[int]:
    """The VIP guards serving our VIP (own session, so found by command line, not by parent)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"vip_guard.py" in b" ".join(cmd) and marker.encode() in b" ".join(cmd):
                out.append(int(p))
    return out


def test_agent_runs_raised_and_its_guard_above_it(zk_single: ZooKeeperEnsemble, tmp_path: Path) -> None:
    ifname, peer = f"pri{os.getpid() % 100000}", f"prp{os.getpid() % 100000}"
    text = (loopback_spec(zk_single.hosts, n=1)
            .replace("interface: lo, addresses: [127.0.0.11/8]", f"interface: {ifname}, addresses: [192.0.2.11/24]")
            .replace("    tier: store\n", f"    tier: store\n    vip: {{address: {VIP}, interface: {ifname}}}\n", 1))
    lc = LocalCluster(zk_single.hosts, tmp_path / "agents", n=1, spec_text_=text)
    sh("ip", "link", "add", ifname, "type", "veth", "peer", "name", peer)
    start = os.getpriority(os.PRIO_PROCESS, 0)  # the agent inherits ours
    want = max(FLOOR, start - 10)
    try:
        for dev in (ifname, peer):
            sh("ip", "link", "set", dev, "up")
        sh("ip", "addr", "add", "192.0.2.11/24", "dev", ifname)
        lc.start("node1")
        pid = lc.pid("node1")
        wait_for(lambda: (lc.state_dir("node1") / "RUNNING").exists(), 30, "node1 holding store")
        guards = wait_for(lambda: guard_pids(VIP.split("/")[0]), 10, "the VIP guard")
        nices = thread_nices(pid)
        print(f"\nstarted at nice {start}: agent threads {sorted(nices)} ({len(os.listdir(f'/proc/{pid}/task'))}), "
              f"guard policy {os.sched_getscheduler(guards[0])} nice {nice_of(f'/proc/{guards[0]}')}")
        assert nices == {want}  # every thread, the ones started after the raise too
        assert f"scheduling priority: nice {start} -> {want}" in lc.log_path("node1").read_text()
        for g in guards:  # real-time, or at least a lower nice value than the agent
            assert os.sched_getscheduler(g) == os.SCHED_FIFO or nice_of(f"/proc/{g}") < want
        lc.stop_proc("node1")

        lc.start("node1", env={"HACLUSTER_RAISE_PRIORITY": "0"})
        wait_for(lambda: "scheduling priority" in lc.log_path("node1").read_text().rsplit("-> " + str(want), 1)[-1],
                 30, "the second start's priority line")
        assert thread_nices(lc.pid("node1")) == {start}
    finally:
        lc.stop_proc("node1")
        lc.print_log_tails(15)
        lc.cleanup()
        subprocess.run(["ip", "link", "del", ifname], capture_output=True, timeout=10)
