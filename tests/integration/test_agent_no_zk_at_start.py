"""An agent started while ZooKeeper is unreachable (issue 13 item 2): it keeps retrying with a log
line per attempt instead of exiting, its `run_on_standby` resources (the FallbackMX Postfix in the
lab) run all the while, and it joins the cluster and takes its role once ZooKeeper starts.

A real agent process against a real ZooKeeper (Debian's package) that is started late on the port
the agent has been trying all along.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from hacluster import clock
from hacluster.agent.loop import CONNECT_BACKOFF_MAX_S
from hacluster_lab.localcluster import LocalCluster
from hacluster.zkserver import ZooKeeperEnsemble
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(150)]

ZK_PORT_BASE = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800"))
LATE_ZK_PORT = ZK_PORT_BASE + 60  # +60..+62: a server of its own, started late (fixtures use +10, +20..+42)

SPEC = """\
cluster: late{pid}
zookeeper:
  hosts: [127.0.0.1:{port}]
  session_timeout_s: 4.0
timing: {{profile: default}}
roles:
  fallback:
    tier: fallback
    resources:
      - {{type: command, name: mta, start: "touch {{state_dir}}/MTA", stop: "rm -f {{state_dir}}/MTA",
         monitor: "test -f {{state_dir}}/MTA || exit 7"}}
      - {{type: command, name: marker, start: "touch {{state_dir}}/RUNNING", stop: "rm -f {{state_dir}}/RUNNING"}}
    run_on_standby: [mta]
nodes:
  - {{name: node1, tier: fallback, interface: lo, addresses: [127.0.0.11/8]}}
api: {{port: 0}}
"""


def attempts(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"node1: ZooKeeper unreachable \(attempt (\d+),", text)]


def test_agent_started_without_zookeeper_keeps_trying_runs_standby_and_joins(tmp_path: Path) -> None:
    lc = LocalCluster("127.0.0.1:1", tmp_path / "agents", spec_text_=SPEC.format(pid=os.getpid(), port=LATE_ZK_PORT))
    ens = ZooKeeperEnsemble.local(tmp_path / "zk", n=1, base_port=LATE_ZK_PORT)
    state = lc.state_dir("node1")
    try:
        lc.start("node1")
        # nothing listens on the port: the standby resource runs anyway, the agent keeps trying
        wait_for(lambda: (state / "MTA").exists(), 20, "the run_on_standby resource to start without ZooKeeper")
        wait_for(lambda: len(attempts(lc.log_path("node1").read_text())) >= 3, 30, "three connection attempts")
        assert lc.alive("node1"), lc.agent_log_tail("node1")
        text = lc.log_path("node1").read_text()
        assert "standby resources keep running" in text and f"127.0.0.1:{LATE_ZK_PORT}" in text
        assert not (state / "RUNNING").exists(), "a holder-only resource ran without the lease"
        # bounded backoff: the announced pauses double and never exceed the cap
        pauses = [float(p) for p in re.findall(r"retrying in ([\d.]+)s", text)]
        assert pauses == sorted(pauses) and max(pauses) <= CONNECT_BACKOFF_MAX_S, pauses

        t_zk = clock.now()
        ens.start(timeout=60)
        obs = lc.coordinator("observer")
        try:
            def joined() -> bool:
                c = obs.snapshot(["fallback"], timeout=5.0)
                lease = c.leases.get("fallback")
                return "node1" in c.members and lease is not None and lease.holder == "node1"

            # one backoff pause (at most the cap), one attempt, then a lease wait for the
            # missing znode (rule 8) and the first loop
            wait_for(joined, CONNECT_BACKOFF_MAX_S + 10 + 2 * lc.spec.timing.lease_s + 10, "node1 to join and hold the role")
        finally:
            obs.stop()
        took = clock.now() - t_zk
        wait_for(lambda: (state / "RUNNING").exists(), 10, "the holder-only resource on the holder")
        text = lc.log_path("node1").read_text()
        assert "ZooKeeper reached after" in text and "acquired lease term 1" in text
        assert (state / "MTA").exists() and lc.alive("node1")
        print(f"ZooKeeper started after {len(attempts(text))} attempts; node1 holds the role {took:.2f}s later")
    finally:
        lc.stop()
        ens.stop()
        print(lc.agent_log_tail("node1", 25))
