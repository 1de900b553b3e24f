"""Faults do what they say, in real namespaces, and each lands in the fault log with both clocks:
isolate/partition/heal (nft), kill-mta, freeze/thaw/kill-agent on a real agent, power-off/on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from hacluster_lab.lab import netns
from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.netns import LabError
from hacluster.resources.base import OCF

from .running import running_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

PREFIX = "hcl-"
STATE = Path("/run/hacluster-lab-test-faults")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(STATE, PREFIX, agents=False)


def _ping(lab: Lab, src: str, dst_ip: str) -> bool:
    return lab.exec(src, ["ping", "-c1", "-W1", dst_ip], capture_output=True).returncode == 0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hacluster", "lab", *args, "--state-dir", str(STATE)],
                          capture_output=True, text=True, timeout=60)


def test_partition_isolate_heal(lab: Lab) -> None:
    relay2, store1, store2 = (lab.plan.host(n).address for n in ("relay2", "store1", "store2"))
    assert _ping(lab, "relay1", relay2) and _ping(lab, "relay1", store1)
    res = _cli("fault", "partition", "relay1", "relay2,store1")
    assert res.returncode == 0, res.stderr
    assert not _ping(lab, "relay1", relay2)
    assert not _ping(lab, "relay1", store1)
    assert not _ping(lab, "store1", lab.plan.host("relay1").address)  # both directions
    assert _ping(lab, "relay1", store2)  # only the named pairs
    assert _cli("fault", "fallback", "isolate").returncode == 0
    assert not _ping(lab, "fallback", "192.0.2.1")
    assert not _ping(lab, "relay2", lab.plan.host("fallback").address)
    st = lab.status()
    assert st["hosts"]["fallback"]["filters"] == ["arp hcl_isolate", "inet hcl_isolate"]
    assert st["hosts"]["relay1"]["filters"] == ["inet hcl_partition"]
    res = _cli("fault", "heal")
    assert res.returncode == 0, res.stderr
    assert _ping(lab, "relay1", relay2) and _ping(lab, "relay1", store1) and _ping(lab, "fallback", "192.0.2.1")
    assert all(not h.get("filters") for h in lab.status()["hosts"].values())
    log = [(f["fault"], f["node"], f.get("peer")) for f in lab.faults()]
    assert log[-3:] == [("partition", "relay1", "relay2,store1"), ("isolate", "fallback", None),
                        ("heal", "relay1,relay2,fallback,store1", None)]


def test_kill_mta(lab: Lab) -> None:
    mta = lab.mta("relay2")
    pid = mta.master_pid()
    assert pid is not None
    rec = lab.fault("relay2", "kill-mta")
    assert rec["detail"]["pid"] == pid
    deadline = time.monotonic() + 5
    while mta.master_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mta.master_pid() is None
    res = _cli("fault", "relay2", "kill-mta")  # nothing left to kill: a failed expectation
    assert res.returncode == 1 and "no Postfix is running on relay2" in res.stderr
    assert lab.start_mta("relay2") == 0


def test_agent_faults_need_an_agent(lab: Lab) -> None:
    with pytest.raises(LabError, match="no agent is running on relay1"):
        lab.fault("relay1", "freeze")
    res = _cli("fault", "relay1", "explode")
    assert res.returncode == 2 and "unknown fault 'explode'" in res.stderr


def _status_becomes(pid: int, *states: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if psutil.Process(pid).status() in states:
            return True
        time.sleep(0.01)
    return False


def test_freeze_thaw_kill_agent(lab: Lab) -> None:
    """On a real agent (relay2: no role, so it needs nothing but ZooKeeper)."""
    pid = lab.start_agent("relay2")
    try:
        deadline = time.monotonic() + 20
        while "agent relay2 up" not in lab.paths.agent_log("relay2").read_text():
            assert lab.agent_pid("relay2") is not None, lab.paths.agent_log("relay2").read_text()[-800:]
            assert time.monotonic() < deadline, "agent never came up"
            time.sleep(0.1)
        lab.fault("relay2", "freeze")
        assert _status_becomes(pid, psutil.STATUS_STOPPED)  # signals are delivered asynchronously
        assert lab.status()["hosts"]["relay2"]["agent_frozen"] is True
        lab.fault("relay2", "thaw")
        assert _status_becomes(pid, psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING)
        rec = json.loads(_cli("fault", "relay2", "kill-agent", "--json").stdout)
        assert rec["fault"] == "kill-agent" and rec["detail"]["pid"] == pid
        assert {"t_mono", "t_wall", "t_boot"} <= rec.keys()
        psutil.Process(pid).wait(5)
        assert lab.agent_pid("relay2") is None
    finally:
        if lab.agent_pid("relay2") is not None:
            lab.fault("relay2", "kill-agent")


def test_power_off_kills_everything_and_power_on_boots(lab: Lab) -> None:
    before = lab.exec("client", ["true"]).returncode
    assert before == 0
    # the client's Postfix forks qmgr and pickup after its master starts: on a busy machine an
    # earlier test's power-on may not have got that far yet
    deadline = time.monotonic() + 20
    while len(netns.pids_in(lab.ns("client"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    procs = [psutil.Process(p).name() for p in netns.pids_in(lab.ns("client"))]
    rec = lab.fault("client", "power-off")
    assert rec["detail"]["killed"] >= 3, procs  # the client's Postfix master, qmgr, pickup, ...
    st = lab.status()["hosts"]["client"]
    assert st["powered_off"] and st["processes"] == 0 and st["services"]["postfix"] is False
    assert not _ping(lab, "relay1", lab.plan.host("client").address)
    lab.fault("client", "power-on")
    st = lab.status()["hosts"]["client"]
    assert not st["powered_off"] and st["services"]["postfix"] is True and st["links"]["eth0"]["up"]
    assert _ping(lab, "relay1", lab.plan.host("client").address)
    assert _ping(lab, "client", "fd00:2::11")  # IPv6 (lost when the link went down) is back


def test_mta_resource_ocf_lifecycle(lab: Lab) -> None:
    """The `mta` resource on a real instance (store2's, which nothing else starts here)."""
    mta = lab.mta("store2")
    assert mta.monitor() == OCF.NOT_RUNNING
    assert mta.stop() == OCF.SUCCESS  # stop of a stopped resource succeeds (OCF)
    assert mta.reload() == OCF.NOT_RUNNING
    assert mta.start() == OCF.SUCCESS
    assert mta.start() == OCF.SUCCESS  # idempotent
    assert mta.monitor() == OCF.SUCCESS
    assert mta.reload() == OCF.SUCCESS
    pid = mta.master_pid()
    t = time.monotonic()
    assert mta.stop() == OCF.SUCCESS
    assert time.monotonic() - t < 2.0  # polls, not postfix-script's 1 s sleeps
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert mta.monitor() == OCF.NOT_RUNNING
    # after a crash (SIGKILL, stale pid file) start still works
    assert mta.start() == OCF.SUCCESS
    lab.fault("store2", "kill-mta")
    time.sleep(0.2)
    assert mta.monitor() == OCF.NOT_RUNNING
    assert mta.start() == OCF.SUCCESS
    assert mta.stop() == OCF.SUCCESS
