"""A VIP start that stalls between two address adds past the lease deadline puts nothing more up
and takes down what it added (bench false-failover saw an IPv6 VIP added 0.7 s after the guard
fired, while the peer held the role: a dual holder)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from hacluster.resources import vip as vip_mod
from hacluster.resources.vip import LeaseRanOut, VipParams, VipResource
from hacluster.spec import VipSpec


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t


def _vip(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, stall_on: str | None) -> tuple[VipResource, list[tuple[str, str]]]:
    monkeypatch.setattr(vip_mod.clock, "now", clock.now)
    monkeypatch.setattr(vip_mod.socket, "if_nametoindex", lambda name: 7)
    monkeypatch.setattr(VipResource, "_iproute", lambda self: None)
    monkeypatch.setattr(VipResource, "_open_links", lambda self: None)
    res = VipResource("store-vip", (VipSpec(ipaddress.ip_interface("198.51.100.20/24"), "eth0"),
                                    VipSpec(ipaddress.ip_interface("fd00:51::20/64"), "eth0")),
                      VipParams(guard=False))
    calls: list[tuple[str, str]] = []

    def netlink(call: Any, command: str, t: Any, *args: Any, **kw: Any) -> None:
        calls.append((command, t.ip))
        if command == "add" and t.ip == stall_on:
            clock.t += 0.7  # the host stalls inside this add
        if command == "del" and (("add", t.ip) not in calls):
            raise NetlinkError(99, "not there")

    monkeypatch.setattr(res, "_netlink", netlink)
    res._until = 100.5  # the lease deadline
    return res, calls


@pytest.mark.parametrize("stall_on,added", [
    (None, ["198.51.100.20", "fd00:51::20"]),  # in time: both up, nothing raised
    ("198.51.100.20", ["198.51.100.20"]),  # stalled in the first add: the second never goes up
    ("fd00:51::20", ["198.51.100.20", "fd00:51::20"]),  # stalled in the last: caught after it
])
def test_add_all_checks_the_deadline_before_each_address_and_after_the_last(
        monkeypatch: pytest.MonkeyPatch, stall_on: str | None, added: list[str]) -> None:
    clock = FakeClock()
    res, calls = _vip(monkeypatch, clock, stall_on)
    if stall_on is None:
        res._add_all()
    else:
        with pytest.raises(LeaseRanOut, match="lease ran out"):
            res._add_all()
    assert [ip for cmd, ip in calls if cmd == "add"] == added


def test_add_all_adds_nothing_once_the_deadline_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    res, calls = _vip(monkeypatch, clock, None)
    clock.t = 100.6
    with pytest.raises(LeaseRanOut):
        res._add_all()
    assert calls == []
