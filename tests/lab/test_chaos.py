"""`hacluster chaos` in the real namespace lab (real ZooKeeper ensemble, Postfix, agents).

* A short seeded run with every fault kind against the store tier and ZooKeeper while mail flows
  by MX and to the store VIP: the report holds the invariants and real figures (mail accepted and
  audited, the monitor sampling, every action applied, recovery measured and bounded).
* The per-fault nft tables: two overlapping cuts on one host heal one at a time; flapping is
  idempotent; the final heal removes every chaos table.
The checker's failure path (planted dual holder / lost mail -> shrinker) is in
tests/lab_unit/test_chaos_shrink.py; it needs no lab.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from hacluster_lab.chaos import netfaults
from hacluster_lab.chaos.runner import Runner, heal_everything
from hacluster_lab.chaos.schedule import Action, Fault, Schedule
from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.state import LabOptions

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

STATE = "/run/hacluster-lab-hxt"
PREFIX = "hxt-"


def _ping(lab: Lab, src: str, dst: str) -> bool:
    ip = lab.plan.host(dst).address
    return lab.exec(src, ["ping", "-c1", "-W1", ip], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def bare_lab() -> Iterator[Lab]:
    lab = Lab(None, STATE + "-net", PREFIX, LabOptions(agents=False))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def test_per_fault_tables_heal_one_at_a_time(bare_lab: Lab) -> None:
    lab = bare_lab
    netfaults.cut(lab, "hcx_f1", "store1", "zk2")
    netfaults.cut(lab, "hcx_f2", "store1", "relay1")
    assert not _ping(lab, "store1", "zk2") and not _ping(lab, "zk2", "store1")
    assert not _ping(lab, "relay1", "store1")
    assert _ping(lab, "store1", "zk1")
    netfaults.uncut(lab, "hcx_f1", "store1", "zk2")
    assert _ping(lab, "store1", "zk2")
    assert not _ping(lab, "relay1", "store1")  # the other fault is still in force
    netfaults.cut(lab, "hcx_f3", "zk3")  # isolate; cut twice = a flap's next "down": idempotent
    netfaults.cut(lab, "hcx_f3", "zk3")
    assert not _ping(lab, "zk3", "zk1")
    assert sorted(netfaults.tables(lab, "zk3")) == [("arp", "hcx_f3"), ("inet", "hcx_f3")]
    netfaults.uncut(lab, "hcx_f3", "zk3")
    netfaults.uncut(lab, "hcx_f3", "zk3")  # uncut of a healed fault is harmless
    assert _ping(lab, "zk3", "zk1")
    lab.fault("relay2", "power-off")
    heal = heal_everything(lab)
    assert heal["errors"] == [] and heal["power-on"] == ["relay2"]
    assert set(heal["uncut"]) == {"store1", "relay1"}
    assert all(netfaults.tables(lab, h.name) == [] for h in lab.plan.hosts)
    assert _ping(lab, "relay1", "store1") and _ping(lab, "client", "relay2")


def test_supervisor_restarts_agents_but_not_killed_ones(bare_lab: Lab) -> None:
    """Like systemd's Restart=on-failure: an agent that is not running gets started after
    supervise_s, except while a kill-agent fault keeps it dead."""
    lab = bare_lab
    mail = sorted(h.name for h in lab.plan.of_kind("relay", "store", "fallback"))
    kill = Fault(1, "kill-agent", 2.5, 5.0, ("relay1",),
                 (Action(2.5, "kill-agent", "relay1", fault=1), Action(5.0, "start-agent", "relay1", fault=1)))
    runner = Runner(lab, Schedule(0, 6.0, (kill,)), supervise_s=0.3)
    log = runner.run()
    restarts = [r for r in log if r["op"] == "restart"]
    assert sorted(r["node"] for r in restarts) == mail  # none was running in the bare lab
    assert all(r["ok"] and r["at"] < 2.5 for r in restarts)  # relay1 not restarted during the fault
    assert [r["op"] for r in log if r["node"] == "relay1" and r["op"] != "restart"] == ["kill-agent", "start-agent"]
    assert all(lab.agent_pid(n) is not None for n in mail)


def test_short_chaos_run_reports_and_holds() -> None:
    """20 s of faults (seed 3, store tier and ZooKeeper weighted in by the generator)."""
    out = Path(STATE + "-report.json")
    cmd = [sys.executable, "-m", "hacluster", "chaos", "--duration", "20", "--seed", "3", "--json", "--no-shrink",
           "--state-dir", STATE, "--prefix", PREFIX, "--rate", "4", "--output", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=140)
        assert proc.stdout, proc.stderr[-2000:]
        rep = json.loads(proc.stdout)
        assert json.loads(out.read_text()) == rep
    finally:
        out.unlink(missing_ok=True)
        Lab.teardown(STATE, PREFIX)  # if the run died before its own teardown
    assert rep["seed"] == 3 and rep["duration_s"] == 20
    assert rep["dual_holder_samples"] == 0, rep["monitor"]
    assert rep["lost"] == 0, rep["mail"]
    assert rep["ok"] and proc.returncode == 0, rep["violations"]
    # the run really did something
    assert rep["faults"]["count"] >= 5 and rep["faults"]["actions"] >= 2 * rep["faults"]["count"]
    # an action may only fail on an agent that gave up on ZooKeeper and awaits its restart
    failed = [r for r in rep["fault_log"] if not r["ok"]]
    assert all("no agent is running" in r["error"] for r in failed), failed
    assert {r["op"] for r in rep["fault_log"]} >= {"cut", "uncut"}
    assert rep["monitor"]["samples"] > 500 and rep["monitor"]["max_gap_s"] < 1.0
    for name in ("mx", "vip"):
        m = rep["mail"][name]
        assert m["accepted"] >= 10 and m["delivered_once"] + m["duplicates"] >= m["accepted"] - m["lost"]
    assert rep["accepted"] == rep["mail"]["mx"]["accepted"] + rep["mail"]["vip"]["accepted"]
    rec = rep["recovery"]["components_s"]
    assert set(rec) >= {"smtp:store-vip", "smtp:relay1", "smtp:relay2", "zk:zk1", "zk:zk2", "zk:zk3", "vip_single_holder"}
    assert 0 < rep["max_recovery_s"] <= rep["recovery_bound_s"]
    assert rep["schedule"] and rep["repro"] == "hacluster chaos --seed 3 --duration 20"
