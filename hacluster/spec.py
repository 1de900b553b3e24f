"""The cluster spec: one YAML file, loaded into frozen dataclasses.

Every problem is reported as `FILE:LINE: field: what is wrong`, all of them at once, and an invalid
file yields no spec at all (nothing downstream ever sees a half-valid cluster). The same file
drives production agents and the namespace lab, so the lab rehearses exactly what is deployed.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any, Mapping

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .errors import UserError
from .yamlread import ProblemsError, Reader, kind, load_yaml, read_text
from .notify_config import NotifyConfig, read_notify
from .fence_spec import FenceSpec, read_fence, resource_requires_fencing
from .placement_spec import KEYS as PLACEMENT_KEYS, Placement, placement_problems, read_placement
from .timing import PROFILES, Timing, timing_problems

TIERS = ("relay", "store", "fallback")

#: allowed parameters per resource type (the resource modules document their meaning)
RESOURCE_PARAMS: dict[str, frozenset[str]] = {
    "command": frozenset({"start", "stop", "monitor", "promote", "demote", "timeout_s", "env", "require_fencing"}),
    "vip": frozenset({"garp_count", "garp_interval_s", "refresh_s", "dad_timeout_s", "guard"}),
    "mta": frozenset({"config_dir", "restart_attempts", "kind", "warm_address", "cgroup", "require_fencing"}),
    "spool": frozenset({"mode", "device", "path", "mount_options", "peer", "replicate_port", "fstype", "subdirs",
                        "umount_wait_s", "listen", "catchup_timeout_s", "require_catchup", "drain_timeout_s",
                        "scan_interval_s", "replicate_deletes", "require_fencing"}),
    "ocf": frozenset({"agent", "params", "timeout_s", "ocf_root", "instance", "require_fencing"}),
    "systemd": frozenset({"unit", "timeout_s", "require_fencing"}),
}


#: allowed parameters per health check type (constructor arguments of hacluster.health probes)
CHECK_PARAMS: dict[str, frozenset[str]] = {
    "smtp": frozenset({"host", "port", "ehlo_name", "warn_latency_s"}),
    "mta": frozenset({"config_dir", "max_restarts", "restart_window_s"}),
    "queue": frozenset({"config_dir", "warn_messages", "warn_age_s", "growth_window_s", "growth_min", "shape_top"}),
    "spool": frozenset({"path", "warn_free_pct", "warn_free_inodes_pct", "warn_free_bytes", "stale_tmp_s"}),
    "raid": frozenset({"mdstat", "arrays", "simulated"}),
    "command": frozenset({"exec", "on_fail"}),
    "link": frozenset({"interface", "on_fail"}),
    "config_digest": frozenset({"postconf", "files", "config_dir", "exclude"}),
    **{proto: frozenset({"host", "port", "tls", "ca_file", "server_name", "ehlo_name", "warn_cert_days"})
       for proto in ("imap", "pop3", "submission", "smtps")},
}
CHECK_COMMON = frozenset({"check", "scope", "interval_s", "timeout_s", "rise", "fall"})

# --------------------------------------------------------------------------- the objects


@dataclass(frozen=True)
class CheckSpec:
    """One health check of a tier. scope `node`: always run, decides candidacy; scope `holder`:
    only counts while this node holds a role (a standby store has no MTA or spool mounted)."""

    check: str
    scope: str = "node"
    interval_s: float = 2.0
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 3
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VipSpec:
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    interface: str

    @property
    def ip(self) -> str:
        return str(self.address.ip)

    @property
    def prefixlen(self) -> int:
        return self.address.network.prefixlen

    @property
    def family(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class ResourceSpec:
    type: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoleSpec:
    name: str
    tier: str
    vips: tuple[VipSpec, ...] = ()
    resources: tuple[ResourceSpec, ...] = ()
    #: resources that run on every candidate, holder or not (an MTA behind the VIP): started at
    #: agent start, never stopped on losing the role, so a takeover only moves the VIP
    run_on_standby: frozenset[str] = frozenset()
    #: who may hold it, preferences, anti-colocation, failback, exercise (placement_spec.py)
    placement: Placement = Placement()


@dataclass(frozen=True)
class NodeSpec:
    name: str
    tier: str
    interface: str
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]
    priority: int = 100
    mx_preference: int | None = None
    api_address: str | None = None  # where the agent's REST API listens; default: first address

    @property
    def address(self) -> str:
        """The node's first (primary) address, without prefix."""
        return str(self.addresses[0].ip)


