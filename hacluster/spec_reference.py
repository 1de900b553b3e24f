"""The config reference (docs/config-reference.md) and the JSON Schema for editors
(docs/cluster.schema.json), generated from the validator itself.

Which keys exist, their types, defaults and whether they are required are not written down a
second time: `discover()` runs hacluster.spec.parse_spec over the embedded lab spec and a sample
that names every resource and check type, with a Reader that records each `mapping(allowed=...)`
and `get(typ, default, required)` call the validator makes. Only the one-line descriptions live
here (DOCS); tests/unit/test_spec_reference.py fails when a key the validator accepts has none,
when DOCS describes a key it does not accept, or when either generated file is stale.

    python -m hacluster.spec_reference          # rewrite both files
    python -m hacluster.spec_reference --check  # exit 1 if either is stale
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from unittest import mock

from . import spec as spec_mod
from .timing import PROFILES, Timing
from .yamlread import Reader, join

#: a sample naming every resource type and check type (not a valid cluster: only what the
#: validator *asks* for is recorded, whatever it then finds)
_SAMPLE = """
cluster: sample
mail: {domain: example.org, admin: postmaster@example.org}
zookeeper: {hosts: [127.0.0.1:2181], tls: {ca: /ca.pem}}
timing: {%(timing)s}
roles:
  r:
    tier: store
    vip: [{address: 192.0.2.10/24, interface: eth0}]
    resources:
%(resources)s
nodes: [{name: n1, tier: store, addresses: [192.0.2.11/24]}]
api: {port: 8740}
health:
  store:
