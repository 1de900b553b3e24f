"""Link-layer announcements and watching for the VIP: gratuitous ARP, unsolicited neighbour
advertisements, duplicate-address probes, and parsing what comes back.

Frames are built with `struct` once per (MAC, address) -- five fixed layouts, checked byte for
byte against scapy's in tests/unit/test_vip_garp.py; scapy itself (24 MB) stays out of a mail
node's venv -- and sent as bytes on a raw AF_PACKET socket that stays open while the VIP is held:
sending is then a single syscall (microseconds), so the first announcement leaves right after the
address is added. Parsing of received frames is plain `struct` too (the watcher sees every ARP
frame on the segment).
"""

from __future__ import annotations

import ctypes
import ipaddress
import select
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
ALL_NODES = "ff02::1"
ARP_REQUEST, ARP_REPLY = 1, 2
ND_NS, ND_NA = 135, 136
SO_ATTACH_FILTER = 26

# --------------------------------------------------------------------------- frames (struct)


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def _arp(op: int, mac: str, sender_ip: str, target_mac: str, target_ip: str) -> bytes:
    """Ethernet broadcast + ARP for IPv4 over Ethernet (RFC 826), 42 bytes."""
    src = _mac(mac)
    return (_mac(BROADCAST) + src + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + src + ipaddress.IPv4Address(sender_ip).packed
            + _mac(target_mac) + ipaddress.IPv4Address(target_ip).packed)