@dataclass(frozen=True)
class ZkTlsSpec:
    """zookeeper.tls: talk to the ensemble's secureClientPort (docs/security.md)."""

    ca: str  # PEM CA bundle the servers' certificates must chain to
    cert: str | None = None  # PEM client certificate, for servers with ssl.clientAuth=need
    key: str | None = None  # its PEM private key


@dataclass(frozen=True)
class ZooKeeperSpec:
    hosts: tuple[str, ...]
    chroot: str = "/hacluster"
    session_timeout_s: float = 4.0
    auth_file: str | None = None
    history_keep: int = 1000  # transitions kept under /history; agents trim older ones (coord.session.trim_history)
    tls: ZkTlsSpec | None = None

    @property
    def connect_string(self) -> str:
        return ",".join(self.hosts)


@dataclass(frozen=True)
class MailSpec:
    domain: str
    admin: str | None = None


@dataclass(frozen=True)
class ApiSpec:
    port: int = 8740
    bind: str | None = None  # default: the node's api_address / first address
    token_file: str | None = None
    tls_cert: str | None = None  # PEM server certificate (chain): serve HTTPS
    tls_key: str | None = None  # its PEM private key
    tls_client_ca: str | None = None  # PEM CA bundle: every client must present a certificate it signed


@dataclass(frozen=True)
class SegmentSpec:
    name: str
    subnet: ipaddress.IPv4Network
    router: ipaddress.IPv4Address
    subnet6: ipaddress.IPv6Network | None = None


@dataclass(frozen=True)
class LabSpec:
    segments: tuple[SegmentSpec, ...]
    client: ipaddress.IPv4Interface
    dns: ipaddress.IPv4Interface


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    mail: MailSpec
    zookeeper: ZooKeeperSpec
    timing: Timing
    roles: Mapping[str, RoleSpec]
    nodes: Mapping[str, NodeSpec]
    api: ApiSpec = ApiSpec()
    lab: LabSpec | None = None
    source: str = "<memory>"
    health: Mapping[str, tuple[CheckSpec, ...]] = field(default_factory=dict)  # tier -> checks
    notify: NotifyConfig | None = None  # the `notify:` section; None: no notifications
    # failsafe mode (docs/safety.md "Failsafe mode"): while ZooKeeper is unreachable a holder keeps
    # its role as long as every other node of its tier confirms on the API, each loop
    failsafe: bool = False
    # fencing (docs/safety.md "Fencing"): `required` (default) or `self-only`; the `fence:` section
    fencing: str = "required"
    fence: FenceSpec | None = None
    #: `FILE:LINE: field: message` lines config check prints without refusing (a risk taken knowingly)
    warnings: tuple[str, ...] = ()

    def requires_fencing(self, role: str) -> bool:
        """ha.py rules 15-19 apply: a resource of the role requires fencing and the spec does not
        say `fencing: self-only`."""
        if self.fencing == "self-only":
            return False
        return any(resource_requires_fencing(r.type, r.params) for r in self.roles[role].resources)

    def node(self, name: str) -> NodeSpec:
        try:
            return self.nodes[name]
        except KeyError:
            raise UserError(f"{self.source}: no node named {name!r} (nodes: {', '.join(self.nodes)})") from None

    def roles_for(self, node: str) -> tuple[RoleSpec, ...]:
        """Roles this node may hold: those of its tier."""
        tier = self.nodes[node].tier
        return tuple(r for r in self.roles.values() if r.tier == tier)

    def candidates(self, role: str) -> tuple[NodeSpec, ...]:
        tier = self.roles[role].tier
        return tuple(n for n in self.nodes.values() if n.tier == tier)


# --------------------------------------------------------------------------- the reader


class SpecError(ProblemsError):
    """All problems of one spec file; str() is one `FILE:LINE: field: message` per line."""


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _name_ok(v: str) -> str | None:
    import re

    return None if re.fullmatch(r"[a-z][a-z0-9-]{0,62}", v) else "must match [a-z][a-z0-9-]* (at most 63 characters)"


