"""Deciding what to change on a target: the facts we read from it, the state we want, and the
difference between them. Pure functions only (no SSH), so idempotence and the rolling rules are
tested without a target.

A second run that finds every checksum equal and every service running plans nothing: that is
the whole idempotence mechanism.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from hacluster.deploy.inventory import Host
from .package import Package
from .render import AGENT, ZOOKEEPER, Layout

ZK_JAR = "/usr/share/java/zookeeper.jar"


@dataclass(frozen=True)
class ManagedFile:
    step: str  # progress step that writes it: spec, credentials, token, service, zookeeper
    path: str
    content: bytes
    mode: int
    restarts: str  # the service that must restart when it changes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Facts:
    """What a target has now (read-only probe)."""

    uid: int = -1
    python: str = ""  # X.Y of the inventory's interpreter, "" if missing
    machine: str = ""
    systemd: bool = False
    installed: str = ""  # digest of the active venv's wheel
    staged: str = ""  # digest of a venv already installed for this run's wheel (not yet active)
    current: str = ""  # the venv the `current` symlink points to
    dist: tuple[str, ...] = ()  # files in PREFIX/dist (uploaded wheelhouses)
    files: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # path -> (sha256, octal mode)
    active: Mapping[str, bool] = field(default_factory=dict)  # service -> running
    enabled: Mapping[str, bool] = field(default_factory=dict)  # service -> enabled at boot (systemd)
    zookeeper_installed: bool = False

    @property
    def python_ok(self) -> bool:
        try:
            major, minor = (int(x) for x in self.python.split("."))
        except ValueError:
            return False
        return (major, minor) >= (3, 11)


@dataclass(frozen=True)
class Desired:
    host: Host
    layout: Layout
    service: str  # systemd | none
    package: Package | None  # None: no agent on this host (a ZooKeeper-only host)
    deps: str | None  # wheelhouse tar name in PREFIX/dist (install: wheelhouse)
    files: tuple[ManagedFile, ...]
    services: tuple[str, ...]  # in start order: hacluster-zookeeper, hacluster-agent


@dataclass(frozen=True)
class Change:
    step: str
    detail: str
    service: str | None = None  # for start/restart steps
    path: str | None = None  # for file steps


def facts_script(layout: Layout, python: str, digest: str | None, paths: list[str], services: list[str]) -> str:
    """A POSIX sh script printing one fact per line (parsed by parse_facts)."""
    p = shlex.quote
    lines = [
        'echo "uid=$(id -u)"',
        f'echo "python=$({p(python)} -c \'import sys; print("%d.%d" % sys.version_info[:2])\' 2>/dev/null)"',
        'echo "machine=$(uname -m)"',
        'if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi',
        f'echo "installed=$(cat {p(layout.current)}/.hacluster-wheel 2>/dev/null)"',
        f'echo "current=$(readlink {p(layout.current)} 2>/dev/null)"',
        f'echo "dist=$(ls {p(layout.dist)} 2>/dev/null | tr "\\n" " ")"',
        f'if [ -f {p(ZK_JAR)} ] && command -v java >/dev/null 2>&1; then echo zookeeper=yes; else echo zookeeper=no; fi',
    ]
    if digest:
        lines.append(f'echo "staged=$(cat {p(layout.venv(digest))}/.hacluster-wheel 2>/dev/null)"')
    for path in paths:
        q = p(path)
        lines.append(f'if [ -f {q} ]; then echo "file $(sha256sum < {q} | cut -c1-64) $(stat -c %a {q}) {path}"; '
                     f'else echo "file - - {path}"; fi')
    for svc in services:
        pid = p(layout.pidfile(svc))
        sup = p(layout.supervisor(svc))
        lines.append(
            "if [ -d /run/systemd/system ]; then "
            f'echo "active {svc} $(systemctl is-active {svc} 2>/dev/null || true)"; '
            f'echo "enabled {svc} $(systemctl is-enabled {svc} 2>/dev/null || true)"; '
            f"else pid=$(cat {pid} 2>/dev/null); "
            f'if [ -n "$pid" ] && tr "\\0" " " < /proc/$pid/cmdline 2>/dev/null | grep -qF {sup}; '
            f'then echo "active {svc} active"; else echo "active {svc} inactive"; fi; fi')
    return "\n".join(lines) + "\n"


def supervised_active_script(layout: Layout, svc: str) -> str:
    pid = shlex.quote(layout.pidfile(svc))
    sup = shlex.quote(layout.supervisor(svc))
    # safe under `set -e`: prints the pid of our running supervisor, or nothing
    return (f'pid=$(cat {pid} 2>/dev/null || true); if [ -n "$pid" ] && tr "\\0" " " < /proc/$pid/cmdline 2>/dev/null '
            f'| grep -qF {sup}; then echo "$pid"; fi')


def parse_facts(text: str) -> Facts:
    kv: dict[str, str] = {}
    files: dict[str, tuple[str, str]] = {}
    active: dict[str, bool] = {}
    enabled: dict[str, bool] = {}
    for line in text.splitlines():
        if line.startswith("file "):
            _, sha, mode, path = line.split(" ", 3)
            if sha != "-":
                files[path] = (sha, mode)
        elif line.startswith("active "):
            parts = line.split()
            active[parts[1]] = len(parts) > 2 and parts[2] == "active"
        elif line.startswith("enabled "):
            parts = line.split()
            enabled[parts[1]] = len(parts) > 2 and parts[2] in ("enabled", "enabled-runtime")
        elif "=" in line:
            k, _, v = line.partition("=")
            kv[k.strip()] = v.strip()
    try:
        uid = int(kv.get("uid", "-1"))
    except ValueError:
        uid = -1
    return Facts(
        uid=uid,
        python=kv.get("python", ""),
        machine=kv.get("machine", ""),
        systemd=kv.get("systemd") == "yes",
        installed=kv.get("installed", ""),
        staged=kv.get("staged", ""),
        current=kv.get("current", ""),
        dist=tuple(kv.get("dist", "").split()),
        files=files,
        active=active,
        enabled=enabled,
        zookeeper_installed=kv.get("zookeeper") == "yes",
    )


def service_kind(host: Host, facts: Facts) -> str:
    """systemd | none: `auto` means systemd where it runs (PID 1), else the supervisor."""
    want = host.var("service")
    if want == "auto":
        return "systemd" if facts.systemd else "none"
    return want


def preflight_problem(desired: Desired, facts: Facts) -> str | None:
    """Why this target can't be deployed at all (checked on every host before changing any)."""
    h = desired.host
    if facts.uid != 0 and not (h.var("become") and h.var("ssh_user") != "root"):
        return f"logged in as uid {facts.uid}, not root: connect as root or set become: true (sudo without a password)"
    if desired.package is not None and not facts.python_ok:
        what = f"is Python {facts.python}" if facts.python else "was not found"
        return f"{h.var('python')} {what}: hacluster needs Python >= 3.11 with venv (set the `python` var)"
    if desired.service == "systemd" and not facts.systemd:
        return "service: systemd, but systemd is not running on the target (use service: none or auto)"
    if ZOOKEEPER in desired.services and not facts.zookeeper_installed:
        return f"ZooKeeper is not installed ({ZK_JAR} and java): apt-get install zookeeper default-jre-headless"
    return None


