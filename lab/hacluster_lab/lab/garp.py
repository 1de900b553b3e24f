"""A minimal gratuitous ARP / unsolicited NA sender for the lab's hand-driven VIP moves (`Lab.hold_vip`).

The agent's VIP resource does the real thing (bursts, refresh, IPv6 NA, duplicate detection);
this only lets tests and benchmarks that run *without* agents move the VIP the way a host would,
so the router's neighbour entry follows. Run inside the namespace:
`ip netns exec NS python -m hacluster_lab.lab.garp IFACE IP [COUNT]`.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def frames(mac: bytes, ip: str) -> list[bytes]:
    """Request and reply forms (some routers accept only one)."""
    spa = ipaddress.IPv4Address(ip).packed
    eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    head = struct.pack("!HHBB", 1, 0x0800, 6, 4)
    request = eth + head + struct.pack("!H", 1) + mac + spa + b"\x00" * 6 + spa
    reply = eth + head + struct.pack("!H", 2) + mac + spa + BROADCAST + spa
    return [request, reply]


def unsolicited_na(mac: bytes, ip: str) -> bytes:
    """ICMPv6 neighbour advertisement, R=0 S=0 O=1, with the target link-layer option (the
    kernel fills in the checksum on raw ICMPv6 sockets)."""
    target = ipaddress.IPv6Address(ip).packed
    return struct.pack("!BBHI", 136, 0, 0, 0x20000000) + target + struct.pack("!BB", 2, 1) + mac


def send(iface: str, ip: str, count: int = 3, interval_s: float = 0.05) -> None:
    mac = bytes.fromhex(Path(f"/sys/class/net/{iface}/address").read_text().strip().replace(":", ""))
    if ipaddress.ip_address(ip).version == 6:
        _send_na(iface, mac, ip, count, interval_s)
        return
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((iface, 0))
        for i in range(count):
            for f in frames(mac, ip):
                s.send(f)
            if i + 1 < count:
                time.sleep(interval_s)


def _send_na(iface: str, mac: bytes, ip: str, count: int, interval_s: float) -> None:
    index = socket.if_nametoindex(iface)
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        s.bind((ip, 0, 0, index))
        for i in range(count):
            s.sendto(unsolicited_na(mac, ip), ("ff02::1", 0, 0, index))
            if i + 1 < count:
                time.sleep(interval_s)


if __name__ == "__main__":
    send(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