def _iface(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if "/" not in str(text):
        raise ValueError("needs a prefix length, e.g. 192.0.2.11/24")
    return ipaddress.ip_interface(str(text))


# --------------------------------------------------------------------------- sections


def _read_zookeeper(r: Reader, root: CommentedMap) -> ZooKeeperSpec | None:
    m = r.mapping(root.get("zookeeper"), "zookeeper", {"hosts", "chroot", "session_timeout_s", "auth_file", "history_keep", "tls"},
                  r.line_of(root, "zookeeper"))
    if m is None:
        return None
    hosts = r.get(m, "hosts", "zookeeper", (list, str), required=True, default=[])
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    clean: list[str] = []
    for i, h in enumerate(hosts):
        h = str(h).strip()
        host, _, port = h.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            r.problem(r.line_of(m, "hosts"), f"zookeeper.hosts[{i}]", f"must be HOST:PORT, got {h!r}")
        clean.append(h)
    if not clean and hosts is not None and "hosts" in m:
        r.problem(r.line_of(m, "hosts"), "zookeeper.hosts", "must list at least one server")
    chroot = r.get(m, "chroot", "zookeeper", str, default="/hacluster",
                   check=lambda v: None if v.startswith("/") and not v.endswith("/") else "must start with / and not end with /")
    st = r.get(m, "session_timeout_s", "zookeeper", float, default=4.0, check=_positive)
    auth = r.get(m, "auth_file", "zookeeper", str)
    keep = r.get(m, "history_keep", "zookeeper", int, default=1000,
                 check=lambda v: None if v >= 1 else "must be >= 1 (transitions kept in ZooKeeper)")
    tls = _read_zk_tls(r, m) if "tls" in m else None
    return ZooKeeperSpec(tuple(clean), chroot, st, auth, keep, tls)


def _read_zk_tls(r: Reader, m: CommentedMap) -> ZkTlsSpec | None:
    t = r.mapping(m.get("tls"), "zookeeper.tls", {"ca", "cert", "key"}, r.line_of(m, "tls"))
    if t is None:
        return None
    ca = r.get(t, "ca", "zookeeper.tls", str, required=True)
    cert = r.get(t, "cert", "zookeeper.tls", str)
    key = r.get(t, "key", "zookeeper.tls", str)
    for have, needs in (("cert", "key"), ("key", "cert")):  # a client certificate comes with its key
        if (cert if have == "cert" else key) and not (key if have == "cert" else cert):
            r.problem(r.line_of(t, have), f"zookeeper.tls.{needs}", f"is required with zookeeper.tls.{have}")
    return ZkTlsSpec(ca, cert, key) if ca else None


def _read_timing(r: Reader, root: CommentedMap) -> Timing | None:
    node = root.get("timing", CommentedMap())
    allowed = {"profile", *Timing.__dataclass_fields__}
    m = r.mapping(node, "timing", allowed, r.line_of(root, "timing"))
    if m is None:
        return None
    profile = r.get(m, "profile", "timing", str, default="default",
                    check=lambda v: None if v in PROFILES else f"unknown profile (known: {', '.join(PROFILES)})")
    base = PROFILES.get(profile or "default", PROFILES["default"])
    overrides = {}
    for key in Timing.__dataclass_fields__:
        if key in m:
            v = r.get(m, key, "timing", float, check=_non_negative if key == "stall_s" else _positive)
            if v is not None:
                overrides[key] = v
    timing = base.replace(**overrides)
    for key, msg in timing_problems(timing):
        # point at the explicit value that broke it, else at the profile line
        where = key if key in m else ("profile" if "profile" in m else None)
        r.problem(r.line_of(m, where) if where else r.line_of(root, "timing"), f"timing.{key}", msg)
    return timing


def _read_roles(r: Reader, root: CommentedMap) -> dict[str, RoleSpec]:
    roles_node = root.get("roles")
    roles: dict[str, RoleSpec] = {}
    if not isinstance(roles_node, CommentedMap):
        r.problem(r.line_of(root, "roles"), "roles", "is required and must be a mapping of role name to role")
        return roles
    for name, body in roles_node.items():
        path = f"roles.{name}"
        line = r.line_of(roles_node, name)
        bad_name = _name_ok(str(name))
        if bad_name:
            r.problem(line, path, "role name " + bad_name)
        m = r.mapping(body, path, {"tier", "vip", "resources", "run_on_standby", *PLACEMENT_KEYS}, line)
        if m is None:
            continue
        tier = r.get(m, "tier", path, str, required=True,
                     check=lambda v: None if v in TIERS else f"unknown tier (known: {', '.join(TIERS)})")
        vips: list[VipSpec] = []
        vip_node = m.get("vip")
        vip_is_list = isinstance(vip_node, list)
        if isinstance(vip_node, CommentedMap):
            vip_node = [vip_node]
        if vip_node is not None and not isinstance(vip_node, list):
            r.problem(r.line_of(m, "vip"), f"{path}.vip", "must be a mapping or a list of mappings")
            vip_node = []
        for i, v in enumerate(vip_node or []):
            vpath = f"{path}.vip[{i}]" if vip_is_list else f"{path}.vip"
            vm = r.mapping(v, vpath, {"address", "interface"}, r.line_of(m, "vip"))
            if vm is None:
                continue
            addr = r.get(vm, "address", vpath, str, required=True)
            ifname = r.get(vm, "interface", vpath, str, required=True)
            if addr is not None:
                try:
                    vips.append(VipSpec(_iface(addr), ifname or ""))
                except ValueError as err:
                    r.problem(r.line_of(vm, "address"), f"{vpath}.address", f"not an address/prefix: {err}")
        resources: list[ResourceSpec] = []
        res_node = m.get("resources", [])
        if not isinstance(res_node, list):
            r.problem(r.line_of(m, "resources"), f"{path}.resources", f"must be a list, got {kind(res_node)}")
            res_node = []
        seen: set[str] = set()
        for i, rb in enumerate(res_node):
            rpath = f"{path}.resources[{i}]"
            rline = r.line_of(res_node, i)
            if not isinstance(rb, CommentedMap):
                r.problem(rline, rpath, f"must be a mapping, got {kind(rb)}")
                continue
            rtype = r.get(rb, "type", rpath, str, required=True,
                          check=lambda v: None if v in RESOURCE_PARAMS else f"unknown resource type (known: {', '.join(RESOURCE_PARAMS)})")
            allowed = {"type", "name", "monitor_interval_s", "on_fail"} | set(RESOURCE_PARAMS.get(rtype or "", ()))
            r.mapping(rb, rpath, allowed, rline)
            rname = r.get(rb, "name", rpath, str, default=rtype or f"resource{i}")
            if rname in seen:
                r.problem(rline, f"{rpath}.name", f"duplicate resource name {rname!r} in role {name}")
            seen.add(rname)
            if rtype == "command":
                for key in ("start", "stop"):
                    r.get(rb, key, rpath, str, required=True)
                for key in ("monitor", "promote", "demote"):
                    r.get(rb, key, rpath, str)
                r.get(rb, "timeout_s", rpath, float, check=_positive)
            if rtype == "systemd":
                r.get(rb, "unit", rpath, str, required=True,
                      check=lambda v: None if v.strip() and "/" not in v else "must name a unit, e.g. postfix@-.service")
                r.get(rb, "timeout_s", rpath, float, check=_positive)
            r.get(rb, "require_fencing", rpath, bool)
            # recurring monitor (resource_monitor.py): on_fail only means something with an interval
            r.get(rb, "monitor_interval_s", rpath, float, check=_positive)
            r.get(rb, "on_fail", rpath, str, check=lambda v: None if v in ("restart", "demote") else "must be restart or demote")
            if "on_fail" in rb and "monitor_interval_s" not in rb:
                r.problem(r.line_of(rb, "on_fail"), f"{rpath}.on_fail", "needs monitor_interval_s (when to run the monitor)")
            if rtype == "vip" and not vips:
                r.problem(rline, rpath, f"a vip resource needs {path}.vip")
            params = {k: _plain(v) for k, v in rb.items() if k not in ("type", "name")}
            if rtype:
                resources.append(ResourceSpec(rtype, rname, params))
        if vips and not any(res.type == "vip" for res in resources):
            # a role with a VIP always manages it, last in start order (clients arrive last)
            resources.append(ResourceSpec("vip", f"{name}-vip", {}))
        standby = _read_run_on_standby(r, m, path, resources)
        placement = read_placement(r, m, path)
        if tier:
            roles[str(name)] = RoleSpec(str(name), tier, tuple(vips), tuple(resources), standby, placement)
    return roles


#: resource types that must run on the holder alone (the address, the spool's writer)
HOLDER_ONLY = frozenset({"vip", "spool"})


def _read_run_on_standby(r: Reader, m: CommentedMap, path: str, resources: list[ResourceSpec]) -> frozenset[str]:
    """roles.R.run_on_standby: names of this role's resources that run on every candidate."""
    if "run_on_standby" not in m:
        return frozenset()
    node = m.get("run_on_standby")
    line = r.line_of(m, "run_on_standby")
    where = f"{path}.run_on_standby"
    if not isinstance(node, list) or not all(isinstance(x, str) for x in node):
        r.problem(line, where, f"must be a list of resource names, got {kind(node)}")
        return frozenset()
    types = {res.name: res.type for res in resources}
    out: set[str] = set()
    for name in node:
        if name not in types:
            r.problem(line, where, f"no resource named {name!r} in this role (resources: {', '.join(types) or 'none'})")
        elif types[name] in HOLDER_ONLY:
            r.problem(line, where, f"{name!r} is a {types[name]} resource: it may only run on the holder")
        else:
            out.add(name)
    return frozenset(out)


def _plain(v: Any) -> Any:
    if isinstance(v, CommentedMap):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, CommentedSeq):
        return [_plain(x) for x in v]
    return v


