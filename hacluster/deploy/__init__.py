"""`hacluster deploy`: install and start the agents (and ZooKeeper servers) of a cluster over SSH.

Two phases. Pre-flight connects to every selected host and reads its facts (nothing changes),
so an unreachable host or a wrong key stops the run before any host was touched; `--dry-run`
ends there and prints the plan. The rollout then goes one host at a time (ZooKeeper, fallback,
relays, stores; the store holding the role last), and after every restart waits until the
agent's API says it is healthy and connected to ZooKeeper before touching the next host. A
running store is only restarted while every other store is healthy: never both down together.

Idempotent: every file is compared by checksum and mode, the package by the wheel's content
digest; a second run plans nothing, restarts nothing and says "no changes".
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click

from hacluster.agent.files import agent_file_text
from ..errors import EXIT_FAILED, UserError
from hacluster.deploy.inventory import Host, Inventory, InventoryError, load_inventory
from ..spec import ClusterSpec
from .package import Package, PackageError, build_wheel, deps_key, source_root, wheelhouse
from .plan import (PROBE, ZK_PROBE, Change, Desired, Facts, ManagedFile, facts_script, holds, parse_facts, parse_probe,
                   plan, preflight_problem, service_kind, store_guard, supervised_active_script)
from .remote import Remote, RemoteError, require_ssh
from .render import (AGENT, ZOOKEEPER, Layout, agent_command, render_agent_unit, render_spec, render_supervisor,
                     render_zk_unit, unit_path)

UNIT_TEMPLATE = "agents/hacluster-agent.service"
INSTALL_TIMEOUT_S = 900.0
STOP_WAIT_S = 20.0


class DeployError(UserError):
    """The rollout stopped: names the host and the step."""

    exit_code = EXIT_FAILED

    def __init__(self, host: str, step: str, message: str) -> None:
        self.host, self.step = host, step
        super().__init__(f"deploy stopped at {host}, step {step}: {message}")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SpecInfo:
    text: str  # as deployed (auth_file / token_file pointing at our files)
    spec: ClusterSpec


@dataclass
class HostRun:
    """One host's progress through the run (what the report shows)."""

    host: Host
    remote: Remote
    facts: Facts | None = None
    desired: Desired | None = None
    changes: list[Change] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] | None = None  # the agent's /status at the end
    state: str = "pending"  # pending | planned | ok | failed | skipped
    tmp: str | None = None


