"""Host fencing with real agents around a real ZooKeeper and Debian's own fence agent (fence_dummy,
its power state in a file per node): a role that requires fencing is taken over from a frozen
(SIGSTOP) holder only after the candidate powered it off and `status` confirmed off (ha.py rule
15); a failed fence means no takeover, a critical log line and a `fence-failed` history entry
(rule 17); a holder that released cleanly (SIGTERM) is not fenced (rule 16)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from hacluster import clock
from hacluster.agent.claims import read_events
from hacluster_lab.localcluster import LocalCluster, spec_text
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(150)]


def fenced_spec(zk_hosts: str, power: Path, fail: str | None = None) -> str:
    text = spec_text(zk_hosts, n=2, cluster=f"fence{int(time.time() * 1000) % 100000}")
    text = text.replace("        timeout_s: 5\n", "        timeout_s: 5\n        require_fencing: true\n")
    devs = "".join(
        f"    node{i}: {{agent: fence_dummy, params: {{type: {'fail' if fail == f'node{i}' else 'file'}, "
        f"status_file: {power / f'node{i}'}, power_timeout: 1}}}}\n" for i in (1, 2))
    return text + f"fence:\n  timeout_s: 10\n  nodes:\n{devs}"


def events(lc: LocalCluster, kind: str, node: str | None = None) -> list[dict]:
    return [e for e in read_events(lc.dir.glob("claims-*.jsonl")) if e["event"] == kind and (node is None or e["node"] == node)]


def start_holder(lc: LocalCluster, power: Path) -> None:
    for n in ("node1", "node2"):
        (power / n).write_text("on")
    lc.start("node1")
    wait_for(lambda: len(events(lc, "renewed", "node1")) >= 3, 20, "node1 to hold and renew")
    lc.start("node2")
    wait_for(lambda: "node2 store: wait" in lc.log_path("node2").read_text(errors="replace"), 20, "node2 to wait")


def test_frozen_holder_is_fenced_before_the_takeover(zk_single, tmp_path: Path) -> None:
    power = tmp_path / "power"
    power.mkdir()
    lc = LocalCluster(zk_single.hosts, tmp_path / "agents", spec_text_=fenced_spec(zk_single.hosts, power))
    try:
        start_holder(lc, power)
        lc.signal("node1", signal.SIGSTOP)
        frozen_at = clock.now()
        got = lc.wait_holder(exclude=("node1",), timeout=30, after=frozen_at)
        assert got is not None and got[0] == "node2", lc.agent_log_tail("node2")
        fencing = events(lc, "fencing", "node2")
        fenced = events(lc, "fenced", "node2")
        assert [e["target"] for e in fencing] == ["node1"] and fenced[0]["ok"] is True, fenced
        last_renewal = max(e["t"] for e in events(lc, "renewed", "node1"))
        # fenced only once the lease was a lease old, and acquired only after the confirmed off
        assert fencing[0]["t"] >= last_renewal + lc.spec.timing.lease_s * 0.98
        assert fenced[0]["t"] <= got[1], (fenced, got)
        assert (power / "node1").read_text() == "off" and (power / "node2").read_text() == "on"
        assert "status confirms off" in fenced[0]["detail"]
        print(f"fence took {fenced[0]['seconds']}s; takeover {got[1] - last_renewal:.2f}s after the last renewal")
        hist = lc.coordinator().history(50)
        assert any(h["event"] == "fenced" and h.get("node_fenced") == "node1" for h in hist), hist
        assert not lc.dual_holders()
    finally:
        lc.signal("node1", signal.SIGCONT)
        lc.cleanup()


def test_failed_fence_means_no_takeover(zk_single, tmp_path: Path) -> None:
    power = tmp_path / "power"
    power.mkdir()
    lc = LocalCluster(zk_single.hosts, tmp_path / "agents", spec_text_=fenced_spec(zk_single.hosts, power, fail="node1"))
    try:
        start_holder(lc, power)
        lc.signal("node1", signal.SIGSTOP)
        frozen_at = clock.now()
        wait_for(lambda: events(lc, "fenced", "node2"), 30, "node2's fence result")
        assert events(lc, "fenced", "node2")[0]["ok"] is False
        assert lc.wait_holder(exclude=("node1",), timeout=4, after=frozen_at) is None  # no takeover
        log = lc.log_path("node2").read_text(errors="replace")
        assert "CRITICAL FENCE OF node1 FAILED" in log or "FENCE OF node1 FAILED" in log, log[-2000:]
        assert "no takeover, fencing again in" in log
        hist = lc.coordinator().history(50)
        assert any(h["event"] == "fence-failed" and h.get("node_fenced") == "node1" for h in hist), hist
    finally:
        lc.signal("node1", signal.SIGCONT)
        lc.cleanup()


def test_holder_that_released_cleanly_is_not_fenced(zk_single, tmp_path: Path) -> None:
    power = tmp_path / "power"
    power.mkdir()
    lc = LocalCluster(zk_single.hosts, tmp_path / "agents", spec_text_=fenced_spec(zk_single.hosts, power))
    try:
        start_holder(lc, power)
        t0 = clock.now()
        lc.signal("node1", signal.SIGTERM)
        got = lc.wait_holder(exclude=("node1",), timeout=20, after=t0)
        assert got is not None and got[1] - t0 < 2.0, got
        assert events(lc, "fencing") == [] and (power / "node1").read_text() == "on"
    finally:
        lc.cleanup()