def plan(desired: Desired, facts: Facts) -> list[Change]:
    """The changes that bring the target to `desired`, in the order they are applied."""
    changes: list[Change] = []
    restart: dict[str, list[str]] = {s: [] for s in desired.services}
    pkg = desired.package
    if pkg is not None and facts.installed != pkg.digest:
        how = "activate" if facts.staged == pkg.digest else "install"
        was = f" (was {facts.installed[:12]})" if facts.installed else ""
        changes.append(Change("package", f"{how} {pkg.label()}{was}"))
        restart[AGENT].append("package")
    for f in desired.files:
        have = facts.files.get(f.path)
        if have is None:
            changes.append(Change(f.step, f"create {f.path} ({f.mode:04o})", path=f.path))
        elif have[0] != f.sha256:
            changes.append(Change(f.step, f"update {f.path}", path=f.path))
        elif have[1] != f"{f.mode:o}":
            changes.append(Change(f.step, f"chmod {f.mode:04o} {f.path} (was {have[1]})", path=f.path))
            continue  # a mode fix needs no restart
        else:
            continue
        if f.restarts in restart:
            restart[f.restarts].append(f.step)
    for svc in desired.services:
        running = facts.active.get(svc, False)
        if desired.service == "systemd" and not facts.enabled.get(svc, False):
            changes.append(Change("enable", f"systemctl enable {svc}", svc))
        if not running:
            changes.append(Change("start", f"start {svc}", svc))
        elif restart[svc]:
            changes.append(Change("restart", f"restart {svc} ({', '.join(dict.fromkeys(restart[svc]))} changed)", svc))
    return changes


