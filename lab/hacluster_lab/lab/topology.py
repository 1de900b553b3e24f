"""The lab's shape, computed from a cluster spec: which namespaces, which addresses, which links.

Pure: nothing here touches the system, so the plan is checked (documentation ranges only, every
host inside a lab segment, names short enough for Linux) before a single namespace exists.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from hacluster.errors import UserError
from hacluster.spec import ClusterSpec, SegmentSpec

#: the only ranges the lab may use inside its namespaces (RFC 5737 documentation nets, ULA)
ALLOWED_NETS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("192.0.2.0/24"),
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("203.0.113.0/24"),
    ipaddress.ip_network("fd00::/8"),
)

DEFAULT_PREFIX = "hcl-"
ROUTER = "router"
RESERVED = (ROUTER, "client", "dns", "partition", "heal")  # lab host names and CLI words
ZK_CLIENT_PORT_DEFAULT = 2181
ZK_PEER_PORT = 2888
ZK_ELECTION_PORT = 3888

Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class Host:
    """One lab namespace with one link into a segment's bridge."""

    name: str
    kind: str  # relay | store | fallback (mail tiers) | client | dns | zk
    segment: str
    interface: str  # inside the host namespace
    peer: str  # the veth end in the router namespace
    addresses: tuple[Iface, ...]
    gateway4: ipaddress.IPv4Address
    gateway6: ipaddress.IPv6Address | None
    mac: str
    zk_id: int | None = None
    zk_port: int | None = None

    @property
    def is_mail_node(self) -> bool:
        return self.kind in ("relay", "store", "fallback")

    @property
    def address(self) -> str:
        return str(self.addresses[0].ip)


@dataclass(frozen=True)
class Segment:
    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    router: ipaddress.IPv4Interface
    subnet6: ipaddress.IPv6Network | None
    router6: ipaddress.IPv6Interface | None
    mac: str


@dataclass(frozen=True)
class Vip:
    role: str
    tier: str
    address: Iface
    interface: str
    segment: str

    @property
    def ip(self) -> str:
        return str(self.address.ip)


@dataclass(frozen=True)
class LabPlan:
    prefix: str
    domain: str
    segments: tuple[Segment, ...]
    hosts: tuple[Host, ...]
    vips: tuple[Vip, ...]
    router_ns: str = field(default="")

    def ns(self, name: str) -> str:
        return self.prefix + name

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join([ROUTER, *(h.name for h in self.hosts)])
        raise UserError(f"no lab host named {name!r} (hosts: {known})")

    def names(self) -> list[str]:
        """Every namespace's short name, router first."""
        return [ROUTER, *(h.name for h in self.hosts)]

    def of_kind(self, *kinds: str) -> list[Host]:
        return [h for h in self.hosts if h.kind in kinds]

    def segment(self, name: str) -> Segment:
        return next(s for s in self.segments if s.name == name)


def _mac(prefix: int, addr: ipaddress.IPv4Address) -> str:
    """Locally administered MAC derived from an IPv4 address: readable in neighbour tables."""
    return ":".join(f"{b:02x}" for b in (0x02, prefix, *addr.packed))


def _v6_twin(v4: ipaddress.IPv4Address, seg: SegmentSpec) -> ipaddress.IPv6Interface | None:
    """fd00:113::10 for 203.0.113.10: the host part's decimal digits read as hex, like the spec's."""
    if seg.subnet6 is None:
        return None
    host = int(v4) - int(seg.subnet.network_address)
    addr = ipaddress.IPv6Address(int(seg.subnet6.network_address) + int(str(host), 16))
    return ipaddress.IPv6Interface(f"{addr}/{seg.subnet6.prefixlen}")


def _check_allowed(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, where: str, source: str) -> None:
    if not any(addr.version == n.version and addr in n for n in ALLOWED_NETS):
        raise UserError(
            f"{source}: {where}: {addr} is outside the lab's allowed ranges "
            "(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, fd00::/8)"
        )


def _segment_of(addr: ipaddress.IPv4Address, segs: tuple[SegmentSpec, ...], where: str, source: str) -> SegmentSpec:
    for s in segs:
        if addr in s.subnet:
            return s
    nets = ", ".join(f"{s.name} {s.subnet}" for s in segs)
    raise UserError(f"{source}: {where}: {addr} is in no lab segment ({nets})")


def _peer_name(name: str, taken: set[str]) -> str:
    """Router-side veth name: at most 15 characters (IFNAMSIZ), unique."""
    cand = ("v-" + name)[:15]
    i = 0
    while cand in taken:
        i += 1
        cand = f"v{i}-{name}"[:15]
    taken.add(cand)
    return cand


def _line_of(text: str | None, needle: str) -> int:
    """1-based line of the first occurrence of `needle` in the spec text (1 if unknown)."""
    if not text or not needle:
        return 1
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i
    return 1