def _read_nodes(r: Reader, root: CommentedMap) -> dict[str, NodeSpec]:
    nodes: dict[str, NodeSpec] = {}
    seq = root.get("nodes")
    if not isinstance(seq, CommentedSeq) or not seq:
        r.problem(r.line_of(root, "nodes"), "nodes", "is required and must be a non-empty list")
        return nodes
    allowed = {"name", "tier", "interface", "addresses", "priority", "mx_preference", "api_address"}
    for i, body in enumerate(seq):
        path = f"nodes[{i}]"
        line = r.line_of(seq, i)
        m = r.mapping(body, path, allowed, line)
        if m is None:
            continue
        name = r.get(m, "name", path, str, required=True, check=_name_ok)
        tier = r.get(m, "tier", path, str, required=True,
                     check=lambda v: None if v in TIERS else f"unknown tier (known: {', '.join(TIERS)})")
        ifname = r.get(m, "interface", path, str, default="eth0")
        raw = r.get(m, "addresses", path, list, required=True, default=[])
        addrs = []
        for j, a in enumerate(raw):
            try:
                addrs.append(_iface(a))
            except ValueError as err:
                r.problem(r.line_of(m, "addresses"), f"{path}.addresses[{j}]", f"not an address/prefix: {err}")
        if "addresses" in m and isinstance(raw, list) and not raw:
            r.problem(r.line_of(m, "addresses"), f"{path}.addresses", "must list at least one address")
        prio = r.get(m, "priority", path, int, default=100, check=lambda v: None if 0 <= v <= 1000 else "must be 0..1000")
        mxp = r.get(m, "mx_preference", path, int, check=lambda v: None if 0 <= v <= 65535 else "must be 0..65535")
        api_addr = r.get(m, "api_address", path, str)
        if name is None or tier is None:
            continue
        if name in nodes:
            r.problem(r.line_of(m, "name"), f"{path}.name", f"duplicate node name {name!r}")
            continue
        nodes[name] = NodeSpec(name, tier, ifname, tuple(addrs), prio, mxp, api_addr)
    return nodes


