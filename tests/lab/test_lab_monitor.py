"""The invariant monitor against real namespaces: it must see a dual holder when there is one (so
the check can fail), see none when one host holds the VIP, ignore a powered-off host's lingering
address, and time the router's neighbour entry following a move."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from hacluster_lab.lab.lab import Lab

from .running import running_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

PREFIX = "hcl-"
STATE = Path("/run/hacluster-lab-test-mon")
VIP4, VIP6 = "198.51.100.20", "fd00:51::20"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(STATE, PREFIX, agents=False)


@pytest.fixture
def store1_holds(lab: Lab) -> Lab:
    """store1 holds the VIP, store2 not, and the router has talked to the VIP (a neighbour entry
    exists: with arp_accept=0 a gratuitous ARP only updates entries, it doesn't create them)."""
    for n in ("store1", "store2"):
        lab.fault(n, "power-on")  # no-op unless a previous test left it off
        lab.release_vip(n)
    lab.hold_vip("store1")
    for ip in (VIP4, VIP6):
        assert lab.exec("router", ["ping", "-c1", "-W2", ip], capture_output=True).returncode == 0
    return lab


def test_dual_holder_detected_then_move_and_arp_convergence(store1_holds: Lab) -> None:
    lab = store1_holds
    mon = lab.monitor(duration_s=30).start()
    try:
        time.sleep(0.3)
        lab.hold_vip("store2", garp=False)  # by hand, as a host whose agent died would keep it
        time.sleep(0.3)
        lab.release_vip("store1")
        lab.hold_vip("store2")  # now with gratuitous ARP / unsolicited NA: the router must follow
        time.sleep(0.5)
    finally:
        rep = mon.stop()
    print(f"samples {rep.samples}, mean gap {rep.mean_gap_s * 1000:.2f} ms, max gap {rep.max_gap_s * 1000:.2f} ms")
    assert rep.dual_holder_samples >= 20  # ~0.3 s of overlap at 5 ms
    assert {iv["vip"] for iv in rep.dual_holder_intervals} == {VIP4, VIP6}
    assert all(iv["holders"] == ["store1", "store2"] for iv in rep.dual_holder_intervals)
    assert all(d["holders"] == ["store1", "store2"] for d in rep.dual_holders)
    moves = {m["vip"]: m for m in rep.moves}
    assert set(moves) == {VIP4, VIP6}
    for vip in (VIP4, VIP6):
        m = moves[vip]
        assert (m["from"], m["to"]) == ("store1", "store2")
        assert m["to_mac"] == lab.plan.host("store2").mac
        assert m["t_arp"] is not None and 0 <= m["arp_s"] < 1.0, m
    assert rep.initial == {VIP4: ["store1"], VIP6: ["store1"]}
    assert rep.final == {VIP4: ["store2"], VIP6: ["store2"]}
    assert rep.mean_gap_s <= 0.0105
    assert rep.errors == []


def test_single_holder_reports_zero(store1_holds: Lab) -> None:
    mon = store1_holds.monitor(duration_s=1.0).start()
    assert mon.wait(10)
    rep = mon.stop()
    assert rep.dual_holder_samples == 0 and rep.dual_holders == [] and rep.moves == []
    assert rep.initial == rep.final == {VIP4: ["store1"], VIP6: ["store1"]}
    assert rep.samples >= 90  # 1 s at 5 ms
    assert rep.mean_gap_s <= 0.0105
    print(f"max gap {rep.max_gap_s * 1000:.2f} ms")


def test_powered_off_host_with_lingering_address_holds_nothing(store1_holds: Lab) -> None:
    lab = store1_holds
    mon = lab.monitor(duration_s=30).start()
    try:
        lab.fault("store1", "power-off")
        st = lab.status()
        # the IPv4 VIP is still configured on store1's (down) interface ...
        assert f"{VIP4}/24" in st["hosts"]["store1"]["links"]["eth0"]["addresses"]
        # ... but a dead host holds nothing
        assert st["roles"]["store"] == []
        lab.hold_vip("store2")
        time.sleep(0.3)
    finally:
        rep = mon.stop()
    assert rep.dual_holder_samples == 0
    assert [(m["vip"], m["from"], m["to"]) for m in rep.moves if m["vip"] == VIP4] == [(VIP4, "store1", "store2")]
    lab.fault("store1", "power-on")
    st = lab.status()
    # a reboot doesn't bring the VIP back: only store2 holds it
    assert not any(a.startswith(VIP4) for a in st["hosts"]["store1"]["links"]["eth0"]["addresses"])
    assert st["roles"]["store"] == ["store2"]


def test_monitor_bounds_its_inputs(lab: Lab) -> None:
    with pytest.raises(ValueError):
        lab.monitor(interval_s=0.02)
    with pytest.raises(ValueError):
        lab.monitor(duration_s=0)


def test_drop_lets_a_dead_hosts_namespace_go() -> None:
    """A reader's netlink socket pins its network namespace -- with the addresses in it, which the
    kernel keeps answering ARP for. drop() must release it: the vagrant docker target relies on it
    at power-off (the dead holder's namespace outlived the container and answered for the VIP).
    Seen from outside: the veth whose other end is in the namespace goes when the namespace goes."""
    import subprocess

    from hacluster_lab.lab.monitor import InvariantMonitor, MonitorTarget

    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)

    def peer_exists() -> bool:
        return subprocess.run(["ip", "link", "show", "hcl-mdrop-a"], capture_output=True, timeout=30).returncode == 0

    for ns in ("hcl-mdrop", "hcl-mdrop-r"):
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
        sh("ip", "netns", "add", ns)
    mon = None
    try:
        sh("ip", "link", "add", "hcl-mdrop-a", "type", "veth", "peer", "name", "eth1", "netns", "hcl-mdrop")
        sh("ip", "-n", "hcl-mdrop", "addr", "add", f"{VIP4}/24", "dev", "eth1")
        sh("ip", "-n", "hcl-mdrop", "link", "set", "eth1", "up")
        mon = InvariantMonitor(MonitorTarget((("store1", "hcl-mdrop"),), (VIP4,), "hcl-mdrop-r"), duration_s=30).start()
        time.sleep(0.1)
        assert mon.holders(VIP4) == ["store1"]
        sh("ip", "netns", "delete", "hcl-mdrop")  # the name goes; the monitor's socket still holds it
        time.sleep(1.0)
        assert peer_exists(), "the reader did not pin the namespace: this test would prove nothing"
        mon.drop("store1")
        deadline = time.monotonic() + 10
        while peer_exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not peer_exists(), "the namespace outlived drop()"
        time.sleep(0.1)
        assert mon.holders(VIP4) == []  # no longer sampled
    finally:
        if mon is not None:
            mon.stop()
        for ns in ("hcl-mdrop", "hcl-mdrop-r"):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "delete", "hcl-mdrop-a"], capture_output=True, timeout=30)
