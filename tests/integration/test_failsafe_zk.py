"""Failsafe mode with real agents (LocalCluster) and a real ZooKeeper that the tests stop.

Three agents with `failsafe: true`, each serving the API on the spec's port at its own address
with a shared token. The claims logs (holder intervals, and each peer's promises) are the record:
no two claims may overlap, and nobody may acquire inside a promise it gave (ha.py rules 13-14,
docs/safety.md "Failsafe mode").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hacluster import clock
from hacluster.agent.claims import read_events
from hacluster.http.web import WebServer
from hacluster_lab.localcluster import LocalCluster, spec_text
from hacluster.zkserver import ZooKeeperEnsemble

from .agents import Clusters
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]

ZK_PORT_BASE = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800"))
API_PORT = ZK_PORT_BASE + 70  # one port, on 127.0.0.11-13 (the fixtures use +10, +20..+42)
ROLE = "store"
SLACK_S = 0.15  # the guard thread's wake-up on a loaded 2-core machine


def failsafe_spec(zk: ZooKeeperEnsemble, token_file: Path, profile: str) -> str:
    text = spec_text(zk.hosts, 3, profile, f"fs{os.getpid()}x{int(time.time() * 1000) % 100000}")
    assert text.endswith("api:\n  port: 0\n")
    return text.replace("api:\n  port: 0\n", f"failsafe: true\napi:\n  port: {API_PORT}\n  token_file: {token_file}\n")


@pytest.fixture
def failsafe_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    with Clusters(tmp_path, tail_lines=12) as made:

        def make(zk: ZooKeeperEnsemble, profile: str = "default") -> LocalCluster:
            token = tmp_path / "api.token"
            token.write_text("failsafe-" + os.urandom(6).hex() + "\n")
            return made.add(LocalCluster(zk.hosts, made.next_dir(), spec_text_=failsafe_spec(zk, token, profile),
                                         api=True, shared_api_port=True))

        yield make


def events(lc: LocalCluster, node: str | None = None, kind: str | None = None, after: float = 0.0) -> list[dict[str, Any]]:
    return [e for e in read_events(lc.dir.glob("claims-*.jsonl"))
            if (node is None or e["node"] == node) and (kind is None or e["event"] == kind) and e["t"] >= after]


def settle(lc: LocalCluster, timeout: float = 30.0) -> str:
    def steady() -> str | None:
        held = lc.believed_holders(ROLE)
        if len(held) != 1:
            return None
        last = max(e["t"] for e in events(lc, held[0], "acquired"))
        return held[0] if len(events(lc, held[0], "renewed", after=last)) >= 2 else None
    return wait_for(steady, timeout, "one steady holder")


def assert_no_acquisition_inside_a_promise(lc: LocalCluster) -> None:
    """Rule 14 on the record: an acquisition by N never falls inside a promise N gave."""
    for acq in events(lc, kind="acquired"):
        for p in events(lc, acq["node"], "promised"):
            assert not p["t"] <= acq["t"] < p["until"], f"{acq['node']} acquired inside its promise: {p} {acq}"


def assert_safe(lc: LocalCluster) -> None:
    assert lc.dual_holders() == [], f"overlapping holder claims: {lc.dual_holders()}"
    assert_no_acquisition_inside_a_promise(lc)


def restart(zk: ZooKeeperEnsemble) -> None:
    zk.start_server(1)
    zk.wait_serving(60)


def test_holder_keeps_its_role_through_a_zookeeper_outage_and_reasserts_after(zk_single, failsafe_cluster):
    lc = failsafe_cluster(zk_single)
    t = lc.spec.timing
    holder = settle(lc)
    obs = lc.coordinator()
    try:
        before = obs.snapshot([ROLE], timeout=5.0).leases[ROLE]
    finally:
        obs.stop()
    # the operator page, started while ZooKeeper answers (it shows failsafe from the agents' APIs)
    web_coord = lc.coordinator("web-failsafe")
    web = WebServer(lc.spec, web_coord, "127.0.0.1", 0, None, interval_s=0.2)
    web.start()
    t_down = clock.now()
    zk_single.stop_server(1)
    try:
        # the operator's status without ZooKeeper: each agent's own view (hacluster/agents_view.py);
        # it gives up on ZooKeeper after 5 s, which is also the wait this test needs here
        cli = subprocess.run([sys.executable, "-m", "hacluster", "status", "-c", str(lc.spec_path)],
                             capture_output=True, text=True, timeout=60)
        time.sleep(max(0.0, t_down + 5 * t.lease_s - clock.now()))
        # still the holder, extended by the peers' confirmations alone; nobody else believes it holds
        assert lc.believed_holders(ROLE) == [holder]
        assert not events(lc, kind="demoted", after=t_down) and not events(lc, kind="acquired", after=t_down)
        extended = events(lc, holder, "renewed", after=t_down)
        assert extended and all(e.get("failsafe") for e in extended if e["t"] > t_down + t.lease_s)
        gaps = [b["t"] - a["t"] for a, b in zip(extended, extended[1:], strict=False)]
        print(f"ZooKeeper down {clock.now() - t_down:.1f}s: {holder} extended {len(extended)} times, "
              f"largest gap {max(gaps):.3f}s (validity {t.holder_validity_s}s)")
        peers = [n for n in lc.nodes if n != holder]
        for p in peers:
            assert events(lc, p, "promised", after=t_down), f"{p} never promised"
            with urllib.request.urlopen(lc.api_url(p, "/status"), timeout=2) as r:
                st = json.loads(r.read())["failsafe"]
            assert st["enabled"] and st["promises"][ROLE]["holder"] == holder, st
        assert (lc.state_dir(holder) / "RUNNING").exists()
        assert not any((lc.state_dir(p) / "RUNNING").exists() for p in peers)
        # status, metrics and the operator's view say the holder runs on its peers' confirmations
        with urllib.request.urlopen(lc.api_url(holder, "/status"), timeout=2) as r:
            assert json.loads(r.read())["failsafe"]["extended"][ROLE]["term"] >= 1
        with urllib.request.urlopen(lc.api_url(holder, "/metrics"), timeout=2) as r:
            text = r.read().decode()
        assert f'hacluster_failsafe_active{{role="{ROLE}"}} 1.0' in text and "hacluster_failsafe_enabled 1.0" in text
        with urllib.request.urlopen(lc.api_url(peers[0], "/metrics"), timeout=2) as r:
            text = r.read().decode()
        promised = float(text.split(f'hacluster_failsafe_promises_total{{role="{ROLE}"}} ')[1].split()[0])
        assert promised >= 1 and f'hacluster_failsafe_active{{role="{ROLE}"}} 0.0' in text
        assert cli.returncode == 1, cli.stderr
        assert "ZooKeeper unreachable: each agent's own view" in cli.stdout, cli.stdout + cli.stderr
        row = next(ln for ln in cli.stdout.splitlines() if ln.startswith(holder + " "))
        assert "ON FAILSAFE" in row and "on" in row.split(), row
        assert all(f"{ROLE} to {holder}" in next(ln for ln in cli.stdout.splitlines() if ln.startswith(p + " "))
                   for p in peers), cli.stdout
        assert "cannot reach ZooKeeper" in cli.stderr, cli.stderr
        # the web page's view: failsafe on, the holder holding on failsafe, every peer's promise
        def web_failsafe() -> dict[str, Any] | None:
            with urllib.request.urlopen(web.url + "api/status", timeout=5) as r:
                fs = json.loads(r.read())["failsafe"]
            return fs if fs["holding"] and all(fs["nodes"][p]["promises"] for p in peers) else None
        fs = wait_for(web_failsafe, 20, "the web page showing the holder on failsafe and the promises")
        assert fs["enabled"] and [(f["node"], f["role"]) for f in fs["holding"]] == [(holder, ROLE)], fs
        assert all(fs["nodes"][p]["promises"][0]["holder"] == holder for p in peers), fs
        assert fs["mismatch"] == [] and fs["nodes"][holder]["on_failsafe"] == [ROLE], fs
    finally:
        web.stop()
        web_coord.stop()
        t_up = clock.now()
        restart(zk_single)
    # ZooKeeper back: the holder re-asserts by CAS on the version it knew (or demotes by its
    # deadline if its peers reconnected first and refused), and exactly one holder follows
    time.sleep(3 * t.lease_s)
    now_held = wait_for(lambda: (lambda h: h[0] if len(h) == 1 else None)(lc.believed_holders(ROLE)), 20,
                        "one holder after ZooKeeper returned")
    kept = not events(lc, holder, "demoted", after=t_down)
    print(f"ZooKeeper back after {t_up - t_down:.1f}s: holder {now_held} "
          f"({'the same, never demoted' if kept else f'{holder} demoted, then a new election'})")
    if kept:
        assert now_held == holder and not events(lc, kind="acquired", after=t_down)
        # re-asserted by CAS on the version it knew: the same term, renewed (a newer version)
        term = events(lc, holder, "acquired")[-1]["term"]
        obs = lc.coordinator()
        try:
            after = obs.snapshot([ROLE], timeout=5.0).leases[ROLE]
        finally:
            obs.stop()
        assert (after.holder, after.term) == (holder, term) and after.version > before.version, (after, before)
    assert_safe(lc)


def test_one_silent_peer_ends_the_extension_and_nobody_acquires(zk_single, failsafe_cluster):
    lc = failsafe_cluster(zk_single)
    t = lc.spec.timing
    holder = settle(lc)
    silent = [n for n in lc.nodes if n != holder][-1]
    t_down = clock.now()
    zk_single.stop_server(1)
    try:
        time.sleep(2 * t.lease_s)
        assert lc.believed_holders(ROLE) == [holder]  # extending while everybody answers
        t_stop = clock.now()
        lc.signal(silent, signal.SIGSTOP)
        time.sleep(3 * t.lease_s)
        demoted = events(lc, holder, "demoted", after=t_stop)
        assert demoted, f"{holder} kept the role without {silent}'s answer"
        assert "lease expired" in demoted[0]["reason"]
        until = max(e["until"] for e in events(lc, holder) if "until" in e and e["t"] < demoted[0]["t"])
        # the last extension came from a poll sent before the freeze, and the guard keeps the deadline
        assert until <= t_stop + t.holder_validity_s + 0.05, until - t_stop
        assert demoted[0]["t"] <= until + SLACK_S, demoted[0]["t"] - until
        assert lc.believed_holders(ROLE) == [] and not events(lc, kind="acquired", after=t_down)
        assert not (lc.state_dir(holder) / "RUNNING").exists()
        print(f"{silent} frozen: {holder} demoted {demoted[0]['t'] - t_stop:.3f}s later "
              f"(deadline {until - t_stop:.3f}s after the freeze); nobody acquired")
    finally:
        restart(zk_single)
        lc.signal(silent, signal.SIGCONT)
    wait_for(lambda: len(lc.believed_holders(ROLE)) == 1, 20, "one holder after ZooKeeper returned")
    time.sleep(t.lease_s)
    assert len(lc.believed_holders(ROLE)) == 1
    assert_safe(lc)


def test_a_peer_that_promised_waits_out_its_promise_when_zookeeper_returns(zk_single, failsafe_cluster):
    """The holder freezes while extending on failsafe, and ZooKeeper returns at once: the peers
    reconnect within a second or two, and the lease version they read looks older than a lease
    (they first saw it before the outage), so only their promise (rule 14) keeps them waiting
    until the frozen holder's extended deadline has passed. Relaxed timing (lease 5 s): its
    validity (3.5 s) outlasts a ZooKeeper restart plus a reconnect, so without rule 14 a peer
    acquires while the frozen holder still believes it holds."""
    lc = failsafe_cluster(zk_single, profile="relaxed")
    t = lc.spec.timing
    holder = settle(lc, timeout=60)
    zk_single.stop_server(1)
    try:
        time.sleep(t.lease_s + 2 * t.loop_s)  # the lease version the peers know is now older than a lease
        assert lc.believed_holders(ROLE) == [holder]
        zk_single.start_server(1)
        t_freeze = clock.now()
        lc.signal(holder, signal.SIGSTOP)
        zk_single.wait_serving(60)
        got = lc.wait_holder(ROLE, exclude=(holder,), timeout=30, after=t_freeze)
        assert got is not None, "nobody took over from the frozen holder"
        new, t_new = got
        until = max(e["until"] for e in events(lc, holder) if "until" in e)
        print(f"{holder} frozen with its extension valid {until - t_freeze:.3f}s more; "
              f"{new} acquired {t_new - t_freeze:.3f}s after the freeze")
        assert t_new >= until + t.margin_s - 2 * t.max_drift * t.lease_s - 0.05, (t_new - until)
    finally:
        lc.signal(holder, signal.SIGCONT)
    time.sleep(t.loop_s * 2)
    assert_safe(lc)
