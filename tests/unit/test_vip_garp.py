"""Frames the VIP puts on the wire (built with struct; checked field by field by dissecting the
bytes with scapy, and byte for byte against the same frames built by scapy) and the struct
parser/classifiers the watcher and the duplicate-address check use."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from hacluster.resources import garp

MAC = "02:00:5e:00:00:11"
OTHER = "02:00:5e:00:00:12"
VIP4, VIP6 = "198.51.100.20", "fd00:51::20"
VIPS = frozenset({VIP4, VIP6})


def test_garp_request_is_an_rfc5227_announcement() -> None:
    f = Ether(garp.garp_request(MAC, VIP4))
    assert (f.dst, f.src, f.type) == ("ff:ff:ff:ff:ff:ff", MAC, 0x0806)
    a = f[ARP]
    assert (a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == (1, MAC, VIP4, "00:00:00:00:00:00", VIP4)


def test_garp_reply_has_target_mac_equal_sender_so_linux_overrides_at_once() -> None:
    f = Ether(garp.garp_reply(MAC, VIP4))
    assert f.dst == "ff:ff:ff:ff:ff:ff"
    a = f[ARP]
    assert (a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == (2, MAC, VIP4, MAC, VIP4)


def test_arp_probe_uses_zero_sender_ip() -> None:
    a = Ether(garp.arp_probe(MAC, VIP4))[ARP]
    assert (a.op, a.hwsrc, a.psrc, a.pdst) == (1, MAC, "0.0.0.0", VIP4)


def test_unsolicited_na_flags_option_and_checksum() -> None:
    raw = garp.unsolicited_na(MAC, VIP6)
    f = Ether(raw)
    assert (f.dst, f.src) == ("33:33:00:00:00:01", MAC)
    ip6 = f[IPv6]
    assert (ip6.src, ip6.dst, ip6.hlim) == (VIP6, "ff02::1", 255)
    na = f[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (0, 0, 1, VIP6)
    assert f[ICMPv6NDOptDstLLAddr].type == 2 and f[ICMPv6NDOptDstLLAddr].lladdr == MAC
    assert garp.na_flags(raw) == (0, 0, 1)
    rebuilt = Ether(raw)
    del rebuilt[ICMPv6ND_NA].cksum
    assert Ether(bytes(rebuilt))[ICMPv6ND_NA].cksum == na.cksum


def test_dad_ns_goes_from_unspecified_to_solicited_node_group() -> None:
    f = Ether(garp.dad_ns(MAC, VIP6))
    assert f.dst == "33:33:ff:00:00:20"
    assert (f[IPv6].src, f[IPv6].dst, f[IPv6].hlim) == ("::", "ff02::1:ff00:20", 255)
    assert f[ICMPv6ND_NS].tgt == VIP6
    assert bytes(f[ICMPv6ND_NS].payload) == b""  # no source link-layer option from ::


SAMPLES = [(MAC, VIP4, VIP6), ("0a:1b:2c:3d:4e:5f", "203.0.113.254", "fd00::1"),
           ("fe:ff:ff:ff:ff:ff", "192.0.2.1", "fd00:ffff:ffff:ffff:ffff:ffff:ffff:fffe")]


@pytest.mark.parametrize("mac,ip4,ip6", SAMPLES)
def test_frames_are_byte_for_byte_what_scapy_builds(mac: str, ip4: str, ip6: str) -> None:
    """scapy built these frames before (it is 24 MB a mail node no longer installs): the struct
    builders must put exactly the same bytes on the wire, the ICMPv6 checksums included."""
    group, group_mac = garp.solicited_node(ip6)
    want = {
        "garp_request": Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=1, hwsrc=mac, psrc=ip4, hwdst="00:00:00:00:00:00", pdst=ip4),
        "garp_reply": Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=2, hwsrc=mac, psrc=ip4, hwdst=mac, pdst=ip4),
        "arp_probe": Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=1, hwsrc=mac, psrc="0.0.0.0", hwdst="00:00:00:00:00:00", pdst=ip4),
        "unsolicited_na": Ether(dst="33:33:00:00:00:01", src=mac) / IPv6(src=ip6, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(R=0, S=0, O=1, tgt=ip6) / ICMPv6NDOptDstLLAddr(lladdr=mac),
        "dad_ns": Ether(dst=group_mac, src=mac) / IPv6(src="::", dst=group, hlim=255) / ICMPv6ND_NS(tgt=ip6),
    }
    for name, pkt in want.items():
        got = getattr(garp, name)(mac, ip6 if name in ("unsolicited_na", "dad_ns") else ip4)
        assert got == bytes(pkt), name


def test_a_bad_mac_is_refused() -> None:
    with pytest.raises(ValueError):
        garp.garp_request("02:00:5e:00:11", VIP4)


def test_solicited_node_uses_low_24_bits() -> None:
    assert garp.solicited_node("fd00:51::ab:cdef") == ("ff02::1:ffab:cdef", "33:33:ff:ab:cd:ef")


def test_announcements_cover_both_arp_forms_and_na() -> None:
    frames = garp.announcements(MAC, (VIP4, VIP6))
    kinds = [(et, Ether(f)[ARP].op if et == garp.ETH_P_ARP else "na") for et, f in frames]
    assert kinds == [(garp.ETH_P_ARP, 1), (garp.ETH_P_ARP, 2), (garp.ETH_P_IPV6, "na")]
    assert [et for et, _ in garp.probes(MAC, (VIP4, VIP6))] == [garp.ETH_P_ARP, garp.ETH_P_IPV6]


@pytest.mark.parametrize("count,interval,expected", [(3, 1.05, [0.0, 1.05, 2.1]), (1, 1.05, [0.0]), (0, 1.0, [0.0])])
def test_burst_offsets(count: int, interval: float, expected: list[float]) -> None:
    assert garp.burst_offsets(count, interval) == pytest.approx(expected)


def test_default_burst_outlasts_the_linux_locktime() -> None:
    from hacluster.resources.vip import VipParams

    p = VipParams()
    assert garp.burst_offsets(p.garp_count, p.garp_interval_s)[-1] > 1.0


# --------------------------------------------------------------------------- parsing


def test_parse_own_frames_round_trip() -> None:
    assert garp.parse_frame(garp.garp_request(MAC, VIP4)) == garp.Seen("arp-request", MAC, VIP4, VIP4)
    assert garp.parse_frame(garp.garp_reply(MAC, VIP4)) == garp.Seen("arp-reply", MAC, VIP4, VIP4)
    assert garp.parse_frame(garp.arp_probe(MAC, VIP4)) == garp.Seen("arp-request", MAC, "0.0.0.0", VIP4)
    assert garp.parse_frame(garp.unsolicited_na(MAC, VIP6)) == garp.Seen("na", MAC, VIP6, VIP6)
    assert garp.parse_frame(garp.dad_ns(MAC, VIP6)) == garp.Seen("ns", MAC, "::", VIP6)


def test_na_mac_comes_from_target_option_not_ethernet_source() -> None:
    raw = bytes(Ether(src=MAC, dst="33:33:00:00:00:01") / IPv6(src=VIP6, dst="ff02::1", hlim=255)
                / ICMPv6ND_NA(O=1, tgt=VIP6) / ICMPv6NDOptDstLLAddr(lladdr=OTHER))
    assert garp.parse_frame(raw).mac == OTHER


@pytest.mark.parametrize("frame", [
    b"",
    b"\x00" * 13,
    bytes(Ether(src=MAC) / IP(src=VIP4, dst="198.51.100.1") / UDP()),
    bytes(Ether(src=MAC) / IPv6(src=VIP6, dst="fd00:51::1") / ICMPv6EchoRequest() / (b"x" * 40)),
    garp.garp_request(MAC, VIP4)[:30],  # truncated ARP
])
def test_parse_ignores_other_and_short_frames(frame: bytes) -> None:
    assert garp.parse_frame(frame) is None


def test_claims_and_probes_are_only_foreign() -> None:
    own = garp.parse_frame(garp.garp_request(MAC, VIP4))
    assert garp.claim_of(own, VIPS, MAC) is None
    theirs = garp.parse_frame(garp.garp_reply(OTHER, VIP4))
    assert garp.claim_of(theirs, VIPS, MAC) == VIP4
    assert garp.claim_of(garp.parse_frame(garp.unsolicited_na(OTHER, VIP6)), VIPS, MAC) == VIP6
    # the router asking who has the VIP claims nothing
    ask = garp.Seen("arp-request", OTHER, "198.51.100.1", VIP4)
    assert garp.claim_of(ask, VIPS, MAC) is None and garp.probe_of(ask, VIPS, MAC) is None
    # another host's duplicate-address probes are probes, not claims
    p4 = garp.parse_frame(garp.arp_probe(OTHER, VIP4))
    p6 = garp.parse_frame(garp.dad_ns(OTHER, VIP6))
    assert (garp.claim_of(p4, VIPS, MAC), garp.probe_of(p4, VIPS, MAC)) == (None, VIP4)
    assert (garp.claim_of(p6, VIPS, MAC), garp.probe_of(p6, VIPS, MAC)) == (None, VIP6)
    assert garp.probe_of(garp.parse_frame(garp.dad_ns(MAC, VIP6)), VIPS, MAC) is None
    # an address resolution NS (source set) is not a probe
    assert garp.probe_of(garp.Seen("ns", OTHER, "fd00:51::1", VIP6), VIPS, MAC) is None
    assert garp.claim_of(garp.parse_frame(garp.garp_request(OTHER, "198.51.100.99")), VIPS, MAC) is None


# --------------------------------------------------------------------------- the BPF filter


def _run_bpf(program: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """A tiny classic-BPF interpreter for the opcodes the ND filter uses."""
    pc, acc = 0, 0
    for _ in range(64):
        code, jt, jf, k = program[pc]
        if code == 0x28:  # ldh [k]
            acc = struct.unpack_from("!H", pkt, k)[0] if k + 2 <= len(pkt) else None
        elif code == 0x30:  # ldb [k]
            acc = pkt[k] if k < len(pkt) else None
        elif code == 0x15:  # jeq #k
            pc += jt if acc == k else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"opcode {code:#x} not modelled")
        if acc is None:
            return 0  # out-of-bounds load drops the packet
        pc += 1
    raise AssertionError("runaway filter")


@pytest.mark.parametrize("frame,accepted", [
    (garp.unsolicited_na(MAC, VIP6), True),
    (garp.dad_ns(MAC, VIP6), True),
    (bytes(Ether(src=MAC) / IPv6(src=VIP6, dst="fd00:51::1") / ICMPv6EchoRequest()), False),
    (bytes(Ether(src=MAC) / IPv6(src=VIP6, dst="fd00:51::1") / UDP(dport=25) / (b"x" * 30)), False),
    (garp.garp_request(MAC, VIP4), False),
])
def test_nd_socket_filter_keeps_only_ns_and_na(frame: bytes, accepted: bool) -> None:
    assert (_run_bpf(garp._ND_FILTER, frame) > 0) is accepted