def build_plan(spec: ClusterSpec, prefix: str = DEFAULT_PREFIX, text: str | None = None) -> LabPlan:
    """The lab for `spec`, or UserError naming FILE:LINE: field of what can't be built.
    `text` is the spec's source text, used only to find line numbers."""
    def loc(needle: str) -> str:
        return f"{spec.source}:{_line_of(text, needle)}"

    if spec.lab is None:
        raise UserError(f"{loc('lab:')}: lab: section missing (segments, client, dns): this spec can't be run as a lab")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,15}", prefix):
        raise UserError(f"lab prefix {prefix!r} must match [a-z][a-z0-9-]{{0,15}}")
    lab = spec.lab
    segs: list[Segment] = []
    for s in lab.segments:
        _check_allowed(s.subnet.network_address, f"lab.segments.{s.name}.subnet", loc(str(s.subnet)))
        _check_allowed(s.subnet.broadcast_address, f"lab.segments.{s.name}.subnet", loc(str(s.subnet)))
        r6 = None
        if s.subnet6 is not None:
            _check_allowed(s.subnet6.network_address, f"lab.segments.{s.name}.subnet6", loc(str(s.subnet6)))
            r6 = ipaddress.IPv6Interface(f"{s.subnet6.network_address + 1}/{s.subnet6.prefixlen}")
        segs.append(Segment(s.name, f"br-{s.name}"[:15], s.subnet,
                            ipaddress.IPv4Interface(f"{s.router}/{s.subnet.prefixlen}"), s.subnet6, r6,
                            _mac(0xFE, s.router)))

    hosts: list[Host] = []
    taken: set[str] = set()
    used: dict[str, str] = {str(s.router.ip): f"router ({s.name})" for s in segs}

    def add(name: str, kind: str, iface: str, addrs: list[Iface], where: str, **kw: int) -> None:
        if len(prefix + name) > 60:
            raise UserError(f"{loc(name)}: {where}: namespace name {prefix + name!r} is too long")
        v4 = [a for a in addrs if isinstance(a, ipaddress.IPv4Interface)]
        if not v4:
            raise UserError(f"{loc(name)}: {where}: a lab host needs an IPv4 address")
        for a in addrs:
            _check_allowed(a.ip, where, loc(str(a.ip)))
            if str(a.ip) in used:
                raise UserError(f"{loc(str(a.ip))}: {where}: {a.ip} is also the address of {used[str(a.ip)]}")
            used[str(a.ip)] = name
        seg = _segment_of(v4[0].ip, lab.segments, where, loc(str(v4[0].ip)))
        if not any(isinstance(a, ipaddress.IPv6Interface) for a in addrs):
            twin = _v6_twin(v4[0].ip, seg)
            if twin is not None:
                addrs = [*addrs, twin]
        s6 = next(s for s in segs if s.name == seg.name)
        hosts.append(Host(name, kind, seg.name, iface, _peer_name(name, taken), tuple(addrs), seg.router,
                          s6.router6.ip if s6.router6 else None, _mac(0x00, v4[0].ip), **kw))

    for node in spec.nodes.values():
        if node.name in RESERVED or re.fullmatch(r"zk\d+", node.name):
            raise UserError(f"{loc('name: ' + node.name)}: nodes.{node.name}: name is reserved in the lab ({', '.join(RESERVED)}, zkN)")
        add(node.name, node.tier, node.interface, list(node.addresses), f"nodes.{node.name}.addresses")
    add("client", "client", "eth0", [lab.client], "lab.client.address")
    add("dns", "dns", "eth0", [lab.dns], "lab.dns.address")
    for i, hp in enumerate(spec.zookeeper.hosts, start=1):
        host, _, port = hp.rpartition(":")
        host = host.strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise UserError(f"{loc(hp)}: zookeeper.hosts[{i - 1}]: the lab needs IP addresses, got {host!r}") from None
        if ip.version != 4:
            raise UserError(f"{loc(hp)}: zookeeper.hosts[{i - 1}]: the lab needs IPv4 ZooKeeper addresses, got {ip}")
        seg = _segment_of(ip, lab.segments, f"zookeeper.hosts[{i - 1}]", loc(hp))
        add(f"zk{i}", "zk", "eth0", [ipaddress.IPv4Interface(f"{ip}/{seg.subnet.prefixlen}")],
            f"zookeeper.hosts[{i - 1}]", zk_id=i, zk_port=int(port))

    vips: list[Vip] = []
    for role in spec.roles.values():
        for i, v in enumerate(role.vips):
            _check_allowed(v.address.ip, f"roles.{role.name}.vip[{i}].address", loc(str(v.address.ip)))
            vseg = next((s for s in segs if (v.address.ip in s.subnet if v.family == 4
                                             else s.subnet6 is not None and v.address.ip in s.subnet6)), None)
            if vseg is None:
                raise UserError(f"{loc(str(v.address.ip))}: roles.{role.name}.vip[{i}].address: {v.address.ip} is in no lab segment")
            vips.append(Vip(role.name, role.tier, v.address, v.interface, vseg.name))
    return LabPlan(prefix, spec.mail.domain, tuple(segs), tuple(hosts), tuple(vips), prefix + ROUTER)