def store_guard(host: Host, restarting_running_store: bool, peers: Mapping[str, dict[str, Any] | None]) -> str | None:
    """Never both stores down together: a running store may only be restarted while every other
    store is healthy (status from its API; None = unreachable or not running)."""
    if not restarting_running_store:
        return None
    bad = []
    for name, st in sorted(peers.items()):
        if st is None:
            bad.append(f"{name} is not running or unreachable")
        elif not (st.get("healthy") and st.get("zookeeper") == "connected"):
            bad.append(f"{name} is not healthy ({', '.join(st.get('reasons') or []) or st.get('zookeeper')})")
    if bad:
        return (f"restarting {host.name} would leave no healthy store: {'; '.join(bad)}. "
                "Bring the other store back first (or deploy it first with --limit)")
    return None


def holds(status: dict[str, Any] | None) -> list[str]:
    if not status:
        return []
    return sorted(r for r, v in (status.get("roles") or {}).items() if isinstance(v, dict) and v.get("held"))


#: run on the target with the agent's venv python: poll /status until healthy or timeout
PROBE = r"""
import json, ssl, sys, time, urllib.request
url, timeout = sys.argv[1], float(sys.argv[2])
ctx = ssl._create_unverified_context()  # the agent's own certificate; we only read our status
end = time.monotonic() + timeout
last = "no answer"
while True:
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as r:
            st = json.load(r)
        if st.get("healthy") and st.get("zookeeper") == "connected" and st.get("loops", 0) > 0:
            print(json.dumps({"ok": True, "status": st}))
            sys.exit(0)
        last = "healthy=%s zookeeper=%s reasons=%s" % (st.get("healthy"), st.get("zookeeper"), ",".join(st.get("reasons") or []) or "-")
        status = st
    except Exception as e:
        last = "%s: %s" % (type(e).__name__, e)
        status = None
    if time.monotonic() >= end:
        print(json.dumps({"ok": False, "error": last, "status": status}))
        sys.exit(1)
    time.sleep(0.3)
"""

#: run on a ZooKeeper host with its python: a four-letter word, retried until the answer fits
ZK_PROBE = r"""
import json, socket, sys, time
host, port, cmd, want, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
end = time.monotonic() + timeout
last = "no answer"
while True:
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(cmd.encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        text = data.decode(errors="replace")
        mode = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("Mode:")), text.strip())
        if any(w in mode for w in want.split(",")):
            print(json.dumps({"ok": True, "answer": mode}))
            sys.exit(0)
        last = mode or "empty answer"
    except OSError as e:
        last = "%s: %s" % (type(e).__name__, e)
    if time.monotonic() >= end:
        print(json.dumps({"ok": False, "error": last}))
        sys.exit(1)
    time.sleep(0.3)
"""


def parse_probe(out: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return {"ok": False, "error": (out.strip().splitlines() or ["no output"])[-1]}

