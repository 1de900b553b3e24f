"""A real agent's /metrics against a real ZooKeeper (issue 14 item 5): its identity series, the
maintenance flag as the cluster has it, and whether its ZooKeeper session is connected -- 0
within seconds of the server going away, 1 again when it is back."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import hacluster
from hacluster_lab.localcluster import LocalCluster
from .waiting import until_done, wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(240)]
API_PORT = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800")) + 68  # on 127.0.0.11 (test_alerts: +65..+67)


def scrape(lc: LocalCluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(lc.api_url("node1", "/metrics"), timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(lc: LocalCluster, name: str) -> float | None:
    try:
        return scrape(lc).get((name, ()))
    except OSError:
        return None


def answered(lc: LocalCluster, name: str) -> float:
    """The value from the first scrape that answers (a busy machine may time one out)."""
    got: float = wait_for(lambda: (v := value(lc, name)) is not None and (v,), 20, f"a scrape with {name}")[0]
    return got


def test_metrics_show_identity_maintenance_and_the_zookeeper_session(zk_single, tmp_path: Path) -> None:
    lc = LocalCluster(zk_single.hosts, tmp_path / "c", n=1, api=True, api_port_base=API_PORT)
    obs = None
    try:
        lc.start_all()
        assert lc.wait_holder(timeout=30), lc.agent_log_tail("node1")
        wait_for(lambda: value(lc, "hacluster_zookeeper_connected") == 1, 20, "connected 1")
        m = scrape(lc)
        assert m[("hacluster_build_info", (("version", hacluster.__version__),))] == 1
        assert m[("hacluster_node_info", (("cluster", lc.spec.name), ("node", "node1"), ("tier", "store")))] == 1
        assert m[("hacluster_maintenance", ())] == 0

        obs = lc.coordinator()
        until_done(lambda: obs.set_maintenance(True, "test"), 10, "maintenance set")
        wait_for(lambda: value(lc, "hacluster_maintenance") == 1, 15, "maintenance 1")

        zk_single.stop_server(1)  # SIGKILL: the agent's session drops
        wait_for(lambda: value(lc, "hacluster_zookeeper_connected") == 0, 15, "connected 0 with ZooKeeper down")
        assert answered(lc, "hacluster_maintenance") == 1  # the last known state, not "off" for want of an answer

        zk_single.start_server(1)
        zk_single.wait_serving(90)
        # margin for a busy 2-core machine: the agent's session may have expired and be made anew
        wait_for(lambda: value(lc, "hacluster_zookeeper_connected") == 1, 45, "connected 1 again")
        # the test's own client reconnects on its own time: kazoo fails a request made before
        until_done(lambda: obs.set_maintenance(False, "test"), 30, "maintenance lifted")
        wait_for(lambda: value(lc, "hacluster_maintenance") == 0, 20, "maintenance 0")
    except AssertionError as err:  # the agent's side in the failure's own lines (a CI excerpt shows only those)
        raise AssertionError(f"{err}\n--- node1's log:\n{lc.agent_log_tail('node1', 15)}") from None
    finally:
        if obs is not None:
            obs.stop()
        lc.cleanup()
        print(lc.agent_log_tail("node1", 15))
