"""`bench false-failover` end to end, short: a 9 s window per contender under the zk-gc
load (a ZooKeeper server paused every 1.5 s), the JSON shape of issue 19, and a move injected on
purpose in each window is counted -- a planned agent restart hands the role off under hacluster,
SIGTERM of keepalived on the holder makes its peer take the VIP -- so a bench that counts nothing
fails here."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hacluster_lab.bench.falsefailover import run_bench
from hacluster_lab.bench.loads import LoadParams
from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.netns import pids_in

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

PREFIX = "hfq-"
STATE = Path("/run/hacluster-lab-hff-test")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def inject(system: str, lab: Lab, holder: str) -> None:
    if system == "hacluster":
        lab.restart_agent(holder)  # SIGTERM: the agent stops its resources and hands the role off
    else:
        for pid in pids_in(lab.ns(holder)):
            if _comm(pid) == "keepalived":
                os.kill(pid, signal.SIGTERM)  # it drops the VIP and sends priority 0: the peer takes over


def test_false_failover_json_and_an_injected_move_is_counted() -> None:
    Lab.teardown(STATE, PREFIX)
    try:
        res = run_bench("default", "zk-gc", minutes=0.15, state_dir=str(STATE), prefix=PREFIX,
                        params=LoadParams(period_s=1.5, pauses_ms=(200,)), inject=inject, inject_at_s=3.0)
    finally:
        Lab.teardown(STATE, PREFIX)
    assert {"profile", "load", "minutes", "hacluster", "keepalived"} <= set(res)
    assert (res["profile"], res["load"], res["minutes"]) == ("default", "zk-gc", 0.15)
    assert res["keepalived"]["advert_int"] == 1.0
    for name in ("hacluster", "keepalived"):
        r = res[name]
        assert r["injected"] is True
        assert r["unplanned_moves"] >= 1, (name, r)
        assert r["moves"][0]["from"] == r["holder_at_start"], (name, r["moves"])
        assert isinstance(r["vip_gap_s_total"], float) and 0 <= r["vip_gap_s_total"] < r["window_s"]
        assert r["load"]["pauses"] >= 2, r["load"]  # the load really ran: a pause every 1.5 s
        assert r["load"]["paused_s_max"] >= 0.2
        assert r["loadavg_1m"]["max"] >= 0
    assert res["hacluster"]["dual_holder_samples"] == 0
    print(f"\nhacluster {res['hacluster']['moves']} gaps {res['hacluster']['vip_gap_s_total']}s; "
          f"keepalived {res['keepalived']['moves']} gaps {res['keepalived']['vip_gap_s_total']}s")
