"""Health policy in the lab, with real agents, ZooKeeper and Postfix (issue 4 item 6):

* a degraded RAID sample on the holder -> alert (heartbeat reasons + penalty, /metrics, agent log)
  and NO failover;
* the holder's MTA killed -> restarted by the holder (budget 1), killed again -> budget spent ->
  the holder demotes and the peer takes over (docs/health-policy.md: mta rows);
* the holder's spool made unwritable (chattr +i: root's writes fail too) -> the holder demotes
  and the peer takes over, and mail submitted to the VIP afterwards is accepted and delivered.

One lab for the module (agents on, the default lab spec with faster store checks merged in).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.mailload import MailLoad, audit
from hacluster_lab.lab.spectext import merge_health
from hacluster_lab.lab.state import LabOptions
from hacluster.spec import default_spec_text

from .running import lab_wait

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

STATE = Path("/run/hacluster-lab-hn-health")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mdstat"
VIP = "198.51.100.20"
STORES = ("store1", "store2")

HEALTH = """
health:
  store:
    - {check: mta, scope: holder, config_dir: "{state_dir}/postfix", interval_s: 0.3, timeout_s: 3.0, rise: 1, fall: 1,
       max_restarts: 1, restart_window_s: 600}
    - {check: spool, scope: holder, path: "{state_dir}/mail", interval_s: 0.3, timeout_s: 1.0, rise: 1, fall: 1}
    - {check: raid, scope: node, mdstat: "{state_dir}/mdstat", interval_s: 0.3, timeout_s: 1.0, rise: 1, fall: 1}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab(None, STATE, "hn-", LabOptions(), spec_text=merge_health(default_spec_text(), HEALTH))
    try:
        lab.up()
        holder(lab)
        yield lab
    finally:
        for s in STORES:
            subprocess.run(["chattr", "-i", str(lab.paths.mail_base(s))], capture_output=True)
            keep = Path("/tmp/hacluster-lab-hn-health-logs")  # the agent logs outlive the lab, for a failed run
            keep.mkdir(exist_ok=True)
            if lab.paths.agent_log(s).exists():
                shutil.copy(lab.paths.agent_log(s), keep / f"{s}.log")
        lab.down()


def wait_for(what: str, pred: Callable[[], Any], timeout: float = 20.0, step: float = 0.1) -> Any:
    return lab_wait(what, pred, timeout, step)


def holder(lab: Lab) -> str:
    def one() -> str | None:
        h = lab.status()["roles"].get("store") or []
        return h[0] if len(h) == 1 else None
    return wait_for("a single store VIP holder", one, 30)


