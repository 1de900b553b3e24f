"""The deploy inventory: Ansible-style YAML groups of hosts, loaded into frozen objects.

Why Ansible's shape: operators already have such files, and the same file can drive both tools
(`ansible_host`, `ansible_user`, `ansible_port`, `ansible_ssh_private_key_file` are accepted as
aliases). Every problem is `FILE:LINE: field: what is wrong`, all at once; an invalid inventory
deploys nothing. The format is documented in docs/deploy.md.

    all:
      vars: {spec: cluster.yml, prefix: /opt/hacluster, ssh_key: ~/.ssh/deploy}
      children:
        store:
          hosts:
            store1: {ssh_host: 198.51.100.11}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ruamel.yaml.comments import CommentedMap

from hacluster.errors import UserError
from hacluster.spec import SpecError
from hacluster.yamlread import Reader, kind, load_yaml, read_text

#: groups whose hosts run something of ours; any other group name is allowed and ignored
AGENT_GROUPS = ("relay", "store", "fallback")
KNOWN_GROUPS = ("zookeeper", *AGENT_GROUPS)
#: rollout order: coordination first, the mail path's backups before its primaries, stores last
GROUP_ORDER = ("zookeeper", "fallback", "relay", "store")

INSTALL_METHODS = ("wheelhouse", "pypi")
SERVICE_KINDS = ("auto", "systemd", "none")
ALIASES = {
    "ansible_host": "ssh_host",
    "ansible_user": "ssh_user",
    "ansible_port": "ssh_port",
    "ansible_ssh_private_key_file": "ssh_key",
}


def _port(v: int) -> str | None:
    return None if 0 < v < 65536 else "must be 1..65535"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _absolute(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute path on the target"


def _choice(options: tuple[str, ...]) -> Callable[[str], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


#: var -> (type, default, check, local path?)  -- local paths are resolved against the inventory's folder
VARS: dict[str, tuple[type | tuple[type, ...], Any, Callable[[Any], str | None] | None, bool]] = {
    "ssh_host": (str, None, None, False),             # address to connect to (default: the host's name)
    "ssh_user": (str, "root", None, False),
    "ssh_port": (int, 22, _port, False),
    "ssh_key": (str, None, None, True),               # private key file; unset: ssh-agent and ~/.ssh keys
    "known_hosts": (str, None, None, True),           # extra known_hosts file (besides ~/.ssh/known_hosts)
    "host_key_checking": (bool, True, None, False),   # false: accept unknown host keys (labs only)
    "connect_timeout": (float, 10.0, _positive, False),
    "become": (bool, False, None, False),             # run privileged steps with `sudo -n`
    "spec": (str, None, None, True),                  # the cluster spec (required)
    "zk_credentials": (str, None, None, True),        # "user:password" file -> PREFIX/etc/zk.auth (0600)
    "api_token": (str, None, None, True),             # bearer token file -> PREFIX/etc/api.token (0600)
    "install": (str, "wheelhouse", _choice(INSTALL_METHODS), False),
    "wheel": (str, None, None, True),                 # a prebuilt hacluster wheel (default: build from source)
    "wheelhouse": (str, None, None, True),            # a folder of dependency wheels (default: built with pip here)
    "prefix": (str, "/opt/hacluster", _absolute, False),
    "python": (str, "python3", None, False),          # interpreter on the target (>= 3.11, with venv)
    "service": (str, "auto", _choice(SERVICE_KINDS), False),
    "state_dir": (str, None, _absolute, False),       # agent --state-dir (default: systemd /run/hacluster/NODE, none PREFIX/run/state)
    "node": (str, None, None, False),                 # node name in the spec (default: the host's name)
    "verify_timeout": (float, 60.0, _positive, False),  # seconds for the agent to be healthy after a start
    "zk_id": (int, None, lambda v: None if 1 <= v <= 255 else "must be 1..255", False),
    "zk_peer_port": (int, 2888, _port, False),
    "zk_election_port": (int, 3888, _port, False),
    # with the spec's zookeeper.tls: zookeeper.hosts name the servers' secureClientPort; the plain
    # clientPort listens on 127.0.0.1 only (the deploy's probes, zkCli on the host)
    "zk_local_port": (int, 2181, _port, False),
    "zk_tls_keystore": (str, "/etc/zookeeper/tls/server.pem", _absolute, False),  # on the target: key + certificate chain, PEM
    "zk_tls_truststore": (str, None, _absolute, False),  # on the target: CA for client certificates (default: zookeeper.tls.ca)
}


class InventoryError(SpecError):
    """All problems of one inventory file, one `FILE:LINE: field: message` per line."""


@dataclass(frozen=True)
class Host:
    """One target: where to reach it, which groups it is in, and its merged vars."""

    name: str
    groups: tuple[str, ...]
    vars: Mapping[str, Any] = field(default_factory=dict)
    line: int = 1

    def var(self, key: str) -> Any:
        if key in self.vars:
            return self.vars[key]
        return VARS[key][1]

    @property
    def address(self) -> str:
        return self.var("ssh_host") or self.name

    @property
    def node(self) -> str:
        return self.var("node") or self.name

    @property
    def tier(self) -> str | None:
        """The agent tier this host serves (relay/store/fallback), None if it runs no agent."""
        for g in AGENT_GROUPS:
            if g in self.groups:
                return g
        return None

    @property
    def zookeeper(self) -> bool:
        return "zookeeper" in self.groups

    @property
    def target(self) -> str:
        return f"{self.var('ssh_user')}@{self.address}:{self.var('ssh_port')}"


@dataclass(frozen=True)
class Inventory:
    hosts: Mapping[str, Host]
    groups: Mapping[str, tuple[str, ...]]
    source: str = "<memory>"

    def select(self, limit: str | None) -> list[Host]:
        """Hosts named by `--limit` (comma-separated host or group names), all if None,
        in rollout order."""
        names = set(self.hosts)
        if limit:
            names = set()
            for word in (w.strip() for w in limit.split(",")):
                if not word:
                    continue
                if word in self.hosts:
                    names.add(word)
                elif word in self.groups:
                    names.update(self.groups[word])
                else:
                    raise UserError(f"--limit: no host or group named {word!r} in {self.source} "
                                    f"(hosts: {', '.join(self.hosts)}; groups: {', '.join(self.groups)})")
        return rollout_order([self.hosts[n] for n in names if n in self.hosts])

    def group(self, name: str) -> list[Host]:
        return [self.hosts[n] for n in self.groups.get(name, ())]


def rollout_order(hosts: list[Host]) -> list[Host]:
    """ZooKeeper first, then fallback, relays, stores; within a group, file order. Hosts in no
    group we know come last (they get nothing but are still checked for reachability)."""
    def key(h: Host) -> tuple[int, int]:
        rank = min((GROUP_ORDER.index(g) for g in h.groups if g in GROUP_ORDER), default=len(GROUP_ORDER))
        return rank, h.line
    return sorted(hosts, key=key)


# --------------------------------------------------------------------------- the reader


class _InvReader:
    def __init__(self, source: str, base: Path) -> None:
        self.r = Reader(source)
        self.base = base
        self.hosts: dict[str, dict[str, Any]] = {}  # name -> vars of its groups, merged in file order
        self.own: dict[str, dict[str, Any]] = {}  # name -> its own vars (win over any group's)
        self.host_line: dict[str, int] = {}
        self.host_groups: dict[str, list[str]] = {}
        self.groups: dict[str, list[str]] = {}

    def read_vars(self, node: Any, path: str, line: int) -> dict[str, Any]:
        if node is None:
            return {}
        m = self.r.mapping(node, path, set(VARS) | set(ALIASES), line)
        if m is None:
            return {}
        out: dict[str, Any] = {}
        for key in m:
            name = ALIASES.get(str(key), str(key))
            if name not in VARS:
                continue  # reported by mapping()
            if name in out:
                self.r.problem(self.r.line_of(m, key), f"{path}.{key}", f"sets {name} twice (with its alias)")
            typ, _default, check, is_path = VARS[name]
            value = self.r.get(m, key, path, typ, check=check)
            if value is None:
                continue
            if is_path:
                value = str((self.base / os.path.expanduser(value)).resolve()) if not value.startswith("/") and not value.startswith("~") \
                    else os.path.expanduser(value)
            out[name] = value
        return out

    def read_group(self, name: str, node: Any, path: str, line: int, inherited: dict[str, Any], depth: int = 0) -> None:
        if depth > 20:
            self.r.problem(line, path, "groups nested too deep")
            return
        if node is None:
            node = CommentedMap()
        m = self.r.mapping(node, path, {"hosts", "vars", "children"}, line)
        if m is None:
            return
        gvars = {**inherited, **self.read_vars(m.get("vars"), f"{path}.vars", self.r.line_of(m, "vars"))}
        members = self.groups.setdefault(name, [])
        hosts = m.get("hosts")
        if hosts is not None:
            hm = self.plain_mapping(hosts, f"{path}.hosts", self.r.line_of(m, "hosts"))
            for hname, body in hm.items():
                hpath = f"{path}.hosts.{hname}"
                hline = self.r.line_of(hm, hname)
                if not isinstance(hname, str) or not hname:
                    self.r.problem(hline, hpath, "host names must be strings")
                    continue
                hvars = self.read_vars(body, hpath, hline)
                self.host_line.setdefault(hname, hline)
                self.hosts[hname] = {**self.hosts.get(hname, {}), **gvars}
                self.own[hname] = {**self.own.get(hname, {}), **hvars}
                if hname not in members:
                    members.append(hname)
                grp = self.host_groups.setdefault(hname, [])
                if name != "all" and name not in grp:
                    grp.append(name)
        children = m.get("children")
        if children is not None:
            cm = self.plain_mapping(children, f"{path}.children", self.r.line_of(m, "children"))
            for cname, body in cm.items():
                cline = self.r.line_of(cm, cname)
                if cname == "all":
                    self.r.problem(cline, f"{path}.children.all", "`all` is the root group, not a child")
                    continue
                cpath = f"{path}.children.{cname}" if path else str(cname)  # top-level groups: no `all.children`
                self.read_group(str(cname), body, cpath, cline, gvars, depth + 1)
                # a parent group contains its children's hosts (Ansible semantics)
                for h in self.groups.get(str(cname), []):
                    if h not in members:
                        members.append(h)
                    grp = self.host_groups.setdefault(h, [])
                    if name != "all" and name not in grp:
                        grp.append(name)

    def plain_mapping(self, node: Any, path: str, line: int) -> CommentedMap:
        """A mapping of names (hosts, child groups); anything else is a problem and reads as empty."""
        if node is None:
            return CommentedMap()
        if not isinstance(node, CommentedMap):
            self.r.problem(line, path, f"must be a mapping of names, got {kind(node)}")
            return CommentedMap()
        return node


def parse_inventory(text: str, source: str = "<memory>", base: Path | None = None) -> Inventory:
    """Parse and validate inventory text; raise InventoryError listing every problem."""
    root = load_yaml(text, source, InventoryError)
    rd = _InvReader(source, base or Path.cwd())
    if not isinstance(root, CommentedMap):
        raise InventoryError([f"{source}:1: (top): must be a mapping of groups (all: {{hosts, vars, children}})"])
    if "all" in root:
        for key in root:
            if key != "all":
                rd.r.problem(rd.r.line_of(root, key), str(key), "put groups under all.children when `all` is used")
        rd.read_group("all", root["all"], "all", rd.r.line_of(root, "all"), {})
    else:  # top-level groups are children of an implicit `all`
        rd.read_group("all", CommentedMap([("children", root)]), "", 1, {})
    if not rd.hosts and not rd.r.problems:
        rd.r.problem(1, "all", "no hosts")
    for name, hv in rd.hosts.items():
        if "spec" not in hv and "spec" not in rd.own.get(name, {}):
            rd.r.problem(rd.host_line.get(name, 1), f"{name}.spec", "is required (set it in all.vars)")
    if rd.r.problems:
        raise InventoryError(rd.r.render())
    hosts = {n: Host(n, tuple(rd.host_groups.get(n, ())), {**v, **rd.own.get(n, {})}, rd.host_line.get(n, 1))
             for n, v in rd.hosts.items()}
    return Inventory(hosts, {g: tuple(m) for g, m in rd.groups.items()}, source)


def load_inventory(path: str | Path) -> Inventory:
    p = Path(path)
    return parse_inventory(read_text(p, InventoryError), str(p), p.resolve().parent)