def _read_lab(r: Reader, root: CommentedMap) -> LabSpec | None:
    if "lab" not in root:
        return None
    m = r.mapping(root["lab"], "lab", {"segments", "client", "dns"}, r.line_of(root, "lab"))
    if m is None:
        return None
    segs: list[SegmentSpec] = []
    sm = r.mapping(m.get("segments"), "lab.segments", {"internet", "public", "internal"}, r.line_of(m, "segments"))
    for sname, body in (sm or {}).items():
        path = f"lab.segments.{sname}"
        b = r.mapping(body, path, {"subnet", "router", "subnet6"}, r.line_of(sm, sname))
        if b is None:
            continue
        try:
            net = ipaddress.IPv4Network(r.get(b, "subnet", path, str, required=True) or "")
            router = ipaddress.IPv4Address(r.get(b, "router", path, str, required=True) or "")
            s6 = b.get("subnet6")
            segs.append(SegmentSpec(str(sname), net, router, ipaddress.IPv6Network(s6) if s6 else None))
            if router not in net:
                r.problem(r.line_of(b, "router"), f"{path}.router", f"{router} is outside {net}")
        except ValueError as err:
            r.problem(r.line_of(b), path, str(err))
    out: dict[str, ipaddress.IPv4Interface] = {}
    for key in ("client", "dns"):
        b = r.mapping(m.get(key), f"lab.{key}", {"address"}, r.line_of(m, key))
        if b is None:
            continue
        try:
            out[key] = ipaddress.IPv4Interface(_iface(r.get(b, "address", f"lab.{key}", str, required=True) or ""))
        except ValueError as err:
            r.problem(r.line_of(b, "address"), f"lab.{key}.address", str(err))
    if len(out) < 2 or not segs:
        return None
    return LabSpec(tuple(segs), out["client"], out["dns"])


def _command(v: object) -> str | None:
    """A command check's `exec`: a string (run by /bin/sh -c) or a non-empty list of strings (argv)."""
    if isinstance(v, str):
        return None if v.strip() else "must not be empty"
    if isinstance(v, list) and v and all(isinstance(a, str) for a in v):
        return None
    return "must be a command string or a non-empty list of strings"