class Reporter:
    """One line per step per host, aligned; to stderr when stdout carries the JSON report.

    On a terminal a step shows as `running...` while it runs (a package install takes half a
    minute) and its result line replaces it; into a pipe or file only the result lines go."""

    def __init__(self, out: TextIO, width: int) -> None:
        self.out = out
        self.width = max(width, 6)
        try:
            self.live = out.isatty()
        except (AttributeError, ValueError):
            self.live = False
        self._pending = False  # a `running...` line waits to be replaced

    def begin(self, run: HostRun, step: str) -> None:
        """A step starts: on a terminal, say so until its result line replaces it."""
        if self.live:
            self.out.write(f"{run.host.name:<{self.width}}  {step:<11}  running...")
            self.out.flush()
            self._pending = True

    def host(self, index: int, total: int, run: HostRun) -> None:
        """Which host of how many is next, and how much there is to do on it."""
        todo = f"{len(run.changes)} change(s) to apply" if run.changes else "up to date, verifying"
        self.say(f"[{index}/{total}] {run.host.name} ({run.host.tier or 'no agent'}): {todo}")

    def _clear(self) -> None:
        if self._pending:
            self.out.write("\r\x1b[2K")
            self._pending = False

    def line(self, run: HostRun | None, step: str, status: str, detail: str = "", seconds: float | None = None) -> None:
        took = f" ({seconds:.1f}s)" if seconds is not None and seconds >= 0.05 else ""
        name = run.host.name if run else ""
        self._clear()
        self.out.write(f"{name:<{self.width}}  {step:<11}  {status:<9}  {detail}{took}\n".rstrip() + "\n")
        self.out.flush()
        if run is not None:
            run.steps.append({"step": step, "status": status, "detail": detail,
                              "seconds": round(seconds, 3) if seconds is not None else None})

    def say(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()


# --------------------------------------------------------------------------- the deploy


class Deployer:
    def __init__(self, inv: Inventory, limit: str | None, dry_run: bool, reporter_out: TextIO) -> None:
        self.inv = inv
        self.hosts = inv.select(limit)
        self.dry_run = dry_run
        self.rep = Reporter(reporter_out, max((len(h.name) for h in self.hosts), default=6))
        self.work = Path(tempfile.mkdtemp(prefix="hacluster-deploy-"))
        self.specs: dict[tuple[str, str | None, str | None], SpecInfo] = {}
        self.packages: dict[str | None, Package] = {}
        self.runs: dict[str, HostRun] = {}
        self.peer_remotes: dict[str, Remote] = {}
        self.error: DeployError | None = None
        self.t0 = time.monotonic()

    # ---------------------------------------------------------------- inputs

    def spec_for(self, host: Host) -> SpecInfo:
        layout = Layout(host.var("prefix"))
        zk_auth = layout.zk_auth if host.var("zk_credentials") else None
        token = layout.api_token if host.var("api_token") else None
        key = (host.var("spec"), zk_auth, token)
        if key not in self.specs:
            path = Path(host.var("spec"))
            try:
                text = path.read_text()
            except OSError as err:
                raise UserError(f"{self.inv.source}:{host.line}: {host.name}.spec: cannot read {path}: {err.strerror}") from None
            except UnicodeDecodeError:
                raise UserError(f"{self.inv.source}:{host.line}: {host.name}.spec: {path} is not UTF-8") from None
            deployed, spec = render_spec(text, str(path), zk_auth, token)
            self.specs[key] = SpecInfo(deployed, spec)
        return self.specs[key]

    def check_inputs(self) -> None:
        """Inventory against spec, before any connection: every host's node exists with the
        group's tier; local files exist. All problems at once, FILE:LINE."""
        problems: list[str] = []
        for h in self.hosts:
            where = f"{self.inv.source}:{h.line}: {h.name}"
            spec = self.spec_for(h).spec
            if h.tier:
                node = spec.nodes.get(h.node)
                if node is None:
                    problems.append(f"{where}: no node {h.node!r} in {spec.source} (nodes: {', '.join(spec.nodes)}); set `node`")
                elif node.tier != h.tier:
                    problems.append(f"{where}: is in group {h.tier} but node {h.node} has tier {node.tier} in {spec.source}")
            if h.zookeeper:
                zk_id = self.zk_id(h)
                if not 1 <= zk_id <= len(spec.zookeeper.hosts):
                    problems.append(f"{where}.zk_id: {zk_id} is not a server of zookeeper.hosts in {spec.source} "
                                    f"({len(spec.zookeeper.hosts)} listed)")
            for var in ("zk_credentials", "api_token", "ssh_key", "known_hosts", "wheel"):
                f = h.var(var)
                if f and not Path(f).is_file():
                    problems.append(f"{where}.{var}: {f}: no such file")
            if h.var("wheelhouse") and not Path(h.var("wheelhouse")).is_dir():
                problems.append(f"{where}.wheelhouse: {h.var('wheelhouse')}: no such folder")
            creds = h.var("zk_credentials")
            if creds and Path(creds).is_file() and ":" not in Path(creds).read_text(errors="replace").strip():
                problems.append(f"{where}.zk_credentials: {creds} must hold one line `user:password`")
        if problems:
            raise InventoryError(problems)

    def zk_id(self, h: Host) -> int:
        if h.var("zk_id"):
            return h.var("zk_id")
        members = self.inv.groups.get("zookeeper", ())
        return members.index(h.name) + 1 if h.name in members else 0

    def package(self, host: Host) -> Package:
        key = host.var("wheel")
        if key not in self.packages:
            t = time.monotonic()
            self.packages[key] = build_wheel(self.work / f"build{len(self.packages)}", key)
            pkg = self.packages[key]
            self.rep.line(None, "build", "ok", f"{pkg.label()} {'from ' + key if key else 'built from ' + str(source_root())}",
                          time.monotonic() - t)
        return self.packages[key]

    # ---------------------------------------------------------------- desired state

    def desired(self, h: Host, facts: Facts) -> Desired:
        layout = Layout(h.var("prefix"))
        kind = service_kind(h, facts)
        info = self.spec_for(h)
        files: list[ManagedFile] = []
        services: list[str] = []
        pkg = None
        deps = None
        if h.zookeeper:
            files += self.zookeeper_files(h, info.spec, layout, kind)
            services.append(ZOOKEEPER)
        if h.tier:
            pkg = self.package(h)
            if h.var("install") == "wheelhouse":
                deps = self.deps_name(h, pkg, facts)
            files.append(ManagedFile("spec", layout.spec, info.text.encode(), 0o600, AGENT))
            if h.var("zk_credentials"):
                files.append(ManagedFile("credentials", layout.zk_auth, _secret(h.var("zk_credentials")), 0o600, AGENT))
            if h.var("api_token"):
                files.append(ManagedFile("token", layout.api_token, _secret(h.var("api_token")), 0o600, AGENT))
            state_dir = h.var("state_dir") or (layout.state if kind == "none" else None)
            if kind == "systemd":
                files.append(ManagedFile("service", unit_path(AGENT), self.agent_unit(layout, h.node, state_dir).encode(), 0o644, AGENT))
            else:
                # the VIPs the agent recorded in its state dir, not the spec's (vip_record.py)
                cleanup = [layout.hacluster(), "vip", "cleanup", "--node", h.node] + (["--state-dir", state_dir] if state_dir else [])
                text = render_supervisor(AGENT, layout, agent_command(layout, h.node, state_dir), cleanup)
                files.append(ManagedFile("service", layout.supervisor(AGENT), text.encode(), 0o755, AGENT))
            services.append(AGENT)
        return Desired(h, layout, kind, pkg, deps, tuple(files), tuple(services))

    def deps_name(self, h: Host, pkg: Package, facts: Facts) -> str:
        """The wheelhouse's file name in PREFIX/dist: its cache key, so a target that has it
        already is not sent it again."""
        if h.var("wheelhouse"):
            return wheelhouse(pkg, facts.python, facts.machine, self.work, h.var("wheelhouse")).name
        return deps_key(pkg, facts.python, facts.machine) + ".tar"

    def agent_unit(self, layout: Layout, node: str, state_dir: str | None) -> str:
        """The shipped unit (package data, so an installed wheel has it too) for this host."""
        template = agent_file_text(UNIT_TEMPLATE.removeprefix("agents/"))
        return render_agent_unit(template, UNIT_TEMPLATE, layout, node, state_dir)

    def zookeeper_files(self, h: Host, spec: ClusterSpec, layout: Layout, kind: str) -> list[ManagedFile]:
        from ..zkconfig import (JVM_OPTS, LOG4J_PROPERTIES, LOG_JARS, MAIN_CLASS, TLS_JARS, ZK_JAR, ServerTls,
                                ZkServerSpec, render_config)

        servers = []
        for i, hp in enumerate(spec.zookeeper.hosts, start=1):
            addr, _, port = hp.rpartition(":")
            servers.append(ZkServerSpec(i, addr.strip("[]"), int(port), h.var("zk_peer_port"), h.var("zk_election_port")))
        me = servers[self.zk_id(h) - 1]
        d = layout.zk_dir
        cfg = posixpath.join(d, "zoo.cfg")
        tls: ServerTls | None = None
        local: str | None = None
        jars: tuple[Path, ...] = LOG_JARS
        if spec.zookeeper.tls is not None:
            # the spec's port is the secureClientPort every agent uses; the plain one stays on the host
            t = spec.zookeeper.tls
            tls = ServerTls(Path(h.var("zk_tls_keystore")), Path(h.var("zk_tls_truststore") or t.ca),
                            "need" if t.cert else "none", port=me.client_port)
            if h.var("zk_local_port") == me.client_port and me.address in ("127.0.0.1", "::1", "localhost"):
                raise RemoteError(f"zk_local_port {me.client_port} is also the secure client port of {me.address}: "
                                  "set zk_local_port to another port")
            me, local, jars = dataclasses.replace(me, client_port=h.var("zk_local_port")), "127.0.0.1", (*LOG_JARS, *TLS_JARS)
        # tickTime 2000 ms: ZooKeeper's production default (the test fixtures use 200)
        zoo = render_config(me, servers, Path(posixpath.join(d, "data")), 2000, tls, client_address=local)
        cp = ":".join([d, str(ZK_JAR), *(str(j) for j in jars)])
        cmd = ["/usr/bin/java", *JVM_OPTS, "-cp", cp, f"-Dzookeeper.log.dir={d}",
               f"-Dlog4j.configuration=file:{posixpath.join(d, 'log4j.properties')}", MAIN_CLASS, cfg]
        files = [
            ManagedFile("zookeeper", cfg, zoo.encode(), 0o644, ZOOKEEPER),
            ManagedFile("zookeeper", posixpath.join(d, "data", "myid"), f"{me.id}\n".encode(), 0o644, ZOOKEEPER),
            ManagedFile("zookeeper", posixpath.join(d, "log4j.properties"), LOG4J_PROPERTIES.encode(), 0o644, ZOOKEEPER),
        ]
        if kind == "systemd":
            files.append(ManagedFile("zookeeper", unit_path(ZOOKEEPER), render_zk_unit(cmd).encode(), 0o644, ZOOKEEPER))
        else:
            files.append(ManagedFile("zookeeper", layout.supervisor(ZOOKEEPER),
                                     render_supervisor(ZOOKEEPER, layout, cmd).encode(), 0o755, ZOOKEEPER))
        return files

    # ---------------------------------------------------------------- pre-flight

    def preflight(self) -> None:
        for h in self.hosts:
            run = HostRun(h, Remote(h))
            self.runs[h.name] = run
            t = time.monotonic()
            try:
                run.remote.open()
                layout = Layout(h.var("prefix"))
                pkg = self.package(h) if h.tier else None
                services = ([ZOOKEEPER] if h.zookeeper else []) + ([AGENT] if h.tier else [])
                probe_paths = self.probe_paths(h, layout)
                r = run.remote.check(facts_script(layout, h.var("python"), pkg.digest if pkg else None, probe_paths, services),
                                     "reading facts", privileged=True, timeout=60)
                run.facts = parse_facts(r.out)
                run.desired = self.desired(h, run.facts)
                problem = preflight_problem(run.desired, run.facts)
                if problem:
                    raise RemoteError(problem)
                if h.tier and run.facts.active.get(AGENT):
                    run.status = self.probe_status(run, 0.0)
                run.changes = plan(run.desired, run.facts)
            except (RemoteError, PackageError) as err:
                self.rep.line(run, "connect", "failed", str(err), time.monotonic() - t)
                run.state = "failed"
                raise DeployError(h.name, "connect", str(err)) from None
            f = run.facts
            agent = ""
            if h.tier:
                agent = ", agent " + ("running" + (f", holds {','.join(holds(run.status))}" if holds(run.status) else "")
                                      if f.active.get(AGENT) else "not running")
            self.rep.line(run, "connect", "ok", f"{h.target}, python {f.python or '-'}, service {run.desired.service}{agent}",
                          time.monotonic() - t)
            run.state = "planned"

    def probe_paths(self, h: Host, layout: Layout) -> list[str]:
        """Every file we may write on h, for both service kinds (facts come before the kind)."""
        paths = []
        if h.tier:
            paths += [layout.spec, layout.zk_auth, layout.api_token, unit_path(AGENT), layout.supervisor(AGENT)]
        if h.zookeeper:
            d = layout.zk_dir
            paths += [posixpath.join(d, "zoo.cfg"), posixpath.join(d, "data", "myid"), posixpath.join(d, "log4j.properties"),
                      unit_path(ZOOKEEPER), layout.supervisor(ZOOKEEPER)]
        return paths

    def order(self) -> list[HostRun]:
        """Rollout order; among stores, those not holding a role first (one switchover at most)."""
        runs = [self.runs[h.name] for h in self.hosts]
        return sorted(runs, key=lambda r: r.host.tier == "store" and bool(holds(r.status)))  # stable: holder last

    # ---------------------------------------------------------------- the rollout

    def rollout(self) -> None:
        ordered = self.order()
        zk_runs = [r for r in ordered if r.host.zookeeper]
        for i, run in enumerate(ordered, 1):
            self.rep.host(i, len(ordered), run)
            try:
                self.apply(run, last_zk=bool(zk_runs) and run is zk_runs[-1])
            except (RemoteError, PackageError) as err:
                run.state = "failed"
                step = run.steps[-1]["step"] if run.steps and run.steps[-1]["status"] == "failed" else "?"
                raise DeployError(run.host.name, step, str(err)) from None
            finally:
                self.cleanup_tmp(run)
            run.state = "ok"

    def step(self, run: HostRun, name: str, fn: Any, *args: Any) -> Any:
        t = time.monotonic()
        self.rep.begin(run, name)
        try:
            detail = fn(*args)
        except (RemoteError, PackageError) as err:
            self.rep.line(run, name, "failed", str(err), time.monotonic() - t)
            raise
        status, text = detail if isinstance(detail, tuple) else ("changed", detail)
        self.rep.line(run, name, status, text, time.monotonic() - t)
        return detail

    def apply(self, run: HostRun, last_zk: bool) -> None:
        d = run.desired
        assert d is not None and run.facts is not None
        by_step: dict[str, list[Change]] = {}
        for c in run.changes:
            by_step.setdefault(c.step, []).append(c)
        steps = ["package"] if d.package else []
        for f in d.files:
            if f.step not in steps:
                steps.append(f.step)
        if not run.changes:
            for s in steps:
                self.rep.line(run, s, "unchanged")
        else:
            for s in steps:
                if s == "package":
                    if "package" in by_step:
                        self.step(run, "package", self.install_package, run)
                    else:
                        self.rep.line(run, "package", "unchanged", d.package.label() if d.package else "")
                    continue
                paths = {c.path for c in by_step.get(s, [])}
                changed = [f for f in d.files if f.step == s and f.path in paths]
                if changed:
                    self.step(run, s, self.write_files, run, changed)
                else:
                    self.rep.line(run, s, "unchanged")
        for svc in d.services:
            actions = [c for c in run.changes if c.service == svc]
            if actions:
                self.step(run, "restart" if any(c.step == "restart" for c in actions) else "start",
                          self.start_service, run, svc, actions)
            if svc == AGENT:
                self.step(run, "verify", self.verify_agent, run, bool(actions))
            else:
                self.step(run, "verify", self.verify_zookeeper, run, last_zk)
        if run.changes and d.package:
            self.prune(run)

    # -- steps ---------------------------------------------------------------------------

    def tmpdir(self, run: HostRun) -> str:
        if run.tmp is None:
            r = run.remote.check("mktemp -d /tmp/hacluster-deploy.XXXXXX", "creating a temporary directory", privileged=False)
            run.tmp = r.out.strip()
        return run.tmp

    def cleanup_tmp(self, run: HostRun) -> None:
        if run.tmp and run.remote.conn is not None:
            try:
                run.remote.sh(f"rm -rf {shlex.quote(run.tmp)}", timeout=60)
            except RemoteError:
                pass
            run.tmp = None

    def install_package(self, run: HostRun) -> str:
        d, f = run.desired, run.facts
        assert d is not None and f is not None and d.package is not None
        pkg, layout, h = d.package, d.layout, run.host
        if f.staged == pkg.digest:
            return f"{pkg.label()} already in {layout.venv(pkg.digest)} (activated at the restart)"
        q = shlex.quote
        tmp = self.tmpdir(run)
        run.remote.put(str(pkg.wheel), f"{tmp}/{pkg.wheel.name}")
        # built in place (a venv can't be moved: its scripts name their interpreter's path); the
        # marker file, written last, is what says "complete" (a half-built venv is redone)
        venv = new = layout.venv(pkg.digest)
        lines = ["set -e", f"mkdir -p {q(layout.venvs)} {q(layout.dist)}", f"rm -rf {q(venv)}"]
        uploaded = ""
        if d.deps:
            if d.deps not in f.dist:
                tar = wheelhouse(pkg, f.python, f.machine, self.work, h.var("wheelhouse"))
                run.remote.put(str(tar), f"{tmp}/{d.deps}")
                lines.append(f"mv {q(tmp + '/' + d.deps)} {q(layout.dist + '/' + d.deps)}")
                uploaded = f", wheelhouse {tar.stat().st_size / 1e6:.0f} MB uploaded"
            lines += [f"mkdir {q(tmp + '/wh')}", f"tar -xf {q(layout.dist + '/' + d.deps)} -C {q(tmp + '/wh')}",
                      f"{q(h.var('python'))} -m venv {q(new)}",
                      f"PIP_CONFIG_FILE=/dev/null {q(new)}/bin/python -m pip install -q --disable-pip-version-check "
                      f"--no-index --find-links {q(tmp + '/wh')} {q(tmp + '/' + pkg.wheel.name)}"]
        else:  # install: pypi -- the target's own pip configuration and index
            lines += [f"{q(h.var('python'))} -m venv {q(new)}",
                      f"{q(new)}/bin/python -m pip install -q --disable-pip-version-check {q(tmp + '/' + pkg.wheel.name)}"]
        # pip and setuptools were only the installer (26 of the venv's ~45 MB); a venv is never
        # installed into again (a new wheel gets a new venv), so they go
        lines += [f"{q(new)}/bin/python -m pip uninstall -q -y --disable-pip-version-check pip setuptools",
                  f"{q(venv)}/bin/hacluster --version >/dev/null", f"echo {pkg.digest} > {q(venv)}/.hacluster-wheel"]
        run.remote.check("\n".join(lines), "installing the package", timeout=INSTALL_TIMEOUT_S)
        return f"{pkg.label()} into {venv}{uploaded}"

    def write_files(self, run: HostRun, files: list[ManagedFile]) -> str:
        q = shlex.quote
        tmp = self.tmpdir(run)
        lines = ["set -e"]
        for i, f in enumerate(files):
            name = f"{tmp}/file{i}"
            run.remote.put(f.content, name)
            lines.append(f"install -D -m {f.mode:04o} {q(name)} {q(f.path)}")
        run.remote.check("\n".join(lines), "writing files")
        return ", ".join(f"{f.path} ({f.mode:04o})" for f in files)

    def start_service(self, run: HostRun, svc: str, actions: list[Change]) -> str:
        d, h = run.desired, run.host
        assert d is not None and run.facts is not None
        running = bool(run.facts.active.get(svc))
        if svc == AGENT and h.tier == "store":
            reason = store_guard(h, running, self.peer_store_status(h))
            if reason:
                raise RemoteError(reason)
        q = shlex.quote
        lines = ["set -e"]
        if d.package is not None and svc == AGENT:
            # flip the `current` symlink to the new venv right before the restart (atomic rename)
            lines += [f"ln -sfn venvs/{d.package.short} {q(d.layout.current)}.new",
                      f"mv -T {q(d.layout.current)}.new {q(d.layout.current)}"]
        if d.service == "systemd":
            if any(f.step in ("service", "zookeeper") and f.path.startswith("/etc/systemd") for f in d.files):
                lines.append("systemctl daemon-reload")
            if any(c.step == "enable" for c in actions):
                lines.append(f"systemctl enable -q {svc}")
            lines.append(f"systemctl restart {svc}")
            run.remote.check("\n".join(lines), f"systemctl restart {svc}", timeout=120)
            return f"{'restarted' if running else 'started'} {svc} (systemd)"
        lines += [self.stop_supervised(d.layout, svc), self.start_supervised(d.layout, svc)]
        r = run.remote.check("\n".join(lines), f"starting {svc}", timeout=STOP_WAIT_S + 30)
        pid = r.out.strip().splitlines()[-1] if r.out.strip() else "?"
        return f"{'restarted' if running else 'started'} {svc} (supervisor pid {pid}, log {d.layout.logfile(svc)})"

    @staticmethod
    def stop_supervised(layout: Layout, svc: str) -> str:
        """Stop our supervisor (and with it the agent) if it runs: SIGTERM, wait, then the group."""
        tries = int(STOP_WAIT_S * 10)
        return f"""pid=$({supervised_active_script(layout, svc)})
if [ -n "$pid" ]; then
  kill -TERM "$pid" 2>/dev/null || true
  i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt {tries} ]; do sleep 0.1; i=$((i+1)); done
  kill -TERM -- "-$pid" 2>/dev/null || true
  sleep 0.2
  kill -KILL -- "-$pid" 2>/dev/null || true
fi"""

    @staticmethod
    def start_supervised(layout: Layout, svc: str) -> str:
        q = shlex.quote
        pidfile = q(layout.pidfile(svc))
        return f"""mkdir -p {q(posixpath.dirname(layout.pidfile(svc)))} {q(posixpath.dirname(layout.logfile(svc)))}
rm -f {pidfile}
cd /
setsid sh {q(layout.supervisor(svc))} >> {q(layout.logfile(svc))} 2>&1 < /dev/null &
i=0; while [ ! -s {pidfile} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
if [ ! -s {pidfile} ]; then echo "the supervisor did not start; log: $(tail -n 3 {q(layout.logfile(svc))})" >&2; exit 1; fi
cat {pidfile}"""

    def api_url(self, run: HostRun) -> str | None:
        spec = self.spec_for(run.host).spec
        if not spec.api.port:
            return None
        node = spec.node(run.host.node)
        addr = spec.api.bind if spec.api.bind not in (None, "", "0.0.0.0", "::") else (node.api_address or node.address)
        host = f"[{addr}]" if ":" in addr else addr
        scheme = "https" if spec.api.tls_cert else "http"
        return f"{scheme}://{host}:{spec.api.port}/status"

    def probe_status(self, run: HostRun, timeout: float) -> dict[str, Any] | None:
        """The agent's /status through its host (None when it does not answer healthy)."""
        url = self.api_url(run)
        if url is None:
            return None
        layout = Layout(run.host.var("prefix"))
        r = run.remote.sh(f"{shlex.quote(layout.current)}/bin/python -c {shlex.quote(PROBE)} {shlex.quote(url)} {timeout}",
                          privileged=False, timeout=timeout + 30)
        doc = parse_probe(r.out)
        return doc.get("status") if doc.get("ok") else None

    def verify_agent(self, run: HostRun, restarted: bool) -> str | tuple[str, str]:
        h, d = run.host, run.desired
        assert d is not None
        url = self.api_url(run)
        if url is None:
            return ("ok", "api.port is 0: no API to verify through")
        timeout = float(h.var("verify_timeout")) if restarted else min(10.0, float(h.var("verify_timeout")))
        q = shlex.quote
        r = run.remote.sh(f"{q(d.layout.current)}/bin/python -c {q(PROBE)} {q(url)} {timeout}", privileged=False,
                          timeout=timeout + 30)
        doc = parse_probe(r.out)
        if not doc.get("ok"):
            raise RemoteError(f"{url}: not healthy after {timeout:g}s ({doc.get('error')}); agent log: {self.log_tail(run, AGENT)}")
        st = doc["status"]
        run.status = st
        held = holds(st)
        roles = f"holds {', '.join(held)}" if held else ("standby" if st.get("roles") else "no roles")
        return ("ok", f"healthy, zookeeper connected, {roles} ({url})")

    def verify_zookeeper(self, run: HostRun, last: bool) -> tuple[str, str]:
        h = run.host
        spec = self.spec_for(h).spec
        addr, _, port = spec.zookeeper.hosts[self.zk_id(h) - 1].rpartition(":")
        addr = addr.strip("[]")
        if spec.zookeeper.tls is not None:  # four-letter words in clear: the loopback-only plain port
            addr, port = "127.0.0.1", str(h.var("zk_local_port"))
        timeout = float(h.var("verify_timeout"))
        q = shlex.quote
        # every server answers ruok once it runs, but serves only with a quorum up: expect that
        # from the last server of the rollout, and from one that was running before (a restart)
        serving = last or bool(run.facts and run.facts.active.get(ZOOKEEPER))
        cmd, want = ("srvr", "leader,follower,standalone") if serving else ("ruok", "imok")
        r = run.remote.sh(f"{q(h.var('python'))} -c {q(ZK_PROBE)} {q(addr)} {port} {cmd} {want} {timeout}",
                          privileged=False, timeout=timeout + 30)
        doc = parse_probe(r.out)
        if not doc.get("ok"):
            raise RemoteError(f"ZooKeeper {addr}:{port} {cmd}: {doc.get('error')} after {timeout:g}s; "
                              f"log: {self.log_tail(run, ZOOKEEPER)}")
        return ("ok", f"ZooKeeper {addr}:{port} {cmd}: {doc.get('answer')}")

    def log_tail(self, run: HostRun, svc: str) -> str:
        d = run.desired
        assert d is not None
        if d.service == "systemd":
            script = f"journalctl -u {svc} -n 4 --no-pager -o cat 2>&1"
        else:
            script = f"tail -n 4 {shlex.quote(d.layout.logfile(svc))} 2>&1"
        try:
            r = run.remote.sh(script, timeout=20)
        except RemoteError as err:
            return str(err)
        return " | ".join(ln.strip() for ln in r.out.splitlines() if ln.strip())[-600:] or "(empty)"

    def peer_store_status(self, h: Host) -> dict[str, dict[str, Any] | None]:
        """Every other store of the inventory (also outside --limit), through its own host."""
        out: dict[str, dict[str, Any] | None] = {}
        for peer in self.inv.group("store"):
            if peer.name == h.name:
                continue
            run = self.runs.get(peer.name)
            if run is None or run.remote.conn is None:
                remote = self.peer_remotes.get(peer.name) or Remote(peer)
                self.peer_remotes[peer.name] = remote
                try:
                    if remote.conn is None:
                        remote.open()
                except RemoteError:
                    out[peer.name] = None
                    continue
                run = HostRun(peer, remote)
            try:
                out[peer.name] = self.probe_status(run, 0.0)
            except RemoteError:
                out[peer.name] = None
        return out

    def prune(self, run: HostRun) -> None:
        """Keep the active venv and the one before it (for a manual rollback); drop older ones
        and wheelhouses no longer used."""
        d, f = run.desired, run.facts
        assert d is not None and f is not None and d.package is not None
        keep = {d.package.short, posixpath.basename(f.current) if f.current else ""}
        q = shlex.quote
        cases = "|".join(q(k) for k in sorted(keep) if k) or "''"
        deps = q(d.deps) if d.deps else "''"
        script = (f"for v in {q(d.layout.venvs)}/*; do [ -e \"$v\" ] || continue; case \"$(basename \"$v\")\" in {cases}) ;; "
                  f"*) rm -rf \"$v\";; esac; done; "
                  f"for t in {q(d.layout.dist)}/*; do [ -e \"$t\" ] || continue; case \"$(basename \"$t\")\" in {deps}) ;; "
                  f"*) rm -f \"$t\";; esac; done")
        run.remote.sh(script, timeout=120)

    # ---------------------------------------------------------------- the whole run

    def run(self) -> None:
        self.rep.say(f"deploy: {len(self.hosts)} host(s) from {self.inv.source}: {', '.join(h.name for h in self.hosts)}"
                     f"{' (dry run: nothing is changed)' if self.dry_run else ''}")
        try:
            self.check_inputs()
            self.preflight()
            if self.dry_run:
                for run in self.order():
                    for c in run.changes:
                        self.rep.line(run, c.step, "would", c.detail)
                    if not run.changes:
                        self.rep.line(run, "-", "unchanged", "nothing to do")
                return
            self.rollout()
        except DeployError as err:
            self.error = err
            for run in self.runs.values():
                if run.state in ("pending", "planned"):
                    run.state = "skipped"
            raise
        finally:
            self.close()

    def close(self) -> None:
        for run in self.runs.values():
            self.cleanup_tmp(run)
            run.remote.close()
        for r in self.peer_remotes.values():
            r.close()
        import shutil

        shutil.rmtree(self.work, ignore_errors=True)

    def summary(self) -> str:
        secs = time.monotonic() - self.t0
        changed = [r.host.name for r in self.runs.values() if r.changes]
        if self.error:
            return f"deploy: stopped at {self.error.host} ({self.error.step}); hosts not touched: " \
                   f"{', '.join(r.host.name for r in self.runs.values() if r.state == 'skipped') or '-'} ({secs:.1f}s)"
        if self.dry_run:
            return f"deploy: dry run: {len(changed)} of {len(self.runs)} host(s) would change ({secs:.1f}s)"
        if not changed:
            return f"deploy: no changes ({len(self.runs)} host(s) up to date and healthy, {secs:.1f}s)"
        return f"deploy: {len(changed)} host(s) changed, {len(self.runs) - len(changed)} unchanged, all healthy ({secs:.1f}s)"

    def report(self) -> dict[str, Any]:
        return {
            "ok": self.error is None,
            "dry_run": self.dry_run,
            "changed": any(r.changes for r in self.runs.values()),
            "error": str(self.error) if self.error else None,
            "seconds": round(time.monotonic() - self.t0, 3),
            "hosts": [
                {"host": r.host.name, "target": r.host.target, "groups": list(r.host.groups), "state": r.state,
                 "changed": bool(r.changes), "changes": [{"step": c.step, "detail": c.detail} for c in r.changes],
                 "steps": r.steps, "holds": holds(r.status),
                 "service": r.desired.service if r.desired else None}
                for r in self.runs.values()
            ],
        }


def _secret(path: str) -> bytes:
    return Path(path).read_bytes()


@click.command("deploy")
@click.option("--inventory", "-i", "inventory", required=True, type=click.Path(), help="Inventory YAML (docs/deploy.md).")
@click.option("--limit", default=None, help="Only these hosts or groups (comma-separated).")
@click.option("--dry-run", is_flag=True, help="Connect, read facts and print the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report (progress goes to stderr).")
def deploy_cmd(inventory: str, limit: str | None, dry_run: bool, as_json: bool) -> None:
    """Install, configure, start and verify the agents over SSH, one host at a time."""
    require_ssh()  # before reading anything: the install lacks the `deploy` extra
    inv = load_inventory(inventory)
    dep = Deployer(inv, limit, dry_run, sys.stderr if as_json else sys.stdout)
    try:
        dep.run()
    except DeployError:
        dep.rep.say(dep.summary())
        if as_json:
            click.echo(json.dumps(dep.report(), indent=1))
        raise
    dep.rep.say(dep.summary())
    if as_json:
        click.echo(json.dumps(dep.report(), indent=1))


__all__ = ["deploy_cmd", "Deployer", "DeployError"]
