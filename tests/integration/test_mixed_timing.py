"""A rolling change of timing.profile from `default` to `fast` (issue 13 item 3), with real agents
around a real ZooKeeper: the holder still runs `default` (valid 1.75 s after each renewal), the
candidate already runs `fast` (its own lease_s is 0.3 s). The holder is frozen (SIGSTOP): the fast
candidate must wait out the lease_s the holder promised in its lease record (2.05 s, ha.py rule 11),
not its own 0.3 s -- with its own it would take over while the frozen holder is still valid.

Also: `hacluster status` names the node whose timing differs, and `hacluster config check FILE
--against-cluster` tells a file that matches the running cluster from one that does not.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hacluster import clock
from hacluster.agent.claims import read_events
from hacluster.coord.outcome import Acquired
from hacluster_lab.localcluster import LocalCluster
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(150)]

ROLE = "store"


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(config)] if args[0] == "status"
                          else [sys.executable, "-m", "hacluster", *args, str(config), "--against-cluster"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def events(lc: LocalCluster, node: str) -> list[dict]:
    return [e for e in read_events(lc.dir.glob("claims-*.jsonl")) if e["node"] == node]


def log_text(lc: LocalCluster, node: str) -> str:
    return lc.log_path(node).read_text(errors="replace")


def test_fast_candidate_waits_out_a_frozen_default_holders_promise(zk_single, tmp_path: Path) -> None:
    lc = LocalCluster(zk_single.hosts, tmp_path / "agents", n=2, profile="default")
    default_yml = lc.spec_path
    fast_yml = lc.dir / "fast.yml"
    fast_yml.write_text(default_yml.read_text().replace("profile: default", "profile: fast"))
    default_t = lc.spec.timing
    try:
        lc.start("node1")
        wait_for(lambda: len([e for e in events(lc, "node1") if e["event"] == "renewed"]) >= 3, 20,
                 "node1 (default) to hold and renew")

        # before node2 runs: the default file matches the cluster, the fast one does not
        res = run("config", "check", config=default_yml)
        assert res.returncode == 0 and "same timing and roles as the running cluster" in res.stdout, res
        res = run("config", "check", config=fast_yml)
        assert res.returncode == 1 and res.stdout == "", res
        assert "differs from the running cluster" in res.stderr
        assert f"node1: timing differs from this file (lease_s {default_t.lease_s:g}, margin_s 0.3 vs 0.3, 0.1" in res.stderr, res.stderr
        res = run("config", "check", "--json", config=fast_yml)
        out = json.loads(res.stdout)
        assert res.returncode == 1 and out["ok"] is False and out["differs"] == {"node1": ["timing"]}

        lc.start("node2", config=fast_yml)
        wait_for(lambda: "node2 store: wait (holder node1 term 1" in log_text(lc, "node2"), 20,
                 "node2 (fast) to wait on node1's lease")
        wait_for(lambda: "config mismatch: node2: timing differs from ours" in log_text(lc, "node1"), 10,
                 "node1 to warn about node2's timing")

        # status, from the operator's default file: node2 differs from it (and there is no majority)
        st = json.loads(run("status", "--json", config=default_yml).stdout)
        assert st["config"]["majority"] is None
        assert st["config"]["mismatched"]["node2"]["own"] == ["timing"] and "node1" not in st["config"]["mismatched"]
        assert st["members"]["node2"]["config"]["lease_s"] == 0.3
        text = run("status", config=default_yml).stdout
        assert "CONFIG DIFFERS" in text and "node2: timing differs from this spec" in text, text

        # freeze the default holder at some phase of its renewal cycle
        time.sleep(0.37)
        t_stop = clock.now()
        lc.signal("node1", signal.SIGSTOP)
        try:
            got = lc.wait_holder(ROLE, exclude=("node1",), timeout=10, after=t_stop)
            assert got is not None, "node2 never took over from the frozen holder"
            _, t_new = got
            time.sleep(0.5)
        finally:
            t_cont = clock.now()
            lc.signal("node1", signal.SIGCONT)
        before = [e for e in events(lc, "node1") if e["t"] < t_stop]
        deadline = max(e["until"] for e in before if "until" in e)
        t_send = deadline - default_t.holder_validity_s  # the holder's last acknowledged renewal
        print(f"frozen default holder: deadline {deadline - t_stop:+.3f}s after SIGSTOP; the fast candidate "
              f"acquired {t_new - t_stop:.3f}s after it, {t_new - t_send:.3f}s after the last renewal was sent")
        # no overlap: acquired only after the holder's promised validity, indeed after its whole lease
        assert t_new > deadline, "the fast candidate acquired while the frozen default holder was valid"
        assert t_new >= t_send + default_t.lease_s - 0.005, f"waited {t_new - t_send:.3f}s, not the promised lease"
        assert lc.dual_holders() == [], f"overlapping holder claims: {lc.dual_holders()}"
        assert f"node2 store: wait (holder node1 term 1 (promised lease {default_t.lease_s:g}s)" in log_text(lc, "node2")
        # the takeover's own line: the first acquire (a loaded machine may make node2 lose and
        # re-take its own lease later, a line about node2's term, not node1's promise)
        line = [ln for ln in log_text(lc, "node2").splitlines() if "node2 store: acquire (" in ln][0]
        assert f"(promised lease {default_t.lease_s:g}s) unchanged for " in line, line

        # the woken holder demotes first, for its expired lease
        wait_for(lambda: [e for e in events(lc, "node1") if e["t"] >= t_cont], 5, "node1's first event after waking")
        after = [e for e in events(lc, "node1") if e["t"] >= t_cont]
        assert after[0]["event"] == "demoted" and "lease expired" in after[0]["reason"], after[:3]
        time.sleep(5 * default_t.loop_s)
        assert lc.dual_holders() == []
    finally:
        lc.stop()
        lc.print_log_tails(15)


def test_deleted_or_scribbled_lease_still_carries_the_last_promise(zk_single, zk_client_factory, tmp_path: Path) -> None:
    """Coordinator.snapshot directly (no agents): a rogue deleting or scribbling on a default
    holder's lease must not let a fast candidate wait only its own 0.3 s (docs/safety.md)."""
    from hacluster.coord.model import encode_lease

    lc = LocalCluster(zk_single.hosts, tmp_path / "agents", n=2, profile="fast")
    me = lc.coordinator("node2")
    try:
        rogue = zk_client_factory(zk_single)
        path = me.paths.lease(ROLE)
        rogue.create(path, encode_lease("node1", 3, 0, lease_s=1.0, margin_s=0.3), makepath=True)
        assert me.snapshot([ROLE]).leases[ROLE].promise == (1.0, 0.3)
        rogue.set(path, b"\x00 scribbled")
        seen = me.snapshot([ROLE]).leases[ROLE]
        assert (seen.holder, seen.promise) == ("?", (1.0, 0.3))
        rogue.delete(path)
        seen = me.snapshot([ROLE]).leases[ROLE]
        assert (seen.exists, seen.promise) == (False, (1.0, 0.3))
        # an older agent's well-formed record has no promise: the candidate's own timing, as before
        rogue.create(path, encode_lease("node1", 4, 0))
        assert me.snapshot([ROLE]).leases[ROLE].promise is None
        # what a fast agent writes carries its own promise
        got = me.acquire(ROLE, me.snapshot([ROLE]).leases[ROLE])
        assert isinstance(got, Acquired), got
        assert me.snapshot([ROLE]).leases[ROLE].promise == (0.3, 0.1)
    finally:
        me.stop()