def _read_health(r: Reader, root: CommentedMap) -> dict[str, tuple[CheckSpec, ...]]:
    if "health" not in root:
        return {}
    m = r.mapping(root["health"], "health", set(TIERS), r.line_of(root, "health"))
    out: dict[str, tuple[CheckSpec, ...]] = {}
    for tier, seq in (m or {}).items():
        path = f"health.{tier}"
        if not isinstance(seq, list):
            r.problem(r.line_of(m, tier), path, f"must be a list of checks, got {kind(seq)}")
            continue
        checks: list[CheckSpec] = []
        seen: set[str] = set()
        for i, body in enumerate(seq):
            cpath = f"{path}[{i}]"
            line = r.line_of(seq, i)
            if not isinstance(body, CommentedMap):
                r.problem(line, cpath, f"must be a mapping, got {kind(body)}")
                continue
            ctype = r.get(body, "check", cpath, str, required=True,
                          check=lambda v: None if v in CHECK_PARAMS else f"unknown check (known: {', '.join(CHECK_PARAMS)})")
            r.mapping(body, cpath, set(CHECK_COMMON | CHECK_PARAMS.get(ctype or "", frozenset())), line)
            if ctype in seen:
                r.problem(line, f"{cpath}.check", f"check {ctype!r} listed twice for tier {tier}")
            seen.add(ctype or "")
            scope = r.get(body, "scope", cpath, str, default="node",
                          check=lambda v: None if v in ("node", "holder") else "must be node or holder")
            interval = r.get(body, "interval_s", cpath, float, default=2.0, check=_positive)
            timeout = r.get(body, "timeout_s", cpath, float, default=1.0, check=_positive)
            rise = r.get(body, "rise", cpath, int, default=2, check=lambda v: None if v >= 1 else "must be >= 1")
            fall = r.get(body, "fall", cpath, int, default=3, check=lambda v: None if v >= 1 else "must be >= 1")
            if ctype == "spool":
                r.get(body, "path", cpath, str, required=True)
            if ctype == "command":
                r.get(body, "exec", cpath, object, required=True, check=_command)
            if ctype == "link":
                r.get(body, "interface", cpath, str, required=True)
            if ctype == "raid":
                r.get(body, "simulated", cpath, bool, default=False)
            if ctype in ("command", "link"):
                r.get(body, "on_fail", cpath, str, default="demote",
                      check=lambda v: None if v in ("demote", "unhealthy", "alert") else "must be demote, unhealthy or alert")
            if ctype == "config_digest":
                _read_config_digest(r, body, cpath, line)
            if ctype in ("imap", "pop3", "submission", "smtps"):
                r.get(body, "port", cpath, int, check=lambda v: None if 0 < v < 65536 else "must be 1..65535")
                tls = body.get("tls")
                if tls is not None and not isinstance(tls, bool) and tls != "starttls":
                    r.problem(r.line_of(body, "tls"), f"{cpath}.tls", f"must be true, false or starttls, got {tls!r}")
                r.get(body, "warn_cert_days", cpath, float, check=_positive)
            params = {k: _plain(v) for k, v in body.items() if k not in CHECK_COMMON}
            if ctype:
                checks.append(CheckSpec(ctype, scope, interval, timeout, rise, fall, params))
        out[str(tier)] = tuple(checks)
    return out


def _names_list(v: object) -> str | None:
    return None if isinstance(v, list) and all(isinstance(x, str) and x for x in v) else \
        f"must be a list of names, got {kind(v)}"


def _read_config_digest(r: Reader, body: CommentedMap, cpath: str, line: int) -> None:
    """`check: config_digest` (health/config_digest.py): postconf true or a parameter list, files."""
    pc = body.get("postconf", False)
    if not isinstance(pc, bool) and _names_list(pc):
        r.problem(r.line_of(body, "postconf"), f"{cpath}.postconf",
                  f"must be true, false or a list of parameter names, got {kind(pc)} {pc!r}")
    files = r.get(body, "files", cpath, list, default=[], check=_names_list)
    for f in files or []:
        if not str(f).startswith(("/", "{")):
            r.problem(r.line_of(body, "files"), f"{cpath}.files", f"{f!r} must be an absolute path")
    r.get(body, "config_dir", cpath, str)
    r.get(body, "exclude", cpath, list, check=_names_list)
    if not pc and not files:
        r.problem(line, cpath, "config_digest needs postconf: true (or a list of parameters) or files: [...]")