def _icmp6(dst_mac: str, mac: str, src_ip: str, dst_ip: str, body: bytes) -> bytes:
    """Ethernet + IPv6 (hop limit 255, as ND requires) + an ICMPv6 message whose checksum field
    (bytes 2-3 of `body`) is filled in over the pseudo-header (RFC 8200 8.1)."""
    src, dst = ipaddress.IPv6Address(src_ip).packed, ipaddress.IPv6Address(dst_ip).packed
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58) + body
    total = sum(struct.unpack(f"!{len(pseudo) // 2}H", pseudo + b"\0" * (len(pseudo) % 2)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    body = body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + src + dst
    return _mac(dst_mac) + _mac(mac) + struct.pack("!H", ETH_P_IPV6) + ip6 + body


@lru_cache(maxsize=256)
def garp_request(mac: str, ip: str) -> bytes:
    """ARP announcement (RFC 5227): a broadcast request with sender = target = the VIP."""
    return _arp(ARP_REQUEST, mac, ip, ZERO_MAC, ip)


@lru_cache(maxsize=256)
def garp_reply(mac: str, ip: str) -> bytes:
    """The reply form, for routers that only learn from replies. Target MAC = sender MAC, which
    is what Linux's arp_is_garp() wants to treat a reply as gratuitous (override at once)."""
    return _arp(ARP_REPLY, mac, ip, mac, ip)


@lru_cache(maxsize=256)
def arp_probe(mac: str, ip: str) -> bytes:
    """Duplicate-address probe (RFC 5227): sender IP 0.0.0.0 so no cache learns from it."""
    return _arp(ARP_REQUEST, mac, "0.0.0.0", ZERO_MAC, ip)


def solicited_node(ip6: str) -> tuple[str, str]:
    """(solicited-node multicast address, its Ethernet group MAC) for an IPv6 address."""
    low = ipaddress.IPv6Address(ip6).packed[-3:]
    group = ipaddress.IPv6Address(bytes.fromhex("ff02" + "00" * 9 + "01ff") + low)
    return str(group), "33:33:ff:" + ":".join(f"{b:02x}" for b in low)


@lru_cache(maxsize=256)
def unsolicited_na(mac: str, ip6: str) -> bytes:
    """Unsolicited NA to all-nodes: R=0 (not a router), S=0 (unsolicited), O=1 (override the
    cached MAC), with the target link-layer address option (RFC 4861 7.2.6)."""
    body = (struct.pack("!BBHI", ND_NA, 0, 0, 1 << 29) + ipaddress.IPv6Address(ip6).packed
            + struct.pack("!BB", 2, 1) + _mac(mac))
    return _icmp6("33:33:00:00:00:01", mac, ip6, ALL_NODES, body)


@lru_cache(maxsize=256)
def dad_ns(mac: str, ip6: str) -> bytes:
    """IPv6 duplicate-address probe: NS from :: to the target's solicited-node group, no
    source link-layer option (RFC 4862 5.4.2). A holder answers with an NA to all-nodes."""
    group, group_mac = solicited_node(ip6)
    body = struct.pack("!BBHI", ND_NS, 0, 0, 0) + ipaddress.IPv6Address(ip6).packed
    return _icmp6(group_mac, mac, "::", group, body)


def announcements(mac: str, ips: tuple[str, ...]) -> list[tuple[int, bytes]]:
    """Every announcement frame for the VIPs, as (ethertype, frame): both ARP forms per IPv4
    address, one unsolicited NA per IPv6 address."""
    out: list[tuple[int, bytes]] = []
    for ip in ips:
        if ":" in ip:
            out.append((ETH_P_IPV6, unsolicited_na(mac, ip)))
        else:
            out += [(ETH_P_ARP, garp_request(mac, ip)), (ETH_P_ARP, garp_reply(mac, ip))]
    return out


def probes(mac: str, ips: tuple[str, ...]) -> list[tuple[int, bytes]]:
    return [(ETH_P_IPV6, dad_ns(mac, ip)) if ":" in ip else (ETH_P_ARP, arp_probe(mac, ip)) for ip in ips]


def burst_offsets(count: int, interval_s: float) -> list[float]:
    """Send times of the announcement burst relative to the address add. With interval just
    above the neighbour locktime (1 s on Linux) the last frame lands after any lock expired."""
    return [i * interval_s for i in range(max(1, count))]


# --------------------------------------------------------------------------- parsing (struct)


@dataclass(frozen=True)
class Seen:
    """One ARP or ND frame, reduced to what decides a conflict."""

    kind: str  # "arp-request" | "arp-reply" | "ns" | "na"
    mac: str  # the claimed link-layer address (ARP sender / NA target option / Ethernet source)
    sender_ip: str  # ARP sender IP / IPv6 source
    target_ip: str  # ARP target IP / ND target


def parse_frame(frame: bytes) -> Seen | None:
    """Decode an Ethernet frame carrying ARP or an ICMPv6 NS/NA; None for anything else."""
    if len(frame) < 14:
        return None
    (etype,) = struct.unpack_from("!H", frame, 12)
    if etype == ETH_P_ARP and len(frame) >= 42:
        htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
        if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4 or op not in (ARP_REQUEST, ARP_REPLY):
            return None
        sha, spa, _tha, tpa = frame[22:28], frame[28:32], frame[32:38], frame[38:42]
        return Seen("arp-request" if op == ARP_REQUEST else "arp-reply", mac_text(sha),
                    socket.inet_ntop(socket.AF_INET, spa), socket.inet_ntop(socket.AF_INET, tpa))
    if etype == ETH_P_IPV6 and len(frame) >= 14 + 40 + 24:
        if frame[14 + 6] != 58:  # next header ICMPv6 (ND never carries extension headers)
            return None
        icmp_type = frame[54]
        if icmp_type not in (ND_NS, ND_NA):
            return None
        src = socket.inet_ntop(socket.AF_INET6, frame[22:38])
        target = socket.inet_ntop(socket.AF_INET6, frame[62:78])
        mac = mac_text(frame[6:12])
        want_opt = 2 if icmp_type == ND_NA else 1  # target / source link-layer address option
        off = 78
        while off + 8 <= len(frame):
            otype, olen = frame[off], frame[off + 1]
            if olen == 0:
                break
            if otype == want_opt:
                mac = mac_text(frame[off + 2:off + 8])
                break
            off += olen * 8
        return Seen("na" if icmp_type == ND_NA else "ns", mac, src, target)
    return None


def na_flags(frame: bytes) -> tuple[int, int, int]:
    """(R, S, O) of an NA frame (tests and captures)."""
    b = frame[58]
    return (b >> 7) & 1, (b >> 6) & 1, (b >> 5) & 1


def claim_of(seen: Seen, vips: frozenset[str], own_mac: str) -> str | None:
    """The VIP another host claims with this frame, if any: an ARP packet whose sender is the
    VIP, or an NA for the VIP, from a MAC that is not ours."""
    if seen.mac == own_mac:
        return None
    if seen.kind.startswith("arp") and seen.sender_ip in vips:
        return seen.sender_ip
    if seen.kind == "na" and seen.target_ip in vips:
        return seen.target_ip
    return None


def probe_of(seen: Seen, vips: frozenset[str], own_mac: str) -> str | None:
    """The VIP another host is probing for right now (RFC 5227 2.1.1: a simultaneous probe is
    a conflict too), if any."""
    if seen.mac == own_mac:
        return None
    if seen.kind == "arp-request" and seen.sender_ip == "0.0.0.0" and seen.target_ip in vips:
        return seen.target_ip
    if seen.kind == "ns" and seen.sender_ip == "::" and seen.target_ip in vips:
        return seen.target_ip
    return None


# --------------------------------------------------------------------------- the wire


# classic BPF: accept IPv6 frames whose next header is ICMPv6 with type NS (135) or NA (136)
_ND_FILTER = [
    (0x28, 0, 0, 12),  # ldh [12]          ethertype
    (0x15, 0, 6, ETH_P_IPV6),  # jeq #0x86dd, else drop
    (0x30, 0, 0, 20),  # ldb [20]          next header
    (0x15, 0, 4, 58),  # jeq #58, else drop
    (0x30, 0, 0, 54),  # ldb [54]          ICMPv6 type
    (0x15, 1, 0, ND_NS),  # jeq #135 -> accept
    (0x15, 0, 1, ND_NA),  # jeq #136 -> accept else drop
    (0x06, 0, 0, 0x40000),  # ret #262144
    (0x06, 0, 0, 0),  # ret #0
]


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    insns = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class Link:
    """Raw sockets on one interface: one for ARP, one (filtered to NS/NA) for IPv6.

    Opened in the caller's network namespace, which is where the VIP lives. Opening and closing
    a packet socket costs ~10 ms each (the kernel waits for an RCU grace period), so the VIP
    resource keeps its links open between start and stop and drains them before probing."""

    def __init__(self, ifname: str, ipv6: bool) -> None:
        self.ifname = ifname
        self.socks: dict[int, socket.socket] = {}
        self.index = socket.if_nametoindex(ifname)
        try:
            arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            self.socks[ETH_P_ARP] = arp
            arp.bind((ifname, ETH_P_ARP))
            self.mac = mac_text(arp.getsockname()[4])
            if ipv6:
                # protocol 0 receives nothing until bound: attach the filter first, so no
                # unfiltered SMTP-over-IPv6 frame ever lands in this socket's queue
                nd = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                self.socks[ETH_P_IPV6] = nd
                _attach_filter(nd, _ND_FILTER)
                nd.bind((ifname, ETH_P_IPV6))
            for s in self.socks.values():
                s.setblocking(False)
        except OSError:
            self.close()
            raise

    def send(self, frames: list[tuple[int, bytes]]) -> int:
        """Send frames; returns how many left. Errors (link down) are the caller's to log."""
        sent = 0
        for etype, frame in frames:
            self.socks[etype].send(frame)
            sent += 1
        return sent

    def stale(self) -> bool:
        """True if the interface was replaced (other index) or changed its MAC since opening."""
        try:
            if socket.if_nametoindex(self.ifname) != self.index:
                return True
            return mac_text(self.socks[ETH_P_ARP].getsockname()[4]) != self.mac
        except (OSError, KeyError):
            return True

    def drain(self, limit: int = 4096) -> None:
        """Drop frames queued while nobody listened (before a fresh duplicate-address probe)."""
        for sock in self.socks.values():
            for _ in range(limit):
                try:
                    sock.recv(2048)
                except OSError:
                    break

    def close(self) -> None:
        for s in self.socks.values():
            try:
                s.close()
            except OSError:
                pass
        self.socks = {}



def receive(links: list[Link], timeout: float, wake_fd: int | None = None, limit: int = 256) -> list[tuple[Link, Seen]]:
    """ARP/ND frames arriving on any of the links within `timeout`; returns as soon as something
    arrived or wake_fd became readable. At most `limit` frames per socket per call."""
    owner: dict[int, tuple[Link, socket.socket]] = {}
    for link in links:
        for s in link.socks.values():
            owner[s.fileno()] = (link, s)
    watch = list(owner) + ([wake_fd] if wake_fd is not None else [])
    try:
        ready, _, _ = select.select(watch, [], [], max(0.0, timeout))
    except (OSError, ValueError):  # a socket closed under us: the caller is stopping
        return []
    out: list[tuple[Link, Seen]] = []
    for fd in ready:
        if fd not in owner:
            continue
        link, sock = owner[fd]
        for _ in range(limit):
            try:
                frame = sock.recv(2048)
            except OSError:  # BlockingIOError: drained
                break
            seen = parse_frame(frame)
            if seen is not None:
                out.append((link, seen))
    return out
