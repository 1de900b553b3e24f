"""Agents as real processes (LocalCluster) around real ZooKeeper servers (Debian's package).

Every test checks the safety invariant two ways: the agents' claims logs (holder intervals with
CLOCK_BOOTTIME stamps, merged and checked for overlap) and, where the agents stay alive, the
resources themselves (each node's `RUNNING` marker, written by the role's command resource,
sampled every few milliseconds: never two at once).

Figures (takeover, release during a ZooKeeper leader election ...) are printed: run with -s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from hacluster import clock
from hacluster.agent.claims import Claim, read_events
from hacluster.agent.verdict_log import SUMMARY_S
from hacluster.coord.model import Lease
from hacluster.ha import Action
from hacluster.coord.outcome import Acquired, Adopted, Lost, Renewed, Unreachable
from hacluster.coord.session import Coordinator
from hacluster_lab.localcluster import LocalCluster
from hacluster.zkserver import ZooKeeperEnsemble
from .agents import Clusters
from .waiting import wait_for as _wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(150)]

ZK_PORT_BASE = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800"))
API_PORT_BASE = ZK_PORT_BASE + 7  # +7..+9: below the ZooKeeper fixtures' ports (+10 and up)
SLACK_S = 0.6  # scheduling slack on a loaded 2-core machine (ZooKeeper JVMs, other test runs)
ROLE = "store"


# --------------------------------------------------------------------------- helpers


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    return _wait_for(pred, timeout, what, interval)  # this file polls faster than the default


def single_holder(lc: LocalCluster) -> str | None:
    held = lc.believed_holders(ROLE)
    return held[0] if len(held) == 1 else None


def events(lc: LocalCluster, node: str | None = None) -> list[dict]:
    evs = read_events(lc.dir.glob("claims-*.jsonl"))
    return [e for e in evs if node is None or e["node"] == node]


def lease(obs: Coordinator) -> Lease:
    c = obs.snapshot([ROLE], timeout=5.0)
    assert c.connected
    return c.leases[ROLE]


def acquisitions(lc: LocalCluster, after: float = 0.0) -> list[dict]:
    return [e for e in events(lc) if e["event"] == "acquired" and e["t"] >= after]


def assert_no_dual_holder(lc: LocalCluster) -> None:
    bad = lc.dual_holders()
    assert bad == [], f"overlapping holder claims: {bad}"


def cli(lc: LocalCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m hacluster ARGS --config SPEC`, as an operator would run it."""
    return subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(lc.spec_path)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def log_text(lc: LocalCluster, node: str) -> str:
    return lc.log_path(node).read_text(errors="replace")


class MarkerWatch:
    """Samples every node's RUNNING marker (the real resource state) every few ms in a thread."""

    def __init__(self, lc: LocalCluster, interval: float = 0.004) -> None:
        self.lc = lc
        self.interval = interval
        self.ignore: set[str] = set()  # killed/frozen agents cannot stop their command resource
        self.doubles: list[tuple[float, tuple[str, ...]]] = []
        self.last_seen: dict[str, float] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def running(self) -> set[str]:
        return {n for n in self.lc.nodes if (self.lc.state_dir(n) / "RUNNING").exists()}

    def _run(self) -> None:
        while not self._stop.is_set():
            t = clock.now()
            now = self.running() - set(self.ignore)
            for n in now:
                self.last_seen[n] = t
            if len(now) > 1:
                self.doubles.append((t, tuple(sorted(now))))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "MarkerWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def check(self) -> None:
        assert self.samples > 10
        assert self.doubles == [], f"two nodes ran the role's resources at once: {self.doubles[:5]}"


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    """`make(zk, profile=..., start=True, **LocalCluster kwargs)`; agents are stopped at teardown
    and their log tails printed (shown when the test failed)."""
    with Clusters(tmp_path) as made:

        def make(zk: ZooKeeperEnsemble, profile: str = "default", start: bool = True, **kw: Any) -> LocalCluster:
            return made.add(LocalCluster(zk.hosts, made.next_dir(), n=kw.pop("n", 3), profile=profile, **kw), start)

        yield make


@pytest.fixture
def observer(request: pytest.FixtureRequest) -> Iterator[Callable[[LocalCluster], Coordinator]]:
    opened: list[Coordinator] = []

    def make(lc: LocalCluster) -> Coordinator:
        c = lc.coordinator("observer")
        opened.append(c)
        return c

    try:
        yield make
    finally:
        for c in opened:
            c.stop()


def settle(lc: LocalCluster, timeout: float = 20.0) -> str:
    """Wait for exactly one holder that has renewed at least twice (so the cluster is steady)."""
    def steady() -> str | None:
        h = single_holder(lc)
        if h is None:
            return None
        evs = events(lc, h)
        last_acq = max(e["t"] for e in evs if e["event"] == "acquired")
        renewals = [e for e in evs if e["event"] == "renewed" and e["t"] > last_acq]
        return h if len(renewals) >= 2 else None
    return wait_for(steady, timeout, "one steady holder")


# --------------------------------------------------------------------------- election, SIGKILL