def cluster(lab: Lab) -> dict[str, Any]:
    """`hacluster status --json`, run where ZooKeeper is reachable (a lab namespace)."""
    out = lab.exec("relay1", [sys.executable, "-m", "hacluster", "status", "--json", "--config", str(lab.paths.spec)],
                   capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def metrics(lab: Lab, node: str) -> str:
    ip = lab.plan.host(node).address
    fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    out = lab.exec("relay1", [sys.executable, "-c", fetch, f"http://{ip}:8740/metrics"],
                   capture_output=True, text=True, timeout=30)
    return out.stdout


def other(node: str) -> str:
    return STORES[1] if node == STORES[0] else STORES[0]


def test_degraded_raid_alerts_and_does_not_fail_over(lab: Lab) -> None:
    h = holder(lab)
    term = cluster(lab)["roles"]["store"]["term"]
    sample = lab.paths.node(h) / "mdstat"
    shutil.copy(FIXTURES / "raid1-degraded-faulty.mdstat", sample)
    try:
        # the steady state: the raid alert in the heartbeat, the node still healthy (a probe that
        # times out on a busy machine may make it briefly unhealthy for another reason: wait past that)
        def degraded_but_healthy() -> dict[str, Any] | None:
            st = cluster(lab)["members"][h]
            raid = any(r.startswith("raid: array degraded") for r in st["reasons"])
            return st if raid and st["penalty"] >= 50 and st["healthy"] is True and st["demote"] is False else None
        m = wait_for("the degraded array in the holder's heartbeat, the holder still healthy", degraded_but_healthy,
                     40, 0.3)
        assert any(r.startswith("raid: array degraded") for r in m["reasons"]), m["reasons"]
        time.sleep(3 * lab.spec.timing.lease_s)  # several lease periods: nothing may move
        st = cluster(lab)
        assert st["roles"]["store"]["holder"] == h and st["roles"]["store"]["term"] == term
        assert lab.status()["roles"]["store"] == [h]
        text = metrics(lab, h)
        assert 'hacluster_check_ok{check="raid"}' in text
        assert "raid: array degraded" in lab.paths.agent_log(h).read_text()
    finally:
        sample.unlink(missing_ok=True)
    wait_for("the alert to clear", lambda: cluster(lab)["members"][h]["penalty"] == 0, 40, 0.3)


def test_mta_killed_is_restarted_then_demoted_when_the_budget_is_spent(lab: Lab) -> None:
    h = holder(lab)
    mta = lab.mta(h)
    pid1 = wait_for("postfix master on the holder", mta.master_pid, 20)
    lab.fault(h, "kill-mta")
    pid2 = wait_for("the holder to restart its MTA", lambda: (p := mta.master_pid()) and p != pid1 and p, 20)
    assert lab.status()["roles"]["store"] == [h]  # repaired in place, no failover
    time.sleep(1.0)  # the check sees it running again
    log = lab.paths.agent_log(h).read_text()
    assert "restart attempt 1 " in log and "restart attempt 2 " not in log
    lab.fault(h, "kill-mta")  # the budget (1 restart in 600 s) is spent: demote
    new = wait_for("the peer to take the VIP", lambda: (x := lab.status()["roles"].get("store")) == [other(h)] and x, 20)
    assert new == [other(h)]
    assert "mta: master dead and not restartable" in lab.paths.agent_log(h).read_text()
    assert mta.master_pid() is None  # not restarted after the demotion
    subs = MailLoad(lab, VIP, size=2000).send(5, timeout_s=60)
    assert all(s.accepted for s in subs)
    led = audit(lab, subs, wait_s=30)
    assert (led.delivered_once, led.lost) == (5, 0) and led.by_store == {other(h): 5}
    del pid2
    # the demoted node stays out of the running while its MTA is dead with the budget spent
    # (no flapping back), and is a candidate again once the operator has its MTA running
    m = cluster(lab)["members"][h]
    assert m["healthy"] is False and any("not restartable" in r for r in m["reasons"]), m
    assert lab.start_mta(h).name == "SUCCESS"
    wait_for("the repaired node to be a candidate again", lambda: cluster(lab)["members"][h]["healthy"], 30, 0.3)


def test_unwritable_spool_demotes_and_the_peer_takes_over(lab: Lab) -> None:
    h = holder(lab)
    base = lab.paths.mail_base(h)
    subprocess.run(["chattr", "+i", str(base)], check=True)
    try:
        wait_for("the peer to take the VIP", lambda: lab.status()["roles"].get("store") == [other(h)], 20)
        log = lab.paths.agent_log(h).read_text()
        assert "spool: unwritable" in log and "released term" in log
        st = cluster(lab)
        assert st["roles"]["store"]["holder"] == other(h)
        assert st["members"][h]["demote"] is True  # sticky while the spool stays unwritable
        subs = MailLoad(lab, VIP, size=2000).send(5, timeout_s=60)
        assert all(s.accepted for s in subs)
        led = audit(lab, subs, wait_s=30)
        assert (led.delivered_once, led.lost) == (5, 0) and led.by_store == {other(h): 5}
    finally:
        subprocess.run(["chattr", "-i", str(base)], check=True)
    wait_for("the node with a writable spool again to be a candidate", lambda: cluster(lab)["members"][h]["healthy"],
             30, 0.3)


def test_failed_array_demotes(lab: Lab) -> None:
    h = holder(lab)
    sample = lab.paths.node(h) / "mdstat"
    shutil.copy(FIXTURES / "procfs-many-arrays.mdstat", sample)  # has inactive arrays
    try:
        wait_for("the peer to take the VIP", lambda: lab.status()["roles"].get("store") == [other(h)], 20)
        assert "raid: array failed, inactive or missing" in lab.paths.agent_log(h).read_text()
        m = cluster(lab)["members"][h]
        assert m["demote"] is True and m["healthy"] is False
    finally:
        sample.unlink(missing_ok=True)