%(checks)s
notify: {scripts: [/bin/true], sendmail: /usr/sbin/sendmail, outbox: /var/tmp/outbox}
failsafe: false
"""


@dataclass
class Key:
    path: str  # normalised: roles.<role>.resources[type=vip].guard
    types: tuple[str, ...] = ()  # JSON types; () = any (passed on as written)
    required: bool = False
    default: Any = None
    children: bool = False  # a mapping or list with keys of its own below


@dataclass
class _Recorder:
    keys: dict[str, Key] = field(default_factory=dict)

    def key(self, path: str) -> Key:
        return self.keys.setdefault(path, Key(path))


_JSON = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def _json_types(typ: Any) -> tuple[str, ...]:
    types = typ if isinstance(typ, tuple) else (typ,)
    return tuple(_JSON[t] for t in types if t in _JSON)


def _normalise(path: str, node: Any) -> str:
    """roles.store.resources[1] -> roles.<role>.resources[type=vip], nodes[3] -> nodes[] ..."""
    path = re.sub(r"^roles\.[^.\[]+", "roles.<role>", path)
    path = re.sub(r"\.vip(\[\d+\])?(?=\.|$)", ".vip[]", path)
    path = re.sub(r"^nodes\[\d+\]", "nodes[]", path)
    path = re.sub(r"^lab\.segments\.(internet|public|internal)(?=\.)", "lab.segments.<segment>", path)
    if re.search(r"resources\[\d+\]", path):
        t = node.get("type") if hasattr(node, "get") else None
        path = re.sub(r"resources\[\d+\]", f"resources[type={t}]", path)
    m = re.match(r"^health\.(relay|store|fallback)\[\d+\]", path)
    if m:
        c = node.get("check") if hasattr(node, "get") else None
        path = re.sub(r"^health\.(relay|store|fallback)\[\d+\]", f"health.<tier>[check={c}]", path)
    return path


def _recording_reader(rec: _Recorder) -> type[Reader]:
    class Recording(Reader):
        def mapping(self, node: Any, path: str, allowed: set[str] | None, line: int) -> Any:
            if allowed is not None:
                if path:
                    rec.key(_normalise(path, node)).children = True
                for k in allowed:
                    rec.key(_normalise(join(path, k), node))
            return super().mapping(node, path, allowed, line)

        def get(self, m: Any, key: str, path: str, typ: Any, *, required: bool = False, default: Any = None,
                check: Callable[[Any], str | None] | None = None) -> Any:
            if m is not None:
                k = rec.key(_normalise(join(path, key), m))
                k.types = k.types or _json_types(typ)
                k.required = k.required or required
                k.default = default if k.default is None else k.default
            return super().get(m, key, path, typ, required=required, default=default, check=check)

    return Recording


def discover() -> dict[str, Key]:
    """Every key the validator accepts, as it asks for them."""
    rec = _Recorder()
    resources = "\n".join(f"      - {{type: {t}}}" for t in spec_mod.RESOURCE_PARAMS)
    checks = "\n".join(f"    - {{check: {c}}}" for c in spec_mod.CHECK_PARAMS)
    timing = ", ".join(f"{k}: 1" for k in Timing.__dataclass_fields__)
    samples = [spec_mod.default_spec_text(), _SAMPLE % {"resources": resources, "checks": checks, "timing": timing}]
    with mock.patch.object(spec_mod, "Reader", _recording_reader(rec)):
        for text in samples:
            try:
                spec_mod.parse_spec(text, "sample")
            except spec_mod.SpecError:
                pass  # the sample is not a cluster; what was asked for is recorded all the same
    keys = rec.keys
    for name, value in vars(PROFILES["default"]).items():  # timing keys default to the profile's
        if f"timing.{name}" in keys:
            keys[f"timing.{name}"].default = value
    keys["timing.profile"].default = "default"
    return dict(sorted(keys.items()))


# --------------------------------------------------------------------------- the descriptions

_COMMON_CHECK = {
    "scope": "`node` (always run, decides candidacy) or `holder` (counts only while this node holds a role)",
    "interval_s": "seconds between two runs of the check",
    "timeout_s": "a run that takes longer fails",
    "rise": "consecutive passes before a failed check counts as passing again",
    "fall": "consecutive failures before the check counts as failed",
}

DOCS: dict[str, str] = {
    "cluster": "the cluster's name: its ZooKeeper root is `<chroot>/<cluster>`",
    "fencing": "`required` (default) or `self-only`: a shared block-device spool without `fence:` is refused unless `self-only` (then a warning names the risk; docs/safety.md \"Fencing\")",
    "fence": "host fencing through standard fence agents: `{timeout_s, secrets_file (absolute, mode 0600), nodes: {NODE: {agent, params}}}`; a silent holder of a role that requires fencing is fenced (off, then status confirms off) before takeover (ha.py rules 15-19)",
    "failsafe": "keep a holder cut off from ZooKeeper in its role while every tier peer confirms on the API (docs/safety.md, \"Failsafe mode\")",
    "mail": "the mail domain and the address alerts go to",
    "mail.domain": "the mail domain (MX lint, the lab's DNS)",
    "mail.admin": "where notifications are mailed (`notify`)",
    "zookeeper": "the coordination service",
    "zookeeper.hosts": "the ensemble, `HOST:PORT` each (a list or one comma-separated string)",
    "zookeeper.chroot": "znode under which every cluster lives",
    "zookeeper.session_timeout_s": "ZooKeeper session timeout asked for",
    "zookeeper.auth_file": "file with `user:password` (mode 0600): digest ACL on every znode (docs/security.md)",
    "zookeeper.history_keep": "transitions kept under /history; agents trim older ones",
    "zookeeper.tls": "talk TLS to the servers' secureClientPort (docs/security.md)",
    "zookeeper.tls.ca": "PEM CA bundle the servers' certificates must chain to",
    "zookeeper.tls.cert": "PEM client certificate (servers with ssl.clientAuth=need); with `key`",
    "zookeeper.tls.key": "its PEM private key",
    "timing": "lease timing: a profile, explicit keys override it; must satisfy (S) and (L) (docs/safety.md)",
    "timing.profile": "`default` (lease 2.05 s, renewal every 1.05 s), `fast` (0.3 s) or `relaxed` (5 s)",
    "timing.lease_s": "how long a candidate must see the lease unchanged before taking it",
    "timing.loop_s": "agent loop period",
    "timing.request_timeout_s": "one ZooKeeper request (a renewal) gives up after this",
    "timing.margin_s": "the holder stops this long before a candidate could take over",
    "timing.stop_timeout_s": "bound on stopping the role's fast resources (VIP removal)",
    "timing.max_drift": "clock-rate error bound",
    "timing.stagger_s": "extra wait per rank for lower-ranked candidates (0: lease_s/4)",
    "timing.heartbeat_s": "an unchanged heartbeat is refreshed this often (changes go out at once)",
    "timing.stall_s": "a ZooKeeper write stall (a server's GC pause) the holder rides out without losing its lease "
                      "(sets how often it renews: timing.renew_s)",
    "roles": "role name -> role: what moves between the nodes of one tier",
    "roles.<role>": "one role",
    "roles.<role>.tier": "`relay`, `store` or `fallback`: the nodes that may hold it",
    "roles.<role>.nodes": "the nodes of the tier that may hold the role (default: all; ha.py rule 30)",
    "roles.<role>.prefer": "node -> weight added to its priority when ranking (rule 31)",
    "roles.<role>.avoid_with": "roles of the tier this one should not share a node with (soft anti-colocation, rule 32)",
    "roles.<role>.failback": "`{delay_s}`: hand the role back to the preferred node once it has been eligible that long (rule 33); absent = sticky",
    "roles.<role>.exercise": "`{every, at, hold}`: switch over and back on a schedule, with a report mail",
    "roles.<role>.vip[]": "the role's virtual address(es): a mapping or a list of them",
    "roles.<role>.vip[].address": "address/prefix, IPv4 or IPv6, inside the candidates' subnet",
    "roles.<role>.vip[].interface": "interface it goes on (the candidates' `interface`)",
    "roles.<role>.resources": "started in order on the holder, stopped in reverse; a vip resource is added last if missing",
    "roles.<role>.run_on_standby": "names of resources that run on every candidate, holder or not (not vip, spool)",
    "roles.<role>.resources[type=command]": "shell commands as a resource",
    "roles.<role>.resources[type=command].type": "resource type",
    "roles.<role>.resources[type=command].monitor_interval_s": "run the resource's monitor this often while held (Pacemaker's recurring monitor)",
    "roles.<role>.resources[type=command].on_fail": "`restart` (in place; demote after 3 failures in 10 min) or `demote` when the monitor fails",
    "roles.<role>.resources[type=command].require_fencing": "take this role over from a silent holder only after fencing it (default: true for a shared spool on a block device, else false)",
    "roles.<role>.resources[type=command].name": "resource name (default: the type)",
    "roles.<role>.resources[type=command].start": "command run to start (exit 0 = started)",
    "roles.<role>.resources[type=command].stop": "command run to stop",
    "roles.<role>.resources[type=command].monitor": "command: exit 0 running, 7 stopped, else failed",
    "roles.<role>.resources[type=command].promote": "command run when the role is acquired, after start",
    "roles.<role>.resources[type=command].demote": "command run when the role is given up, before stop",
    "roles.<role>.resources[type=command].timeout_s": "bound on each command (default 20)",
    "roles.<role>.resources[type=command].env": "extra environment variables (mapping)",
    "roles.<role>.resources[type=vip]": "the role's VIP(s) with gratuitous ARP / unsolicited NA (docs/vip.md)",
    "roles.<role>.resources[type=vip].type": "resource type",
    "roles.<role>.resources[type=vip].monitor_interval_s": "run the resource's monitor this often while held (Pacemaker's recurring monitor)",
    "roles.<role>.resources[type=vip].on_fail": "`restart` (in place; demote after 3 failures in 10 min) or `demote` when the monitor fails",
    "roles.<role>.resources[type=vip].require_fencing": "take this role over from a silent holder only after fencing it (default: true for a shared spool on a block device, else false)",
    "roles.<role>.resources[type=vip].name": "resource name (default: the type)",
    "roles.<role>.resources[type=vip].garp_count": "announcements per takeover (default 3)",
    "roles.<role>.resources[type=vip].garp_interval_s": "between two announcements (default 1.05, above the neighbour locktime)",
    "roles.<role>.resources[type=vip].refresh_s": "re-announce this often while held (default 30; 0 = never)",
    "roles.<role>.resources[type=vip].dad_timeout_s": "duplicate-address probe wait (default 0.075; 0 = no probe)",
    "roles.<role>.resources[type=vip].guard": "run the guard process that removes the VIP at the lease deadline (default true)",
    "roles.<role>.resources[type=mta]": "the MTA (Postfix) of the role (docs/vip.md)",
    "roles.<role>.resources[type=mta].type": "resource type",
    "roles.<role>.resources[type=mta].monitor_interval_s": "run the resource's monitor this often while held (Pacemaker's recurring monitor)",
    "roles.<role>.resources[type=mta].on_fail": "`restart` (in place; demote after 3 failures in 10 min) or `demote` when the monitor fails",
    "roles.<role>.resources[type=mta].cgroup": "cgroup v2 directory of the MTA: the role guard kills it whole (`cgroup.kill`) at the deadline; default the master's process group",
    "roles.<role>.resources[type=mta].require_fencing": "take this role over from a silent holder only after fencing it (default: true for a shared spool on a block device, else false)",
    "roles.<role>.resources[type=mta].name": "resource name (default: the type)",
    "roles.<role>.resources[type=mta].config_dir": "Postfix config directory (`{state_dir}` is replaced); default the system's",
    "roles.<role>.resources[type=mta].restart_attempts": "restarts tried before a failure counts (default 1)",
    "roles.<role>.resources[type=mta].kind": "`postfix`",
    "roles.<role>.resources[type=mta].warm_address": "HOST:PORT an SMTP session is opened to every 30 s so smtpd stays warm (`\"\"` off)",
    "roles.<role>.resources[type=spool]": "the mail spool: shared block device or mirrored Maildirs (docs/spool.md)",
    "roles.<role>.resources[type=spool].type": "resource type",
    "roles.<role>.resources[type=spool].monitor_interval_s": "run the resource's monitor this often while held (Pacemaker's recurring monitor)",
    "roles.<role>.resources[type=spool].on_fail": "`restart` (in place; demote after 3 failures in 10 min) or `demote` when the monitor fails",
    "roles.<role>.resources[type=spool].require_fencing": "take this role over from a silent holder only after fencing it (default: true for a shared spool on a block device, else false)",
    "roles.<role>.resources[type=spool].name": "resource name (default: the type)",
    "roles.<role>.resources[type=spool].mode": "`shared` (one device, mounted by the holder) or `mirrored` (replicated)",
    "roles.<role>.resources[type=spool].device": "shared: the block device",
    "roles.<role>.resources[type=spool].path": "the spool directory (mount point)",
    "roles.<role>.resources[type=spool].mount_options": "shared: mount options",
    "roles.<role>.resources[type=spool].fstype": "shared: filesystem type",
    "roles.<role>.resources[type=spool].subdirs": "shared: directories created after mounting",
    "roles.<role>.resources[type=spool].umount_wait_s": "shared: how long an unmount may take before a lazy one",
    "roles.<role>.resources[type=spool].peer": "mirrored: the peers' replication addresses",
    "roles.<role>.resources[type=spool].replicate_port": "mirrored: replication port (default 7925)",
    "roles.<role>.resources[type=spool].listen": "mirrored: where this node's receiver listens (default: its address)",
    "roles.<role>.resources[type=spool].catchup_timeout_s": "mirrored: bound on the catch-up at takeover (default 10)",
    "roles.<role>.resources[type=spool].require_catchup": "mirrored: refuse the takeover when the catch-up is incomplete",
    "roles.<role>.resources[type=spool].drain_timeout_s": "mirrored: bound on draining the replication queue at stop (default 1)",
    "roles.<role>.resources[type=spool].scan_interval_s": "mirrored: full rescan period (default 5)",
    "roles.<role>.resources[type=spool].replicate_deletes": "mirrored: replicate deletions too",
    "roles.<role>.resources[type=ocf]": "an OCF resource agent, as Pacemaker runs it (docs/ocf.md)",
    "roles.<role>.resources[type=ocf].type": "resource type",
    "roles.<role>.resources[type=ocf].monitor_interval_s": "run the resource's monitor this often while held (Pacemaker's recurring monitor)",
    "roles.<role>.resources[type=ocf].on_fail": "`restart` (in place; demote after 3 failures in 10 min) or `demote` when the monitor fails",
    "roles.<role>.resources[type=ocf].require_fencing": "take this role over from a silent holder only after fencing it (default: true for a shared spool on a block device, else false)",
    "roles.<role>.resources[type=ocf].name": "resource name (default: the type)",
    "roles.<role>.resources[type=ocf].agent": "`provider:agent`, e.g. `heartbeat:IPaddr2`",
    "roles.<role>.resources[type=ocf].params": "OCF_RESKEY_* parameters (mapping), checked against the agent's metadata",
    "roles.<role>.resources[type=ocf].timeout_s": "bound on each action (default 20)",
    "roles.<role>.resources[type=ocf].ocf_root": "OCF root (default /usr/lib/ocf)",
    "roles.<role>.resources[type=ocf].instance": "OCF_RESOURCE_INSTANCE (default: the resource name)",
    "roles.<role>.resources[type=systemd]": "an existing systemd unit, started and stopped through systemctl (Pacemaker's systemd: class)",
    "roles.<role>.resources[type=systemd].type": "resource type",
    "roles.<role>.resources[type=systemd].monitor_interval_s": "run the resource's monitor this often while held (Pacemaker's recurring monitor)",
    "roles.<role>.resources[type=systemd].on_fail": "`restart` (in place; demote after 3 failures in 10 min) or `demote` when the monitor fails",
    "roles.<role>.resources[type=systemd].require_fencing": "take this role over from a silent holder only after fencing it (default: true for a shared spool on a block device, else false)",
    "roles.<role>.resources[type=systemd].name": "resource name (default: the type)",
    "roles.<role>.resources[type=systemd].unit": "the unit, e.g. `postfix@-.service`",
    "roles.<role>.resources[type=systemd].timeout_s": "bound on each systemctl job (default 90)",
    "nodes": "every host that runs an agent",
    "nodes[]": "one node",
    "nodes[].name": "node name (what `agent --node` says)",
    "nodes[].tier": "`relay`, `store` or `fallback`",
    "nodes[].interface": "the interface its addresses and the role's VIPs are on",
    "nodes[].addresses": "its fixed addresses, address/prefix",
    "nodes[].priority": "candidate rank: higher first (0..1000)",
    "nodes[].mx_preference": "its MX preference (relays): `mx lint`, `mx simulate`",
    "nodes[].api_address": "where its agent API listens (default: its first address)",
    "api": "the agent's REST API (status, switchover, failsafe)",
    "api.port": "TCP port (0: no API)",
    "api.bind": "listen address (default: the node's api_address)",
    "api.token_file": "bearer token file for POST endpoints",
    "api.tls_cert": "PEM server certificate (chain): serve HTTPS",
    "api.tls_key": "its PEM private key",
    "api.tls_client_ca": "PEM CA bundle: every client must present a certificate it signed",
    "lab": "the network-namespace lab's own addresses (read only by `hacluster lab`)",
    "lab.segments": "the lab's segments",
    "lab.segments.internet": "the client's side of the router",
    "lab.segments.public": "the relays' segment",
    "lab.segments.internal": "the stores' and ZooKeeper's segment",
    "lab.segments.<segment>.subnet": "IPv4 subnet",
    "lab.segments.<segment>.router": "the router's address in it",
    "lab.segments.<segment>.subnet6": "IPv6 subnet",
    "lab.client": "the lab's client host",
    "lab.client.address": "its address/prefix",
    "lab.dns": "the lab's DNS server",
    "lab.dns.address": "its address/prefix",
    "health": "tier -> list of health checks (docs/health-policy.md)",
    "health.relay": "checks of the relay tier",
    "health.store": "checks of the store tier",
    "health.fallback": "checks of the fallback tier",
    "notify": "notifications on role changes and alarms: mail to mail.admin and/or scripts",
    "notify.sender": "From: address (default: hacluster@<node>)",
    "notify.smtp_port": "port of the relays the mail goes through",
    "notify.smtp_timeout_s": "bound on one SMTP delivery",
    "notify.sendmail": "absolute path of a sendmail to use instead of SMTP (null: none)",
    "notify.outbox": "directory notifications are written to as files (`{state_dir}`, `{node}`, `{cluster}`)",
    "notify.scripts": "absolute paths of scripts run with keepalived's notify arguments",
    "notify.script_timeout_s": "bound on one script run",
}

_PROTO_PARAMS = {"host": "address probed (default 127.0.0.1)", "port": "port (default the protocol's)",
                 "tls": "`implicit`/`true`, `starttls` or `false`: the TLS handshake made",
                 "ca_file": "CA bundle the certificate must verify against (default: not verified)",
                 "server_name": "SNI / certificate name", "ehlo_name": "EHLO name (submission, smtps)",
                 "warn_cert_days": "a certificate expiring sooner warns"}

_CHECK_DOCS = {
    "smtp": ("an SMTP banner/EHLO probe", {"host": "address probed (default 127.0.0.1)", "port": "port (default 25)",
                                          "ehlo_name": "EHLO name", "warn_latency_s": "slower than this warns"}),
    "mta": ("the MTA's master process runs (restarted up to a bound)", {
        "config_dir": "Postfix config directory", "max_restarts": "restarts within the window before failing",
        "restart_window_s": "the window"}),
    "queue": ("the MTA queue's size and age", {
        "config_dir": "Postfix config directory", "warn_messages": "more messages than this warns",
        "warn_age_s": "an older message warns", "growth_window_s": "window for the growth alarm",
        "growth_min": "growth within the window that alarms", "shape_top": "destinations shown by `status --qshape`"}),
    "spool": ("the spool's free space and leftovers", {
        "path": "the spool directory", "warn_free_pct": "less free space (%) warns",
        "warn_free_inodes_pct": "fewer free inodes (%) warns", "warn_free_bytes": "fewer free bytes warns",
        "stale_tmp_s": "older temporary files warn"}),
    "raid": ("md RAID state (/proc/mdstat)", {"mdstat": "file read (default /proc/mdstat)",
                                              "arrays": "arrays that must be present",
                                              "simulated": "the mdstat file is the lab's simulation (no md driver); status says so"}),
    "command": ("a command: exit 0 ok, 1 warning, else failed (keepalived's track_script)", {
        "exec": "command string (/bin/sh -c) or argv list", "on_fail": "`demote`, `unhealthy` or `alert`"}),
    "link": ("an interface's operstate/carrier (keepalived's track_interface)", {
        "interface": "the interface", "on_fail": "`demote`, `unhealthy` or `alert`"}),
    "config_digest": ("the mail configuration's digest, compared with the tier peers (config drift)", {
        "postconf": "`true` (every `postconf -n` parameter) or a list of parameters",
        "files": "files whose contents are compared (`{state_dir}` is replaced)",
        "config_dir": "Postfix config directory", "exclude": "postconf parameters left out (host-specific)"}),
    "imap": ("IMAP: TLS handshake, greeting and CAPABILITY (Dovecot)", _PROTO_PARAMS),
    "pop3": ("POP3: TLS handshake, greeting and CAPA", _PROTO_PARAMS),
    "submission": ("submission (587): STARTTLS and EHLO", _PROTO_PARAMS),
    "smtps": ("SMTPS (465): implicit TLS and EHLO", _PROTO_PARAMS),
}
for _c, (_what, _params) in _CHECK_DOCS.items():
    DOCS[f"health.<tier>[check={_c}]"] = _what
    DOCS[f"health.<tier>[check={_c}].check"] = "check type"
    for _k, _v in {**_COMMON_CHECK, **_params}.items():
        DOCS[f"health.<tier>[check={_c}].{_k}"] = _v


# --------------------------------------------------------------------------- rendering


def _fmt_default(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "`true`" if v else "`false`"
    if isinstance(v, float) and v.is_integer():
        return f"`{v:g}`"
    return f"`{json.dumps(v) if not isinstance(v, str) else v}`"


def render_markdown(keys: dict[str, Key]) -> str:
    out = ["# Cluster spec reference", "",
           "<!-- generated by `python -m hacluster.spec_reference` from the validator (hacluster/spec.py); "
           "do not edit: tests/unit/test_spec_reference.py fails when it is stale -->", "",
           "Every key `hacluster config check` accepts. `hacluster/examples/lab.yml` is the worked example;",
           "[cluster.schema.json](cluster.schema.json) is the same as a JSON Schema for editors (YAML language",
           "servers: `# yaml-language-server: $schema=.../cluster.schema.json`). `<role>`, `<tier>`, `<segment>` stand",
           "for names; `resources[type=X]` and `[check=X]` are list items of that type. A type left empty is",
           "passed to the resource as written (its module checks it when the agent builds it).", ""]
    section = None
    for path, k in keys.items():
        top = path.split(".")[0].split("[")[0]
        if top != section:
            section = top
            out += ["", f"## `{top}`", "", "| key | type | default | required | meaning |", "|---|---|---|---|---|"]
        typ = " or ".join(k.types) + (" (mapping)" if k.children and not k.types else "")
        out.append(f"| `{path}` | {typ} | {_fmt_default(k.default)} | {'yes' if k.required else ''} | "
                   f"{DOCS.get(path, '').replace('|', '/')} |")
    return "\n".join(out) + "\n"


def _schema_for(keys: dict[str, Key], prefix: str) -> dict[str, Any]:
    """The object schema of the mapping at `prefix` ('' = the top)."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for path, k in keys.items():
        rest = path[len(prefix) + 1:] if prefix else path
        if prefix and not path.startswith(prefix + "."):
            continue
        name = rest.split("[")[0]
        # deeper keys belong to their own mapping; `nodes[]` is the list's item, not a key
        if not rest or "." in rest or "<" in name or rest == "nodes[]":
            continue
        props[name] = _value_schema(keys, path, k)
        if k.required:
            required.append(name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = sorted(required)
    return out


def _value_schema(keys: dict[str, Key], path: str, k: Key) -> dict[str, Any]:
    desc = {"description": DOCS.get(path, "")}
    base = path.split("[")[0] if path.endswith("[]") else path
    if path.endswith(".vip[]"):
        item = _schema_for(keys, path)
        return {**desc, "oneOf": [item, {"type": "array", "items": item}]}
    if path == "nodes":
        return {**desc, "type": "array", "items": _schema_for(keys, "nodes[]")}
    if path == "roles":
        return {**desc, "type": "object", "additionalProperties": _role_schema(keys)}
    if path in ("health.relay", "health.store", "health.fallback"):
        return {**desc, "type": "array", "items": _typed_items(keys, "health.<tier>[check=", "check")}
    if path == "lab.segments":
        seg = _schema_for(keys, "lab.segments.<segment>")
        return {**desc, "type": "object", "properties": {s: seg for s in ("internet", "public", "internal")},
                "additionalProperties": False}
    if k.children and any(p.startswith(base + ".") for p in keys):
        return {**desc, **_schema_for(keys, base)}
    if k.types:
        types = list(k.types) + ([] if k.required else ["null"])  # `key: null` reads as not set
        return {**desc, "type": types if len(types) > 1 else types[0]}
    return desc


def _role_schema(keys: dict[str, Key]) -> dict[str, Any]:
    role = _schema_for(keys, "roles.<role>")
    role["properties"]["resources"] = {"description": DOCS["roles.<role>.resources"], "type": "array",
                                       "items": _typed_items(keys, "roles.<role>.resources[type=", "type")}
    role["properties"]["run_on_standby"] = {"description": DOCS["roles.<role>.run_on_standby"], "type": "array",
                                            "items": {"type": "string"}}
    return role


def _typed_items(keys: dict[str, Key], head: str, tag: str) -> dict[str, Any]:
    """List items told apart by their `type`/`check` key: one if/then per kind."""
    kinds = sorted({p[len(head):].split("]")[0] for p in keys if p.startswith(head)})
    branches = []
    for kind in kinds:
        obj = _schema_for(keys, f"{head}{kind}]")
        obj["properties"][tag] = {"const": kind}
        branches.append({"if": {"properties": {tag: {"const": kind}}, "required": [tag]}, "then": obj})
    return {"type": "object", "required": [tag], "properties": {tag: {"enum": kinds}}, "allOf": branches}


def render_schema(keys: dict[str, Key]) -> str:
    top = _schema_for(keys, "")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "hacluster-cluster.schema.json",
              "title": "hacluster cluster spec",
              "description": "generated by `python -m hacluster.spec_reference` from hacluster/spec.py",
              **top}
    return json.dumps(schema, indent=1, sort_keys=False) + "\n"


def outputs(root: Path) -> dict[Path, str]:
    keys = discover()
    return {root / "docs" / "config-reference.md": render_markdown(keys),
            root / "docs" / "cluster.schema.json": render_schema(keys)}


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    stale = [p for p, text in outputs(root).items() if not p.exists() or p.read_text() != text]
    if "--check" in argv:
        for p in stale:
            print(f"{p}: stale (python -m hacluster.spec_reference)", file=sys.stderr)
        return 1 if stale else 0
    for p, text in outputs(root).items():
        p.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