def test_three_agents_elect_one_holder_and_sigkill_moves_it_within_the_bound(zk_single, clusters, observer):
    lc = clusters(zk_single, profile="default")
    t = lc.spec.timing
    obs = observer(lc)
    holder = settle(lc)
    # exactly one holder, for a while, and ZooKeeper agrees with the claims
    for _ in range(10):
        assert lc.believed_holders(ROLE) == [holder]
        time.sleep(t.loop_s)
    first = lease(obs)
    assert (first.holder, first.term) == (holder, 1)
    assert len(acquisitions(lc)) == 1
    others = [n for n in lc.nodes if n != holder]
    for n in others:
        assert f"{n} store: wait (holder {holder} term 1" in log_text(lc, n)
    # the log's economy (agent/verdict_log.py): a standby's unchanged wait is logged once, then
    # at most every SUMMARY_S (it was every loop, ~5 lines/s); a return to it after another
    # verdict (a late renewal on a loaded machine) is a change and logged again
    elapsed = clock.now() - lc.t0
    for n in others:
        verdicts = [ln for ln in log_text(lc, n).splitlines()
                    if any(f" {n} store: {a.value} (" in ln for a in Action)]
        plain = [ln for ln in verdicts if f"store: wait (holder {holder} term 1, unchanged for " in ln]
        assert 1 <= len(plain) <= 1 + elapsed / SUMMARY_S + (len(verdicts) - len(plain)), verdicts

    bound = t.takeover_bound_s(1)
    takeovers = []
    with MarkerWatch(lc) as watch:
        for run in range(2):
            time.sleep(t.lease_s * 0.4 * (run + 1))  # a different phase of the renewal cycle each run
            watch.ignore.add(holder)  # a SIGKILLed agent leaves its command resource behind
            t_kill = lc.kill(holder)
            got = lc.wait_holder(ROLE, exclude=(holder,), timeout=10, after=t_kill)
            assert got is not None, "no takeover"
            new, t_new = got
            takeovers.append(t_new - t_kill)
            print(f"SIGKILL {holder} -> {new} holds after {t_new - t_kill:.3f}s (bound {bound:.2f}s + {SLACK_S}s slack)")
            assert t_new - t_kill <= bound + SLACK_S
            # the dead holder's deadline had passed when the new one acquired (per its own log)
            assert all(c.end <= t_new for c in lc.claims() if c.node == holder)
            assert lease(obs).holder == new
            lc.start(holder)  # the old holder rejoins as a candidate; the new holder keeps the role
            (lc.state_dir(holder) / "RUNNING").unlink(missing_ok=True)
            watch.ignore.discard(holder)
            holder = new
            settle(lc)
            assert single_holder(lc) == new
    watch.check()
    assert lease(obs).term == 3  # the fencing token rose with every acquisition
    assert_no_dual_holder(lc)
    print(f"takeovers: {', '.join(f'{x:.3f}' for x in takeovers)} s")


def test_sigterm_releases_at_once_and_the_next_takes_the_released_lease(zk_single, clusters, observer):
    lc = clusters(zk_single, profile="default")
    t = lc.spec.timing
    holder = settle(lc)
    with MarkerWatch(lc) as watch:
        t_term = clock.now()
        lc.signal(holder, signal.SIGTERM)
        got = lc.wait_holder(ROLE, exclude=(holder,), timeout=10, after=t_term)
        assert got is not None
        new, t_new = got
        print(f"SIGTERM {holder} -> {new} holds after {t_new - t_term:.3f}s (lease {t.lease_s}s)")
        assert t_new - t_term < t.lease_s / 2  # far less than waiting the lease out
        assert lc.procs[holder].wait(10) == 0
        time.sleep(t.loop_s * 2)
    watch.check()
    mine = events(lc, holder)
    assert mine[-1]["event"] == "released" and mine[-1]["t"] < t_new
    assert "released term 1 (agent stopping)" in log_text(lc, holder)
    assert f"{new} store: acquire (lease free; candidate rank 0)" in log_text(lc, new)
    # it left the membership, so `status` shows it down at once (not after the session timeout)
    st = json.loads(cli(lc, "status", "--json").stdout)
    assert st["members"][holder] is None and st["roles"][ROLE]["holder"] == new
    assert_no_dual_holder(lc)


# --------------------------------------------------------------------------- SIGSTOP


def freeze(lc: LocalCluster, holder: str, seconds: float) -> None:
    """SIGSTOP the holder for `seconds`, SIGCONT it, and check it demoted before anything else."""
    t = lc.spec.timing
    t_stop = clock.now()
    lc.signal(holder, signal.SIGSTOP)
    try:
        got = lc.wait_holder(ROLE, exclude=(holder,), timeout=10, after=t_stop)
        assert got is not None, "nobody took over from the frozen holder"
        new, t_new = got
        time.sleep(max(0.0, t_stop + seconds - clock.now()))
    finally:
        t_cont = clock.now()
        lc.signal(holder, signal.SIGCONT)
    print(f"SIGSTOP {holder} for {t_cont - t_stop:.2f}s; {new} took over after {t_new - t_stop:.3f}s")
    # after waking, the first thing the old holder records is its demotion, for an expired lease
    wait_for(lambda: [e for e in events(lc, holder) if e["t"] >= t_cont], 5, "the woken holder's first event")
    mine = events(lc, holder)
    before = [e for e in mine if e["t"] < t_stop]
    after = [e for e in mine if e["t"] >= t_cont]
    assert after[0]["event"] == "demoted" and "lease expired" in after[0]["reason"], after[:3]
    deadline = max(e["until"] for e in before if "until" in e)
    assert deadline < t_new, "the new holder acquired before the frozen holder's deadline"
    assert not [e for e in mine if e["event"] == "renewed" and e["t"] > deadline], "renewed after its deadline"
    assert not [e for e in after if e["event"] == "renewed" and e.get("term") == before[-1].get("term")]
    wait_for(lambda: not (lc.state_dir(holder) / "RUNNING").exists(), 2, "the woken holder to stop its resources")
    assert f"{holder} store: demoted from term {after[0]['term']} (lease expired" in log_text(lc, holder)
    assert lc.alive(holder)
    time.sleep(5 * t.loop_s)
    assert_no_dual_holder(lc)


