"""The VIP resource in real network namespaces (root): holder and peer hosts bridged to a router.

Each test builds its own segment (router ns with br0, holder = store1 .11, peer = store2 .12,
as in the embedded lab spec) and runs the resource in a child python inside the host's
namespace, like the agent. Checks are made where they matter: the router's neighbour table,
a tcpdump capture on the router's bridge, the host's addresses, and the guard process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hacluster.spec import default_spec_text

from .netns import Capture, Driver, Segment, addrs, nsrun, neigh_mac, pid_alive, remove_stale, run, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

VIP4, VIP6 = "198.51.100.20", "fd00:51::20"


@pytest.fixture(scope="module", autouse=True)
def _no_leftovers() -> Iterator[None]:
    remove_stale()
    yield
    remove_stale()


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment()
    try:
        s.up()
        s.add_host("store1", 11)
        s.add_host("store2", 12)
        yield s
    finally:
        s.down()


@pytest.fixture
def driver(seg: Segment, tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    made: list[Driver] = []

    def make(node: str, **params: object) -> Driver:
        d = Driver(seg.hosts[node].ns, node, tmp_path, **params)
        made.append(d)
        return d

    try:
        yield make
    finally:
        for d in made:
            d.close()


def _hold_by_hand(seg: Segment, node: str) -> None:
    """Configure the VIPs on a host without our resource (a rogue / a stale holder)."""
    ns = seg.hosts[node].ns
    run("ip", "-n", ns, "addr", "add", f"{VIP4}/24", "dev", "eth0")
    run("ip", "-n", ns, "addr", "add", f"{VIP6}/64", "dev", "eth0", "nodad")


def _drop_by_hand(seg: Segment, node: str) -> None:
    ns = seg.hosts[node].ns
    run("ip", "-n", ns, "addr", "del", f"{VIP4}/24", "dev", "eth0", check=False)
    run("ip", "-n", ns, "addr", "del", f"{VIP6}/64", "dev", "eth0", check=False)


def _arp_from(pkts: list, mac: str) -> list:
    from scapy.layers.l2 import ARP, Ether

    return [p for p in pkts if ARP in p and p[Ether].src == mac]


# --------------------------------------------------------------------------- moves


def test_start_updates_primed_router_entry_and_is_fast(seg: Segment, driver: Callable[..., Driver]) -> None:
    holder, peer = seg.hosts["store1"], seg.hosts["store2"]
    # prime the router: it has a (reachable) entry for the VIP pointing at the peer
    _hold_by_hand(seg, "store2")
    assert seg.ping(VIP4) and seg.ping(VIP6)
    assert neigh_mac(seg.router, VIP4) == peer.mac
    _drop_by_hand(seg, "store2")

    d = driver("store1")
    out = d.call("start")
    assert out["rc"] == 0
    assert {VIP4, VIP6} <= addrs(holder.ns)
    took = wait_for(lambda: neigh_mac(seg.router, VIP4) == holder.mac and neigh_mac(seg.router, VIP6) == holder.mac, 0.5)
    assert took is not None, (neigh_mac(seg.router, VIP4), neigh_mac(seg.router, VIP6), holder.mac)
    t = out["status"]["last_start"]
    print(f"\nstart(): dad {t['dad_s'] * 1e3:.1f} ms, configured +{(t['configured_s'] - t['dad_s']) * 1e3:.2f} ms, "
          f"first announcement +{(t['first_garp_s'] - t['dad_s']) * 1e3:.2f} ms after the duplicate-address wait")
    assert 0.075 <= t["dad_s"] < 0.175  # the default 75 ms wait, plus scheduling
    assert t["configured_s"] - t["dad_s"] < 0.01  # add both addresses: a few ms at most
    assert t["first_garp_s"] - t["configured_s"] < 0.005  # the announcement follows at once
    assert d.call("monitor")["rc"] == 0

    assert d.call("stop")["rc"] == 0
    assert not {VIP4, VIP6} & addrs(holder.ns)
    assert d.call("monitor")["rc"] == 7  # NOT_RUNNING
    assert d.call("stop")["rc"] == 0  # idempotent
    assert d.call("start")["rc"] == 0 and d.call("start")["rc"] == 0  # idempotent too


def test_move_to_peer_router_follows_with_both_arp_forms_in_a_burst(
        seg: Segment, driver: Callable[..., Driver], tmp_path: Path) -> None:
    from scapy.layers.l2 import ARP

    holder, peer = seg.hosts["store1"], seg.hosts["store2"]
    a, b = driver("store1"), driver("store2")
    assert a.call("start")["rc"] == 0
    assert seg.ping(VIP4)
    assert neigh_mac(seg.router, VIP4) == holder.mac
    cap = Capture(seg.router, "br0", "arp", tmp_path)
    try:
        assert a.call("stop")["rc"] == 0
        assert b.call("start")["rc"] == 0
        # the entry was just confirmed reachable: only a gratuitous ARP moves it this fast
        assert wait_for(lambda: neigh_mac(seg.router, VIP4) == peer.mac, 0.2) is not None
        time.sleep(2.4)  # the rest of the burst (+1.05 s, +2.1 s)
    finally:
        pkts = cap.read()
    arp = _arp_from(pkts, peer.mac)
    announce = [p for p in arp if p[ARP].psrc == VIP4 and p[ARP].pdst == VIP4]
    requests = [p for p in announce if p[ARP].op == 1]
    replies = [p for p in announce if p[ARP].op == 2]
    assert len(requests) == 3 and len(replies) == 3, [p.summary() for p in arp]
    assert all(p[ARP].hwsrc == peer.mac and p.dst == "ff:ff:ff:ff:ff:ff" for p in announce)
    assert all(p[ARP].hwdst == peer.mac for p in replies)
    span = float(requests[-1].time - requests[0].time)
    print(f"\nburst on the wire: {len(announce)} frames over {span:.3f} s")
    assert span > 1.0 and span == pytest.approx(2.1, abs=0.2)  # outlasts the 1 s locktime
    # the duplicate-address probe (sender 0.0.0.0) went out before the first announcement
    probes = [p for p in arp if p[ARP].psrc == "0.0.0.0" and p[ARP].pdst == VIP4]
    assert probes and probes[0].time <= announce[0].time


def test_ipv6_unsolicited_na_moves_router_entry(seg: Segment, driver: Callable[..., Driver], tmp_path: Path) -> None:
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr

    holder, peer = seg.hosts["store1"], seg.hosts["store2"]
    a, b = driver("store1"), driver("store2")
    assert a.call("start")["rc"] == 0
    assert seg.ping(VIP6)
    assert neigh_mac(seg.router, VIP6) == holder.mac
    cap = Capture(seg.router, "br0", "icmp6", tmp_path)
    try:
        assert a.call("stop")["rc"] == 0
        assert b.call("start")["rc"] == 0
        assert wait_for(lambda: neigh_mac(seg.router, VIP6) == peer.mac, 0.2) is not None
        time.sleep(0.2)
    finally:
        pkts = cap.read()
    nas = [p for p in pkts if ICMPv6ND_NA in p and p[ICMPv6ND_NA].tgt == VIP6 and p.src == peer.mac and p.dst == "33:33:00:00:00:01"]
    assert nas, [p.summary() for p in pkts]
    na = nas[0][ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 0, 1)
    assert nas[0][ICMPv6NDOptDstLLAddr].lladdr == peer.mac


def test_refresh_stops_at_the_lease_deadline(seg: Segment, driver: Callable[..., Driver], tmp_path: Path) -> None:
    """A holder whose lease ran out (here: no guard, so the address stays) never announces again."""
    from scapy.layers.l2 import ARP

    holder = seg.hosts["store1"]
    d = driver("store1", guard=False, garp_count=1, refresh_s=0.25)
    cap = Capture(seg.router, "br0", "arp", tmp_path)
    try:
        until = d.call("extend", **{"in": 1.0})["until"]
        assert d.call("start")["rc"] == 0
        time.sleep(1.6)
        status = d.call("status")
    finally:
        pkts = cap.read()
    times = [float(p.time) for p in _arp_from(pkts, holder.mac) if p[ARP].psrc == VIP4 and p[ARP].op == 1]
    assert 3 <= len(times) <= 5, times  # at start, then every 0.25 s until the deadline
    assert times[-1] - times[0] < 1.0 and status["announced"] == len(times)
    assert "lease deadline passed: not announcing" in d.log_text()
    assert until < time.clock_gettime(time.CLOCK_BOOTTIME)


def test_start_refuses_when_the_lease_runs_out_during_the_check(seg: Segment, driver: Callable[..., Driver]) -> None:
    d = driver("store1", dad_timeout_s=0.2)
    d.call("extend", **{"in": 0.05})
    assert d.call("start")["rc"] == 1
    assert not {VIP4, VIP6} & addrs(seg.hosts["store1"].ns)
    assert "lease ran out" in d.log_text()


def test_probe_sent_ahead_lets_start_add_at_once(seg: Segment, driver: Callable[..., Driver]) -> None:
    """prepare() (the agent calls it probe_lead_s before its takeover) sends the probe; start()
    after the probe window adds the VIP without waiting, with the guard spawned meanwhile."""
    holder = seg.hosts["store1"]
    d = driver("store1")
    assert d.call("prepare")["call_s"] < 0.05  # returns at once: the probe runs in a thread
    time.sleep(0.15)
    out = d.call("start")
    assert out["rc"] == 0, d.log_text()
    t = out["status"]["last_start"]
    print(f"\nstart() after prepare(): dad {t['dad_s'] * 1e3:.1f} ms, configured {t['configured_s'] * 1e3:.1f} ms")
    assert t["probed_ahead"] is True
    assert t["dad_s"] < 0.03 and t["configured_s"] < 0.04
    assert out["status"]["guard_pid"] is not None
    assert {VIP4, VIP6} <= addrs(holder.ns)
    assert d.call("stop")["rc"] == 0
    # a start without prepare() waits the whole window again
    t2 = d.call("start")["status"]["last_start"]
    assert t2["probed_ahead"] is False and t2["dad_s"] >= 0.075


def test_start_soon_after_prepare_waits_the_rest_of_the_window(seg: Segment, driver: Callable[..., Driver]) -> None:
    d = driver("store1", dad_timeout_s=0.2)
    d.call("prepare")
    time.sleep(0.05)
    t = d.call("start")["status"]["last_start"]
    assert t["probed_ahead"] is True
    assert 0.1 <= t["dad_s"] < 0.2  # ~0.15 s left of the 0.2 s window


def test_probe_ahead_then_a_holder_appears_before_start_refused(seg: Segment, driver: Callable[..., Driver]) -> None:
    """The listener runs from prepare() to start(): a host that takes the VIP in between (here a
    misconfigured peer that skips every check) is seen, start() checks afresh and refuses."""
    peer = seg.hosts["store2"]
    d = driver("store1")
    d.call("prepare")
    time.sleep(0.15)  # past the first window: a plain check would have finished already
    rogue = driver("store2", dad_timeout_s=0, guard=False, garp_count=1)
    assert rogue.call("start")["rc"] == 0
    time.sleep(0.05)
    out = d.call("start")
    assert out["rc"] == 1
    assert not {VIP4, VIP6} & addrs(seg.hosts["store1"].ns)
    assert d.call("metrics")["conflicts"] == {VIP4: 1.0, VIP6: 1.0}
    log = d.log_text()
    assert "probe sent ahead saw" in log and peer.mac in log and "VIP ALARM" in log


def test_probe_that_heard_the_previous_holder_is_sent_afresh(seg: Segment, driver: Callable[..., Driver]) -> None:
    """A probe prepared while the lease still moved (a candidate's probe at the first election,
    then the winner announced) heard a legitimate holder. Once that holder is gone, the next
    prepare() -- or the agent's unprepare() when the lease moves -- listens afresh, so start()
    adds at once instead of falling back to the full plain check."""
    d = driver("store1")
    peer = driver("store2", dad_timeout_s=0, guard=False, garp_count=1)
    for drop_first in (False, True):
        d.call("prepare")
        time.sleep(0.05)
        assert peer.call("start")["rc"] == 0  # the holder announcing while we listen
        time.sleep(0.05)
        assert peer.call("stop")["rc"] == 0  # ... then it is gone (powered off)
        if drop_first:
            d.call("unprepare")
        d.call("prepare")
        time.sleep(0.15)
        out = d.call("start")
        t = out["status"]["last_start"]
        assert out["rc"] == 0 and t["probed_ahead"] is True and t["dad_s"] < 0.03, (drop_first, t, d.log_text())
        assert d.call("stop")["rc"] == 0


def test_probe_ahead_unused_expires_and_releases_its_guard(seg: Segment, driver: Callable[..., Driver]) -> None:
    """A candidate that never acquires (someone else won) leaves nothing behind."""
    from hacluster.resources.vip import PREPARE_TTL_S

    holder = seg.hosts["store1"]
    d = driver("store1")
    d.call("prepare")
    time.sleep(0.1)
    assert len(run("ip", "netns", "pids", holder.ns).stdout.split()) == 2  # the driver and its guard
    gone = wait_for(lambda: run("ip", "netns", "pids", holder.ns).stdout.split() == [str(d.pid)], PREPARE_TTL_S + 2)
    assert gone is not None
    assert not {VIP4, VIP6} & addrs(holder.ns)
    t = d.call("start")["status"]["last_start"]
    assert t["probed_ahead"] is False and t["dad_s"] >= 0.075


# --------------------------------------------------------------------------- conflicts


def test_duplicate_address_check_refuses_when_peer_holds(seg: Segment, driver: Callable[..., Driver]) -> None:
    holder, peer = seg.hosts["store1"], seg.hosts["store2"]
    _hold_by_hand(seg, "store2")
    d = driver("store1")
    out = d.call("start")
    assert out["rc"] == 1  # ERR_GENERIC
    assert not {VIP4, VIP6} & addrs(holder.ns)
    assert d.call("metrics")["conflicts"] == {VIP4: 1.0, VIP6: 1.0}
    assert out["status"]["guard_pid"] is None
    # no guard left behind in the holder's namespace: only the driver itself
    assert wait_for(lambda: run("ip", "netns", "pids", holder.ns).stdout.split() == [str(d.pid)], 2.0) is not None
    log = d.log_text()
    assert "VIP ALARM" in log and peer.mac in log
    assert d.call("monitor")["rc"] == 7


def test_watcher_alarms_when_another_host_claims_the_vip(seg: Segment, driver: Callable[..., Driver]) -> None:
    holder, peer = seg.hosts["store1"], seg.hosts["store2"]
    a = driver("store1")
    assert a.call("start")["rc"] == 0
    assert a.call("metrics")["foreign_claims"] == {VIP4: 0.0, VIP6: 0.0}
    rogue = driver("store2", dad_timeout_s=0, guard=False, garp_count=1)  # skips the check: a misconfigured peer
    assert rogue.call("start")["rc"] == 0
    got = wait_for(lambda: all(v >= 1 for v in a.call("metrics")["foreign_claims"].values()), 2.0, step=0.05)
    assert got is not None, a.call("metrics")
    claims = a.call("status")["claims"]
    assert {c["mac"] for c in claims} == {peer.mac} and {c["vip"] for c in claims} == {VIP4, VIP6}
    assert "VIP ALARM" in a.log_text()
    assert {VIP4, VIP6} <= addrs(holder.ns)  # we alarm; the lease decides who holds


# --------------------------------------------------------------------------- the guard


def test_guard_removes_vip_when_the_process_is_sigkilled(seg: Segment, driver: Callable[..., Driver]) -> None:
    holder = seg.hosts["store1"]
    d = driver("store1")
    d.call("extend", **{"in": 30.0})
    assert d.call("start")["rc"] == 0
    guard = d.call("status")["guard_pid"]
    assert guard and os.getsid(guard) == guard != os.getsid(d.pid)
    assert {VIP4, VIP6} <= addrs(holder.ns)
    d.kill(signal.SIGKILL)
    gone = wait_for(lambda: not {VIP4, VIP6} & addrs(holder.ns), 0.5)
    print(f"\nSIGKILL -> VIP removed by the guard after {gone and gone * 1e3:.0f} ms")
    assert gone is not None
    assert wait_for(lambda: not pid_alive(guard), 1.0) is not None


def test_guard_removes_vip_when_frozen_past_the_deadline(seg: Segment, driver: Callable[..., Driver]) -> None:
    holder = seg.hosts["store1"]
    d = driver("store1")
    assert d.call("start")["rc"] == 0
    until = d.call("extend", **{"in": 0.6})["until"]
    d.kill(signal.SIGSTOP)
    try:
        boot = lambda: time.clock_gettime(time.CLOCK_BOOTTIME)  # noqa: E731
        time.sleep(max(0.0, until - boot() - 0.2))
        assert {VIP4, VIP6} <= addrs(holder.ns)  # not before the deadline
        assert wait_for(lambda: not {VIP4, VIP6} & addrs(holder.ns), 1.5) is not None
        late = boot() - until
        print(f"\nSIGSTOP -> VIP removed {late * 1e3:.0f} ms after the lease deadline (poll included)")
        assert late < 0.3
    finally:
        d.kill(signal.SIGCONT)
    assert d.call("monitor")["rc"] == 7
    assert d.call("stop")["rc"] == 0


def test_guard_kept_by_extensions_released_by_stop_and_healed(seg: Segment, driver: Callable[..., Driver]) -> None:
    holder = seg.hosts["store1"]
    d = driver("store1")
    d.call("extend", **{"in": 0.3})
    assert d.call("start")["rc"] == 0
    t_end = time.monotonic() + 1.2
    while time.monotonic() < t_end:  # renewals every 0.1 s keep it, well past the first deadline
        d.call("extend", **{"in": 0.3})
        assert {VIP4, VIP6} <= addrs(holder.ns)
        time.sleep(0.1)
    guard = d.call("status")["guard_pid"]
    # someone stops the guard: it takes the VIP with it; the next renewal puts both back
    os.kill(guard, signal.SIGTERM)
    assert wait_for(lambda: not {VIP4, VIP6} & addrs(holder.ns), 1.0) is not None
    d.call("extend", **{"in": 0.3})
    assert {VIP4, VIP6} <= addrs(holder.ns)
    new_guard = d.call("status")["guard_pid"]
    assert new_guard and new_guard != guard
    assert d.call("stop")["rc"] == 0
    assert wait_for(lambda: not pid_alive(new_guard), 1.0) is not None
    assert not {VIP4, VIP6} & addrs(holder.ns)


def test_vip_cleanup_removes_the_recorded_vips_whatever_the_spec_says(
        seg: Segment, driver: Callable[..., Driver], tmp_path: Path) -> None:
    import sys

    holder = seg.hosts["store1"]
    # stop() removes the record with the addresses
    d = driver("store1")
    record = d.state_dir / "vips" / "store.json"
    assert d.call("start")["rc"] == 0 and record.exists()
    assert d.call("stop")["rc"] == 0 and not record.exists()
    # a holder killed with nothing else to clean up after it (no guard): the VIP stays, recorded
    d = driver("store1", guard=False)
    record = d.state_dir / "vips" / "store.json"
    assert d.call("start")["rc"] == 0 and record.exists()
    d.kill()
    d.proc.wait(5)
    assert {VIP4, VIP6} <= addrs(holder.ns)
    # meanwhile the spec was edited: the role's VIP is another address, which this host also has
    other = "198.51.100.21"
    edited = tmp_path / "edited.yml"
    edited.write_text(default_spec_text().replace(f"{VIP4}/24", f"{other}/24"))
    run("ip", "-n", holder.ns, "addr", "add", f"{other}/24", "dev", "eth0")
    cleanup = [sys.executable, "-m", "hacluster", "vip", "cleanup", "--node", "store1", "--state-dir", str(d.state_dir)]
    out = nsrun(holder.ns, *cleanup, "--config", str(edited))  # an old unit's --config: not read
    assert out.stdout.splitlines() == [f"{VIP4}/24 on eth0: removed", f"{VIP6}/64 on eth0: removed"]
    left = addrs(holder.ns)
    assert not {VIP4, VIP6} & left and not record.exists()
    assert {other, holder.addr4, holder.addr6} <= left  # not recorded: not ours to remove
    again = nsrun(holder.ns, *cleanup)
    assert again.stdout == f"store1: no VIP recorded in {d.state_dir / 'vips'}\n"