def _cross_checks(r: Reader, root: CommentedMap, roles: dict[str, RoleSpec], nodes: dict[str, NodeSpec]) -> None:
    """Checks between sections: VIPs inside their interface's subnet, unique addresses, roles with nodes."""
    node_seq = root.get("nodes")  # anything at all: _read_nodes reported it if it is not a list
    listed = node_seq if isinstance(node_seq, list) else []
    node_line = {n["name"]: r.line_of(n) for n in listed if isinstance(n, CommentedMap) and isinstance(n.get("name"), str)}
    seen_addr: dict[str, str] = {}
    for node in nodes.values():
        for a in node.addresses:
            ip = str(a.ip)
            if ip in seen_addr:
                r.problem(node_line.get(node.name, 1), f"nodes.{node.name}.addresses", f"{ip} is also an address of {seen_addr[ip]}")
            seen_addr[ip] = node.name
    roles_node = root.get("roles") or {}
    for role in roles.values():
        line = r.line_of(roles_node, role.name)
        body = roles_node.get(role.name)
        vline = r.line_of(body, "vip") if isinstance(body, CommentedMap) else line
        cands = [n for n in nodes.values() if n.tier == role.tier]
        if not cands:
            r.problem(line, f"roles.{role.name}.tier", f"no node has tier {role.tier!r}")
        for i, vip in enumerate(role.vips):
            vnode = body.get("vip") if isinstance(body, CommentedMap) else None
            if isinstance(vnode, CommentedSeq) and i < len(vnode):
                vline = r.line_of(vnode, i)  # list form: point at the item, not at `vip:`
            if vip.ip in seen_addr:
                r.problem(vline, f"roles.{role.name}.vip[{i}].address", f"{vip.ip} is a fixed address of {seen_addr[vip.ip]}")
            for node in cands:
                if node.interface != vip.interface:
                    r.problem(vline, f"roles.{role.name}.vip[{i}].interface",
                              f"{vip.interface!r} is not the interface of node {node.name} ({node.interface!r})")
                    continue
                nets = [a.network for a in node.addresses if a.version == vip.family]
                if not any(vip.address.ip in net for net in nets):
                    where = ", ".join(str(n) for n in nets) or f"no IPv{vip.family} address"
                    r.problem(vline, f"roles.{role.name}.vip[{i}].address",
                              f"{vip.address.ip} is outside the subnet of {node.name}'s {vip.interface} ({where})")


def parse_spec(text: str, source: str = "<memory>") -> ClusterSpec:
    """Parse and validate spec text; raise SpecError listing every problem."""
    root = load_yaml(text, source, SpecError)
    r = Reader(source)
    if not isinstance(root, CommentedMap):
        raise SpecError([f"{source}:1: (top): must be a mapping with cluster, zookeeper, roles, nodes"])
    r.mapping(root, "", {"cluster", "mail", "zookeeper", "timing", "roles", "nodes", "api", "lab", "health", "notify",
                         "failsafe", "fencing", "fence"}, 1)
    name = r.get(root, "cluster", "", str, required=True, check=_name_ok)
    mail_m = r.mapping(root.get("mail", CommentedMap()), "mail", {"domain", "admin"}, r.line_of(root, "mail"))
    mail = MailSpec(
        r.get(mail_m, "domain", "mail", str, default="example.org") if mail_m is not None else "example.org",
        r.get(mail_m, "admin", "mail", str) if mail_m is not None else None,
    )
    zk = _read_zookeeper(r, root) if "zookeeper" in root else None
    if zk is None and "zookeeper" not in root:
        r.problem(1, "zookeeper", "is required")
    timing = _read_timing(r, root)
    roles = _read_roles(r, root)
    nodes = _read_nodes(r, root)
    api_m = r.mapping(root.get("api", CommentedMap()), "api",
                      {"port", "bind", "token_file", "tls_cert", "tls_key", "tls_client_ca"}, r.line_of(root, "api"))
    api = ApiSpec()
    if api_m is not None:
        api = ApiSpec(
            r.get(api_m, "port", "api", int, default=8740, check=lambda v: None if 0 <= v < 65536 else "must be 0..65535 (0: no API)"),
            r.get(api_m, "bind", "api", str),
            r.get(api_m, "token_file", "api", str),
            *(r.get(api_m, k, "api", str) for k in ("tls_cert", "tls_key", "tls_client_ca")),
        )
        # TLS is all or nothing: a key without its certificate (or client CAs without TLS) is a typo
        for key, needs in (("tls_cert", "tls_key"), ("tls_key", "tls_cert"), ("tls_client_ca", "tls_cert")):
            if getattr(api, key) and not getattr(api, needs):
                r.problem(r.line_of(api_m, key), f"api.{needs}", f"is required with api.{key}")
    lab = _read_lab(r, root)
    health = _read_health(r, root)
    notify = read_notify(r, root, mail.admin)
    failsafe = r.get(root, "failsafe", "", bool, default=False)
    if failsafe and api.port == 0:  # the peers confirm on the API: without it failsafe could never act
        r.problem(r.line_of(root, "failsafe"), "failsafe", "needs the agent API (api.port is 0)")
    fencing, fence = read_fence(r, root, set(nodes))
    _cross_checks(r, root, roles, nodes)
    warnings = _fence_checks(r, root, roles, nodes, fencing, fence)
    if timing is not None:
        _guard_bound_checks(r, root, roles, timing)
    placement_problems(r, root.get("roles"), roles, nodes)
    if r.problems:
        raise SpecError(r.render())
    assert name is not None and zk is not None and timing is not None
    return ClusterSpec(name, mail, zk, timing, roles, nodes, api, lab, source, health, notify, failsafe,
                       fencing, fence, tuple(warnings))