def test_frozen_holder_demotes_before_anything_else_and_claims_never_overlap(zk_single, clusters, observer):
    lc = clusters(zk_single, profile="fast", session_timeout=2.0)
    t = lc.spec.timing
    holder = settle(lc)
    # frozen well past the lease, inside the ZooKeeper session: the session survives
    freeze(lc, holder, 4 * t.lease_s)
    # frozen past the session too: ZooKeeper expires it (and the member znode); the agent wakes,
    # demotes first, then rejoins with a new session
    holder = settle(lc)
    freeze(lc, holder, lc.spec.zookeeper.session_timeout_s + 1.0)
    obs = observer(lc)
    wait_for(lambda: holder in obs.snapshot([ROLE], timeout=5).members, 10, f"{holder} to rejoin the membership")
    assert "Session has expired" in log_text(lc, holder)  # the real thing, not a client-side fake
    assert single_holder(lc) is not None
    assert_no_dual_holder(lc)


def test_slow_and_failing_resource_starts_keep_one_holder_and_never_two_running(zk_single, clusters, observer):
    """A role whose start takes longer than the holder's validity (Postfix can) must still be held
    steadily, and a start that fails releases the role to the next node, which is then not
    retried on the failing node while it backs off."""
    from hacluster_lab.localcluster import spec_text

    text = spec_text(zk_single.hosts, 3, "default", f"slow{os.getpid()}").replace(
        'start: "echo $HACLUSTER_TOKEN > {state_dir}/RUNNING"',
        'start: "test {node} != node1 || exit 1; sleep 1.0; echo $HACLUSTER_TOKEN > {state_dir}/RUNNING"')
    assert "sleep 1.0" in text
    lc = clusters(zk_single, spec_text_=text, start=False)
    t = lc.spec.timing
    obs = observer(lc)
    with MarkerWatch(lc) as watch:
        lc.start_all()
        wait_for(lambda: [e for e in acquisitions(lc) if e["node"] != "node1"], 20, "a node other than node1 to hold")
        wait_for(lambda: watch.running(), 5, "the slow resource to run")
        time.sleep(4 * t.lease_s)
    watch.check()
    acq = acquisitions(lc)
    assert [e["node"] for e in acq if e["node"] == "node1"] in ([], ["node1"]), acq
    steady = [e for e in acq if e["node"] != "node1"]
    assert len(steady) == 1, f"the holder of a slow resource lost its lease while starting it: {acq}"
    holder = steady[0]["node"]
    print(f"acquisitions with a 1 s resource start (node1's start fails): {[(e['node'], e['term']) for e in acq]}")
    assert single_holder(lc) == holder and lease(obs).holder == holder and watch.running() == {holder}
    assert not [e for e in events(lc, holder) if e["event"] == "demoted"]
    if acq[0]["node"] == "node1":
        assert "resource marker failed to start" in log_text(lc, "node1")
        st = json.loads(cli(lc, "status", "--json").stdout)
        assert "resource start failed: store" in st["members"]["node1"]["reasons"]
    assert_no_dual_holder(lc)


# --------------------------------------------------------------------------- ZooKeeper trouble


def uncovered(claims_: list[Claim], start: float, end: float) -> float:
    """Seconds of [start, end] during which nobody held the role."""
    spans = sorted((max(c.start, start), min(c.end, end)) for c in claims_ if c.role == ROLE and c.end > start and c.start < end)
    gap, cur = 0.0, start
    for a, b in spans:
        if a > cur:
            gap += a - cur
        cur = max(cur, b)
    return gap + max(0.0, end - cur)


def test_zookeeper_leader_killed_back_to_one_holder_within_the_bound(zk_ensemble, clusters):
    lc = clusters(zk_ensemble, profile="default")
    t = lc.spec.timing
    holder = settle(lc, timeout=30)
    leader = zk_ensemble.leader_id()
    assert leader is not None
    with MarkerWatch(lc) as watch:
        t_kill = clock.now()
        zk_ensemble.stop_server(leader)
        t_zk = wait_for(lambda: zk_ensemble.leader_id() and clock.now(), 30, "a new ZooKeeper leader", 0.02)

        def steady_after_kill() -> float | None:
            h = single_holder(lc)
            if h is None:
                return None
            fresh = [e for e in events(lc, h) if e["t"] > t_zk and e["event"] in ("acquired", "renewed")]
            return clock.now() if fresh else None

        t_back = wait_for(steady_after_kill, 20, "one holder renewing again after the election")
        time.sleep(t.lease_s)
    watch.check()
    cl = lc.claims()
    gap = uncovered(cl, t_kill, t_back)
    moved = [c.node for c in cl if c.start > t_kill]
    bound = t.takeover_bound_s(1)
    print(f"zk{leader} (leader) killed: ZooKeeper re-elected in {t_zk - t_kill:.3f}s; one holder renewing after "
          f"{t_back - t_kill:.3f}s; role released for {gap:.3f}s; holder {holder} -> {moved or 'kept'}")
    assert t_back - t_zk <= bound + SLACK_S
    assert gap <= t_zk - t_kill + bound + SLACK_S
    assert single_holder(lc) is not None
    assert_no_dual_holder(lc)


def giveback_lag(text: str, node: str) -> float:
    """Seconds (the agent log's wall-clock stamps) from the agent's last reconnect before its last
    give-back of a late lease write to that give-back."""
    def stamp(ln: str) -> float:
        return datetime.strptime(ln[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()

    lines = text.splitlines()
    back = max(i for i, ln in enumerate(lines) if f"{node} store: late lease write given back" in ln)
    up = max(i for i, ln in enumerate(lines[:back]) if "Zookeeper connection established" in ln)
    return stamp(lines[back]) - stamp(lines[up])


def test_all_zookeeper_down_holder_releases_by_its_deadline_and_nobody_acquires(zk_single, clusters):
    lc = clusters(zk_single, profile="default")
    t = lc.spec.timing
    holder = settle(lc)
    with MarkerWatch(lc) as watch:
        t_down = clock.now()
        zk_single.stop_server(1)
        try:
            time.sleep(3 * t.lease_s)
            mine = [e for e in events(lc, holder)]
            deadline = max(e["until"] for e in mine if "until" in e and e["t"] < t_down + t.lease_s)
            demoted = [e for e in mine if e["event"] == "demoted" and e["t"] > t_down]
            assert demoted, "the holder never stopped acting as holder"
            assert "lease expired" in demoted[0]["reason"]
            # the guard thread demotes at the deadline (a few ms of scheduling at most)
            assert demoted[0]["t"] <= deadline + 0.1, (demoted[0]["t"] - deadline)
            assert deadline <= t_down + t.holder_validity_s + 0.01
            stopped = watch.last_seen.get(holder, 0.0)
            assert stopped <= deadline + t.stop_timeout_s, f"resource ran {stopped - deadline:.3f}s past the deadline"
            assert not acquisitions(lc, after=t_down), "someone acquired while ZooKeeper was down"
            assert lc.believed_holders(ROLE) == [] and watch.running() == set()
            print(f"ZooKeeper down: {holder} demoted {demoted[0]['t'] - t_down:.3f}s later "
                  f"(deadline {deadline - t_down:.3f}s), resource stopped {stopped - t_down:.3f}s later")
        finally:
            t_restart = clock.now()  # ZooKeeper serves nobody before this: the outage lasted at least until here
            zk_single.start_server(1)
            zk_single.wait_serving(60)
        new = wait_for(lambda: single_holder(lc), 20, "a holder once ZooKeeper is back")
        t_new = acquisitions(lc, after=t_down)[0]["t"]
        print(f"ZooKeeper restarted after {t_restart - t_down:.2f}s: {new} holds {t_new - t_restart:.3f}s later")
        # no write made during the outage extends the lease after it. Either none landed: the
        # lease the new holder took was unchanged since before the outage; or one did (kazoo sent
        # a request queued in the instant the connection broke, or ZooKeeper applied it and died
        # before answering): then the node it names gave it back in its first loop after
        # reconnecting, and the new holder took a free lease instead of waiting a lease out
        line = [ln for ln in log_text(lc, new).splitlines() if f"{new} store: acquire (" in ln][-1]
        if "unchanged for " in line:
            unchanged = float(line.split("unchanged for ")[1].split("s")[0])
            assert unchanged >= t_restart - t_down, line  # a version written after t_restart: waited for
        else:
            assert "(lease free;" in line, line
            gave = [e for e in events(lc, holder) if e["event"] == "gave-back" and e["t"] > t_down]
            assert gave and gave[-1]["written"], f"a lease free after the outage, but {holder} gave nothing back"
            assert t_new - gave[-1]["t"] < t.lease_s / 2
            lag = giveback_lag(log_text(lc, holder), holder)
            print(f"a write of the outage landed after it: {holder} gave it back {lag:.3f}s after reconnecting")
            assert lag <= t.loop_s + SLACK_S, f"{holder} gave the late write back only {lag:.3f}s after reconnecting"
        time.sleep(t.lease_s)
    watch.check()
    assert all(p.poll() is None for p in lc.procs.values())
    assert_no_dual_holder(lc)


def zk_signal(zk: ZooKeeperEnsemble, sid: int, sig: int) -> None:
    """Signal one ZooKeeper server's process group (SIGSTOP freezes the JVM: its kernel still
    accepts and ACKs our requests, so clients stay connected and their requests wait in it)."""
    pid = int((zk.server_dir(sid) / "zk.pid").read_text().split()[0])
    os.killpg(pid, sig)


def test_renewal_applied_after_the_holder_demoted_is_given_back_at_once(zk_single, clusters, observer):
    """ZooKeeper frozen with renewals of the holder in flight: the holder demotes at its deadline;
    when ZooKeeper resumes, the first of those renewals is applied, so the lease names a node that
    holds nothing, at a version nobody has waited out. That node gives it back (resources already
    stopped, then a CAS release on exactly that version), so the role is placed again at once --
    without it every candidate waits a whole lease_s from the late version."""
    lc = clusters(zk_single, profile="default")
    t = lc.spec.timing
    holder = settle(lc)
    obs = observer(lc)
    before = lease(obs)
    with MarkerWatch(lc) as watch:
        t_stop = clock.now()
        zk_signal(zk_single, 1, signal.SIGSTOP)
        try:
            # frozen past the holder's deadline (it renews every loop until then: those renewals
            # wait in ZooKeeper), well inside the 4 s session timeout
            wait_for(lambda: [e for e in events(lc, holder) if e["event"] == "demoted" and e["t"] > t_stop],
                     3 * t.lease_s, "the holder to demote at its deadline")
            time.sleep(0.3)
            assert watch.running() == set() and lc.believed_holders(ROLE) == []
        finally:
            t_cont = clock.now()
            zk_signal(zk_single, 1, signal.SIGCONT)
        got = lc.wait_holder(ROLE, timeout=10, after=t_cont)
        assert got is not None, "nobody took the role after ZooKeeper resumed"
        new, t_new = got
        time.sleep(t.lease_s)
    watch.check()
    acq = [ln for ln in log_text(lc, new).splitlines() if f"{new} store: acquire (" in ln][-1]
    gave = [e for e in events(lc, holder) if e["event"] == "gave-back" and e["t"] > t_cont]
    print(f"ZooKeeper frozen {t_cont - t_stop:.2f}s: {holder} gave back "
          f"{[(e['version'], round(e['t'] - t_cont, 3)) for e in gave]} (version, s after the resume); "
          f"{new} holds {t_new - t_cont:.3f}s after the resume: {acq.split(' store: ')[-1]}")
    assert gave, "no renewal landed late (or it was not given back): see the holder's log"
    assert gave[0]["term"] == before.term and gave[0]["version"] > before.version and gave[0]["written"], gave
    # the new holder took a free lease, not the late version waited out for lease_s
    assert "(lease free;" in acq, acq
    assert t_new - t_cont < t.lease_s, f"the others waited {t_new - t_cont:.3f}s for the late renewal"
    after = lease(obs)
    assert (after.holder, after.term) == (new, before.term + 1)
    # the give-back is a CAS on the late version: replayed now, it changes nothing
    assert obs.release(ROLE, before.term, gave[0]["version"], None) is False
    assert lease(obs)[:3] == after[:3]  # still the new holder's lease (its renewals go on)
    assert_no_dual_holder(lc)


def test_holder_rides_out_a_zookeeper_stall_of_stall_s_over_its_renewal(zk_single, clusters):
    """ZooKeeper frozen for timing.stall_s (0.5 s on the default profile: the longest pause of
    `bench false-failover --load zk-gc`) from just before the holder's renewal falls due: the
    renewal waits in the frozen server and times out, the retry a loop later too; when ZooKeeper
    resumes the first lands (Adopted: no extension) and is sent again at once, acknowledged before
    the deadline. The holder keeps its term throughout, nobody else acquires. (The lease 1 s
    default renewed every 0.35 s with 0.35 s of room behind it: a 0.5 s stall there cost the lease.)"""
    lc = clusters(zk_single, profile="default")
    t = lc.spec.timing
    holder = settle(lc)
    caught: list[float] = []
    with MarkerWatch(lc) as watch:
        for _ in range(6):
            if len(caught) >= 2:
                break
            # send times of the acknowledged renewals: each `renewed` claim's deadline minus the validity
            last = max(e["until"] - t.holder_validity_s for e in events(lc, holder) if e["event"] == "renewed")
            due = last + t.renew_s
            time.sleep(max(0.0, due - 0.05 - clock.now()))  # the stall starts just before the renewal is due
            t_stop = clock.now()
            zk_signal(zk_single, 1, signal.SIGSTOP)
            try:
                time.sleep(t.stall_s)
            finally:
                t_cont = clock.now()
                zk_signal(zk_single, 1, signal.SIGCONT)
            wait_for(lambda resumed=t_cont: any(e["until"] - t.holder_validity_s > resumed for e in events(lc, holder)
                                                if e["event"] == "renewed"), 3 * t.lease_s, "a renewal sent after the stall")
            after = sorted(e["until"] - t.holder_validity_s for e in events(lc, holder)
                           if e["event"] == "renewed" and e["until"] - t.holder_validity_s > last)
            # the stall caught a renewal in flight when no renewal was sent (and acknowledged) inside it
            if after and after[0] >= t_cont - 0.01 and t_stop <= due + 0.01:
                caught.append(after[0] - (t_cont - t.stall_s))
            print(f"stall {t_cont - t_stop:.3f}s from {t_stop - due:+.3f}s of the due renewal; "
                  f"next acknowledged renewal sent {after[0] - t_cont:+.3f}s after the resume")
    watch.check()
    assert len(caught) >= 2, f"the stalls did not catch a renewal in flight ({caught}): the test proved nothing"
    evs = events(lc, holder)
    assert [e for e in evs if e["event"] == "demoted"] == [], "the holder lost its lease to a stall"
    assert len(acquisitions(lc)) == 1 and lc.believed_holders(ROLE) == [holder]
    assert_no_dual_holder(lc)


# --------------------------------------------------------------------------- operator CLI


def test_operator_switchover_failover_maintenance_through_the_cli(zk_single, clusters, observer):
    lc = clusters(zk_single, profile="default")
    t = lc.spec.timing
    obs = observer(lc)
    # (while the agents elect) ZooKeeper unreachable: one clear line, exit 1, no traceback
    dead = lc.dir / "dead-zk.yml"
    dead.write_text(lc.spec_path.read_text().replace(f"127.0.0.1:{zk_single.servers[0].client_port}",
                                                     f"127.0.0.1:{ZK_PORT_BASE + 6}"))
    res = subprocess.run([sys.executable, "-m", "hacluster", "status", "--config", str(dead)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stdout == "", res
    assert res.stderr.startswith("hacluster: cannot reach ZooKeeper") and f"127.0.0.1:{ZK_PORT_BASE + 6}" in res.stderr \
        and res.stderr.count("\n") == 1, res.stderr
    holder = settle(lc)
    a, b = [n for n in lc.nodes if n != holder]

    res = cli(lc, "status", "--json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["roles"][ROLE]["holder"] == holder and st["roles"][ROLE]["term"] == 1 and st["maintenance"] is False
    assert all(st["members"][n]["healthy"] for n in lc.nodes)
    res = cli(lc, "status")
    assert res.returncode == 0 and holder in res.stdout and "healthy" in res.stdout

    # graceful switchover: released with a hand-off, taken at once by the target
    res = cli(lc, "switchover", ROLE, "--yes", "--to", a)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{ROLE}: {holder} -> {a} in "), res.stdout
    took = float(res.stdout.split(" in ")[1].rstrip("s\n"))
    assert took < t.lease_s, "a switchover must not wait a lease out"
    released = [e for e in events(lc, holder) if e["event"] == "released"]
    assert released and lease(obs).holder == a
    holder, a = a, holder

    # refusals: unknown target (usage error, 2), unhealthy target (failed expectation, 1), nothing changes
    res = cli(lc, "switchover", ROLE, "--yes", "--to", "node9")
    assert res.returncode == 2 and "unknown node 'node9' (nodes: node1, node2, node3)" in res.stderr, res.stderr
    res = cli(lc, "switchover", "nosuchrole")
    assert res.returncode == 2 and "unknown role 'nosuchrole'" in res.stderr
    (lc.state_dir(b) / "standby").touch()
    wait_for(lambda: not json.loads(cli(lc, "status", "--json").stdout)["members"][b]["healthy"], 10, f"{b} standby")
    res = cli(lc, "switchover", ROLE, "--yes", "--to", b)
    assert res.returncode == 1 and f"{b} is not healthy (standby)" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    (lc.state_dir(b) / "standby").unlink()
    wait_for(lambda: json.loads(cli(lc, "status", "--json").stdout)["members"][b]["healthy"], 10, f"{b} healthy")
    res = cli(lc, "failover", ROLE, "--yes", "--to", b)
    assert res.returncode == 1 and f"{holder} holds {ROLE} and is healthy" in res.stderr, res.stderr
    assert lease(obs).holder == holder

    # maintenance: holders keep their roles, nobody takes over, switchover is refused ...
    res = cli(lc, "maintenance", "on")
    assert (res.returncode, res.stdout) == (0, "maintenance on\n"), res.stderr
    assert json.loads(cli(lc, "status", "--json").stdout)["maintenance"] is True
    res = cli(lc, "switchover", ROLE, "--yes", "--to", b)
    assert res.returncode == 1 and "maintenance mode" in res.stderr
    t_kill = lc.kill(holder)
    time.sleep(t.lease_s + t.takeover_bound_s(2) + SLACK_S)
    assert acquisitions(lc, after=t_kill) == [], "a node acquired in maintenance mode"
    assert lease(obs).holder == holder  # the dead holder's lease stays, nobody placed a new one
    # ... but an operator's failover places the role, once the dead holder's agent is seen gone
    # (its member znode expired with its session, or its paced heartbeat went stale: up to
    # heartbeat_stale_s, longer than the wait above)
    def holder_gone() -> bool:
        m = obs.snapshot([ROLE], timeout=5.0).members.get(holder)
        return m is None or (m.heartbeat_age_s or 0.0) > t.heartbeat_stale_s
    wait_for(holder_gone, t.heartbeat_stale_s + 15, f"{holder}'s agent seen gone")
    res = cli(lc, "failover", ROLE, "--yes", "--to", b)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{ROLE}: {holder} -> {b} in "), res.stdout
    assert [e["node"] for e in acquisitions(lc, after=t_kill)] == [b]
    res = cli(lc, "maintenance", "off")
    assert (res.returncode, res.stdout) == (0, "maintenance off\n")
    lc.start(holder)
    time.sleep(3 * t.lease_s)
    assert single_holder(lc) == b and lease(obs).holder == b  # no flapping back to the returning node
    assert json.loads(cli(lc, "status", "--json").stdout)["roles"][ROLE]["request"] is None  # done, cleared

    res = cli(lc, "history", "--json")
    assert res.returncode == 0
    hist = json.loads(res.stdout)["history"]
    kinds = [h["event"] for h in hist]
    for want in ("acquired", "released", "switchover-requested", "failover-requested", "maintenance-on", "maintenance-off"):
        assert want in kinds, kinds
    assert [h["seq"] for h in hist] == sorted(h["seq"] for h in hist)
    res = cli(lc, "history")
    assert res.returncode == 0 and "failover-requested" in res.stdout
    assert_no_dual_holder(lc)


# --------------------------------------------------------------------------- malformed znodes


def test_malformed_znodes_are_ignored_with_a_log_line(zk_single, clusters, observer, zk_client_factory):
    lc = clusters(zk_single, profile="default", start=False)
    t = lc.spec.timing
    obs = observer(lc)
    p = obs.paths
    rogue = zk_client_factory(zk_single)
    # the lowest-priority node holds, so the best-ranked candidate is someone else: a scribbled
    # lease read as "free" would let it take the role at once while node3 still acts as holder
    lc.start("node3")
    wait_for(lambda: single_holder(lc) == "node3", 20, "node3 to hold")
    lc.start("node1")
    lc.start("node2")
    settle(lc)

    with MarkerWatch(lc) as watch:
        # members: garbage, an unknown node claiming top priority, a real node's znode scribbled on
        rogue.create(p.member("zz-rogue"), b"\x00\xffnot json")
        rogue.create(p.member("node9"), json.dumps({"tier": "store", "priority": 1000, "healthy": True}).encode())
        rogue.set(p.member("node1"), b"[1, 2, 3]")
        # requests that must not move anything
        for raw in (b"\xff\xfe", json.dumps({"kind": "switchover", "to": 42, "at": time.time()}).encode(),
                    json.dumps({"kind": "switchover", "to": "node1"}).encode()):
            if rogue.exists(p.request(ROLE)):
                rogue.set(p.request(ROLE), raw)
            else:
                rogue.create(p.request(ROLE), raw)
            time.sleep(3 * t.loop_s)
        time.sleep(t.lease_s)
        assert single_holder(lc) == "node3" and lease(obs).term == 1, "a malformed request moved the role"
        rogue.delete(p.request(ROLE))

        # the maintenance flag is its presence; its content is not read
        rogue.create(p.maintenance, b"\x00garbage")
        wait_for(lambda: "node1 store: wait (maintenance mode" in log_text(lc, "node1"), 5, "maintenance seen")
        rogue.delete(p.maintenance)

        # the lease: every kind of garbage (and a deletion) is waited out like a silent holder
        terms = [1]
        for raw in (b"\xff\xfe garbage", b"{}", json.dumps({"holder": 7, "term": "x"}).encode(), b"[]",
                    json.dumps({"holder": None, "term": 99}).encode(), None):
            t_w = clock.now()
            if raw is None:
                rogue.delete(p.lease(ROLE))
            else:
                rogue.set(p.lease(ROLE), raw)
            new = wait_for(partial(acquisitions, lc, after=t_w), 10, f"a holder after writing {raw!r}")[0]
            assert new["t"] - t_w >= t.lease_s - 0.05, f"{raw!r} was not waited out: taken after {new['t'] - t_w:.3f}s"
            terms.append(new["term"])
            settle(lc)
        print(f"terms across scribbled leases: {terms}")
    watch.check()
    assert terms == sorted(terms) and len(set(terms)) == len(terms), f"the fencing token went backwards: {terms}"
    assert terms[-1] > 99 > terms[0], terms  # a scribbled term 99 is still honoured as a floor

    # history entries someone else scribbled are skipped by `hacluster history`, not a traceback
    for raw in (b"\xff", b"[]", json.dumps({"at": "noon", "node": [1]}).encode(), json.dumps({"at": 1, "event": {}}).encode()):
        rogue.create(p.history + "/h-", raw, sequence=True)
    rogue.create(p.history + "/zz", b"{}")
    for args in (("history",), ("history", "--json")):
        res = cli(lc, *args)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert "acquired" in res.stdout and "noon" not in res.stdout

    for n in lc.nodes:
        assert lc.alive(n), f"{n} died"
        text = log_text(lc, n)
        assert "Traceback" not in text
        assert "ignoring malformed lease of role store" in text
        assert "ignoring malformed request for role store" in text
        assert "ignoring malformed member zz-rogue" in text
        assert "ignoring malformed member node9: not a node of the cluster spec" in text
    assert_no_dual_holder(lc)


@pytest.fixture
def lease_writer(zk_single, clusters, zk_client_factory) -> Iterator[tuple[Coordinator, Any, str]]:
    """node2's Coordinator on its own (no agents), a plain kazoo client as the rogue writer, and
    the role's lease path."""
    me = clusters(zk_single, start=False).coordinator("node2")
    try:
        yield me, zk_client_factory(zk_single), me.paths.lease(ROLE)
    finally:
        me.stop()


def test_acquire_is_a_cas_on_exactly_the_write_that_was_waited_out(lease_writer):
    """Coordinator.acquire directly (no agents): the version alone is not the identity of a
    write -- a deleted and re-created lease restarts at version 0 -- and the fencing token keeps
    rising over scribbled leases."""
    from hacluster.coord.model import encode_lease

    me, rogue, path = lease_writer
    rogue.create(path, encode_lease("node1", 7, 0), makepath=True)
    seen = me.snapshot([ROLE]).leases[ROLE]
    assert (seen.holder, seen.term, seen.version) == ("node1", 7, 0)
    rogue.delete(path)
    rogue.create(path, encode_lease("node1", 7, 0))  # same content, same version 0, another write
    assert me.acquire(ROLE, seen) == Lost()
    seen = me.snapshot([ROLE]).leases[ROLE]
    got = me.acquire(ROLE, seen)
    assert isinstance(got, Acquired) and got.term == 8
    rogue.set(path, b"\x00 scribbled")
    seen = me.snapshot([ROLE]).leases[ROLE]
    assert seen.holder == "?"
    got = me.acquire(ROLE, seen)
    assert isinstance(got, Acquired) and got.term == 9  # not 1: the token never goes back
    stale = seen
    assert me.acquire(ROLE, stale) == Lost()  # our own write since: the CAS refuses the old view


def test_renew_answers_one_typed_outcome_per_case(lease_writer):
    """Coordinator.renew on real ZooKeeper, one row per outcome (coord/outcome.py): our CAS lands
    (Renewed, sent before the ack); the CAS fails but the znode names us at our term (Adopted: an
    earlier renewal of ours landed); another writer's lease (Lost); no lease znode, or no session
    (Unreachable: nothing known, try again)."""
    from hacluster.coord.model import encode_lease

    me, rogue, path = lease_writer
    rogue.create(path, encode_lease("node1", 4, 0), makepath=True)
    got = me.acquire(ROLE, me.snapshot([ROLE]).leases[ROLE])
    assert isinstance(got, Acquired) and got.term == 5
    before = clock.now()
    rows = [("renewed", lambda: None, lambda: me.renew(ROLE, 5, 1, got.version)),
            ("adopted", lambda: None, lambda: me.renew(ROLE, 5, 2, got.version)),  # stale version, our write
            ("lost", lambda: rogue.set(path, encode_lease("node1", 6, 0)), lambda: me.renew(ROLE, 5, 3, got.version)),
            ("no znode", lambda: rogue.delete(path), lambda: me.renew(ROLE, 5, 3, got.version)),
            ("no session", me.stop, lambda: me.renew(ROLE, 5, 3, 0))]
    out = {}
    for name, setup, call in rows:
        setup()
        out[name] = call()
    renewed = out["renewed"]
    assert isinstance(renewed, Renewed) and renewed.version == got.version + 1, out
    assert before <= renewed.t_send <= clock.now()
    assert out["adopted"] == Adopted(got.version + 1), out
    assert out["lost"] == Lost(), out
    assert isinstance(out["no znode"], Unreachable) and "NoNode" in out["no znode"].reason, out
    assert out["no session"] == Unreachable("writes held back"), out


# --------------------------------------------------------------------------- REST API


def http(url: str, method: str = "GET", body: bytes | None = None, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def raw_post(host: str, port: int, path: str, body: bytes, length: str, token: str) -> tuple[int, str]:
    """A POST with a Content-Length of our choosing (urllib would compute the right one)."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Length", length)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        conn.send(body)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def test_rest_api(zk_single, clusters, observer):
    lc = clusters(zk_single, profile="default", start=False, api=True, api_port_base=API_PORT_BASE)
    t = lc.spec.timing
    obs = observer(lc)
    token = "s3cret-token"
    for n in ("node1", "node2"):  # node3 has no token: its write endpoints are off
        lc.state_dir(n).mkdir(parents=True, exist_ok=True)
        (lc.state_dir(n) / "api.token").write_text(token + "\n")
    lc.start_all()
    holder = settle(lc)
    wait_for(lambda: all(http(lc.api_url(n, "/status"))[0] == 200 for n in lc.nodes), 10, "every API up")

    for n in lc.nodes:
        code, body = http(lc.api_url(n, "/status"))
        st = json.loads(body)
        assert code == 200 and st["node"] == n and st["zookeeper"] == "connected" and st["healthy"] is True
        assert st["roles"][ROLE]["held"] is (n == holder)
        code, body = http(lc.api_url(n, "/health"))
        assert code == 200 and json.loads(body) == {"healthy": True, "reasons": []}
        for path in ("/leader", f"/leader/{ROLE}"):
            code, body = http(lc.api_url(n, path))
            assert code == (200 if n == holder else 503), (n, path, code)
            assert json.loads(body) == {"node": n, "holds": [ROLE] if n == holder else []}
        assert http(lc.api_url(n, "/leader/nope"))[0] == 404
        assert http(lc.api_url(n, "/nope"))[0] == 404
        code, metrics = http(lc.api_url(n, "/metrics"))
        assert code == 200
        assert f'hacluster_role_held{{role="{ROLE}"}} {1.0 if n == holder else 0.0}' in metrics
        assert "hacluster_loop_duration_seconds_count" in metrics and "hacluster_node_healthy 1.0" in metrics
        assert f'hacluster_transitions_total{{event="acquired",role="{ROLE}"}} {1.0 if n == holder else 0.0}' in metrics
    code, metrics = http(lc.api_url(holder, "/metrics"))
    remaining = float(metrics.split("hacluster_lease_remaining_seconds{role=\"store\"} ")[1].split()[0])
    assert 0 < remaining <= t.holder_validity_s

    # an unhealthy node answers 503 on /health
    standby = next(n for n in lc.nodes if n != holder)
    (lc.state_dir(standby) / "standby").touch()
    wait_for(lambda: http(lc.api_url(standby, "/health"))[0] == 503, 5, "/health 503 in standby")
    assert json.loads(http(lc.api_url(standby, "/health"))[1])["reasons"] == ["standby"]
    (lc.state_dir(standby) / "standby").unlink()
    wait_for(lambda: http(lc.api_url(standby, "/health"))[0] == 200, 5, "/health 200 again")

    target = next(n for n in ("node1", "node2", "node3") if n != holder)
    url = lc.api_url("node1", "/switchover")
    good = json.dumps({"role": ROLE, "to": target}).encode()
    assert http(url, "POST", good)[0] == 401
    assert http(url, "POST", good, token="wrong")[0] == 401
    assert http(lc.api_url("node3", "/switchover"), "POST", good, token=token)[0] == 403
    code, body = http(url, "POST", b"{not json", token=token)
    assert code == 400 and "not valid JSON" in json.loads(body)["error"]
    code, body = http(url, "POST", b'["store"]', token=token)
    assert code == 400
    code, body = http(url, "POST", json.dumps({"role": ROLE, "to": target, "force": True}).encode(), token=token)
    assert code == 400 and json.loads(body)["field"] == "force" and "unknown field" in json.loads(body)["error"]
    for length in ("-1", "99999999", "x"):
        code, body = raw_post(lc.spec.nodes["node1"].address, lc.api_port("node1"), "/switchover", b"{}", length, token)
        assert code == 400 and "error" in json.loads(body), (length, code, body)
    code, body = http(url, "POST", json.dumps({"role": ROLE, "to": 5}).encode(), token=token)
    assert code == 400 and json.loads(body)["field"] == "to"
    code, body = http(url, "POST", json.dumps({"role": ROLE, "to": "node9"}).encode(), token=token)
    assert code == 400 and "unknown node 'node9'" in json.loads(body)["error"]
    assert lease(obs).holder == holder  # nothing above changed anything

    code, body = http(url, "POST", good, token=token)
    assert code == 202 and json.loads(body) == {"accepted": True, "role": ROLE, "to": target}
    wait_for(lambda: lease(obs).holder == target, 5, f"the switchover to {target}")
    wait_for(lambda: http(lc.api_url(target, "/leader"))[0] == 200, 5, "/leader on the new holder")
    assert http(lc.api_url(holder, "/leader"))[0] == 503
    code, body = http(url, "POST", good, token=token)  # already there: refused, not an input error
    assert code == 409 and "already holds" in json.loads(body)["error"]
    assert_no_dual_holder(lc)