def _resource_line(r: Reader, root: CommentedMap, role: str, index: int) -> int:
    body = (root.get("roles") or {}).get(role)
    seq = body.get("resources") if isinstance(body, CommentedMap) else None
    return r.line_of(seq, index) if isinstance(seq, CommentedSeq) else r.line_of(root, "roles")


def _fence_checks(r: Reader, root: CommentedMap, roles: dict[str, RoleSpec], nodes: dict[str, NodeSpec],
                  fencing: str, fence: FenceSpec | None) -> list[str]:
    """A role whose resources require fencing needs a fence device for every node of its tier,
    unless `fencing: self-only` (then a warning naming the risk). Returns the warnings."""
    warnings: list[str] = []
    for role in roles.values():
        needing = [(i, res) for i, res in enumerate(role.resources) if resource_requires_fencing(res.type, res.params)]
        if not needing:
            continue
        i, res = needing[0]
        fld = f"roles.{role.name}.resources[{i}]"
        line = _resource_line(r, root, role.name, i)
        what = ("a shared spool on a block device" if res.type == "spool" and "require_fencing" not in res.params
                else f"{res.type} resource {res.name!r} (require_fencing)")
        cands = sorted(n.name for n in nodes.values() if n.tier == role.tier)
        if fencing == "self-only":
            warnings.append(f"{r.source}:{line}: {fld}: fencing: self-only: {what} is protected by the holder's own "
                            "guard alone; a host that freezes whole (VM paused, kernel stall) runs no guard and, "
                            "waking after the takeover, can write the spool beside the new holder (filesystem "
                            "corruption, mail delivered twice); add a fence: section to close that window")
        elif fence is None:
            r.problem(line, fld, f"{what} needs host fencing: add a fence: section with an agent for every node of "
                                 f"tier {role.tier} ({', '.join(cands)}), or write `fencing: self-only` to rely on the "
                                 "holder's own guard alone (docs/safety.md, Fencing)")
        else:
            missing = [n for n in cands if n not in fence.devices]
            if missing:
                r.problem(r.line_of(root.get("fence"), "nodes") if isinstance(root.get("fence"), CommentedMap) else line,
                          "fence.nodes", f"no fence device for {', '.join(missing)}: role {role.name} ({what}) is "
                          "taken over only after its silent holder was fenced")
    return warnings


def _guard_bound_checks(r: Reader, root: CommentedMap, roles: dict[str, RoleSpec], timing: Timing) -> None:
    """Inequality (S) for every resource: the role's guard must finish within stop_timeout_s."""
    from .guard_bound import bound_problems_of

    tm = root.get("timing")
    line = r.line_of(tm, "stop_timeout_s") if isinstance(tm, CommentedMap) and "stop_timeout_s" in tm else \
        r.line_of(tm, "profile") if isinstance(tm, CommentedMap) else r.line_of(root, "roles")
    for _role, msg in bound_problems_of(roles.values(), timing):
        r.problem(line, "timing.stop_timeout_s", msg)


def load_spec(path: str | os.PathLike[str] | None = None) -> ClusterSpec:
    """Load a spec file; None means the embedded lab spec (for the lab's own code: commands
    choose their file with hacluster.config_path, which never falls back to the lab)."""
    if path is None:
        text = default_spec_text()
        return parse_spec(text, "hacluster/examples/lab.yml")
    p = Path(path)
    text = read_text(p, SpecError)
    return parse_spec(text, str(p))


def default_spec_text() -> str:
    return importlib_resources.files("hacluster.examples").joinpath("lab.yml").read_text()


def default_spec_path() -> Path:
    return Path(str(importlib_resources.files("hacluster.examples").joinpath("lab.yml")))
