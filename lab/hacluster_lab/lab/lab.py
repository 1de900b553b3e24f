"""The network-namespace lab: build it from a cluster spec, drive it, inject faults, tear it down.

`Lab` is the Python API (benchmarks and drills use it); `hacluster lab ...` is a thin CLI on top.
Everything the lab starts runs inside one of its namespaces (`<prefix><host>`), so teardown finds
every process by namespace, and every file lives under one state directory, so teardown removes
all of it -- also after a crash, from the prefix and the state directory alone.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from hacluster import lab_access
from hacluster.resources.base import OCF
from hacluster.resources.mta import MtaResource
from hacluster.spec import ClusterSpec, default_spec_text, load_spec, parse_spec
from hacluster.zkserver import ZooKeeperEnsemble, ZkServerSpec
from . import netns, nftrules
from .dns import dnsmasq_cmd, dnsmasq_conf
from .netns import LabError, in_ns, run
from .postfix import register_config_dirs, unregister_config_dirs, write_instance
from .state import (DEFAULT_STATE_DIR, LabOptions, LabPaths, append_jsonl, load_json, now_stamp,
                    read_jsonl, read_pidfile, save_json, write_pidfile)
from .topology import DEFAULT_PREFIX, ROUTER, ZK_ELECTION_PORT, ZK_PEER_PORT, Host, LabPlan, build_plan

log = logging.getLogger(__name__)

MARKER = ".hacluster-lab"  # a state dir without it is never deleted
POSTFIX_KINDS = ("client", "relay", "fallback")  # the lab runs these; stores belong to the agent
FAULTS = ("kill-agent", "kill-mta", "freeze", "thaw", "power-off", "power-on", "isolate", "restart-agent",
          "freeze-host", "thaw-host", "raid-degraded", "raid-repair")
QUEUE_DIRS = ("maildrop", "incoming", "active", "deferred", "hold")  # where a queued message can be
REQUIRED_TOOLS = ("ip", "nft", "postfix", "postconf", "dnsmasq", "java", "sysctl")


@dataclass
class UpReport:
    seconds: float
    namespaces: list[str]
    zk_leader: int | None
    agents: dict[str, str] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DownReport:
    seconds: float
    namespaces: list[str]
    processes_killed: int
    maincf_restored: bool
    state_dir_removed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agent_available() -> bool:
    return importlib.util.find_spec("hacluster.agent.loop") is not None


class Lab:
    def __init__(self, spec: ClusterSpec | str | Path | None = None, state_dir: str | Path = DEFAULT_STATE_DIR,
                 prefix: str = DEFAULT_PREFIX, options: LabOptions | None = None, spec_text: str | None = None) -> None:
        if spec_text is None:
            if isinstance(spec, ClusterSpec):
                src = Path(spec.source)
                spec_text = src.read_text() if src.is_file() else default_spec_text()
            elif spec is None:
                spec_text = default_spec_text()
            else:
                try:
                    spec_text = Path(spec).read_text()
                except OSError as err:
                    raise LabError(f"{spec}: cannot read: {err.strerror}", exit_code=2) from None
        if isinstance(spec, ClusterSpec):
            self.spec = spec
        elif spec is None:
            self.spec = load_spec(None)
        else:
            self.spec = parse_spec(spec_text, str(spec))
        self.spec_text = spec_text
        self.paths = LabPaths(Path(state_dir))
        self.plan: LabPlan = build_plan(self.spec, prefix, spec_text)
        self.prefix = prefix
        self.options = options or LabOptions()

    # ------------------------------------------------------------------ attach to a running lab

    @classmethod
    def attach(cls, state_dir: str | Path = DEFAULT_STATE_DIR) -> "Lab":
        """The lab described by `state_dir/lab.json` (as written by `up`)."""
        paths = LabPaths(Path(state_dir))
        rec = load_json(paths.lab_json)
        if rec is None:
            raise LabError(f"no lab at {state_dir} ({paths.lab_json} missing): run `hacluster lab up`")
        opts = dict(rec.get("options", {}))
        if "mailboxes" in opts:
            opts["mailboxes"] = tuple(opts["mailboxes"])
        known = LabOptions.__dataclass_fields__
        options = LabOptions(**{k: v for k, v in opts.items() if k in known})
        return cls(paths.spec, state_dir, rec.get("prefix", DEFAULT_PREFIX), options,
                   spec_text=paths.spec.read_text() if paths.spec.exists() else None)

    def ns(self, name: str) -> str:
        if name != ROUTER:
            self.plan.host(name)  # validates the name
        return self.plan.ns(name)

    # ------------------------------------------------------------------ up

    def up(self, before_agents: Callable[["Lab"], None] | None = None) -> UpReport:
        """Build the whole lab; on any failure, tear down what was built and re-raise.

        `before_agents(lab)` runs once the network, ZooKeeper and the lab's Postfix instances are
        up but before any agent starts (drills mount a small spool filesystem there: no store has
        delivered a message yet, so nothing is hidden under the mount)."""
        t0 = time.monotonic()
        phases: dict[str, float] = {}

        def mark(name: str) -> None:
            phases[name] = round(time.monotonic() - t0 - sum(phases.values()), 3)

        self._preflight()
        try:
            self._prepare_state()
            netns.build_network(self.plan)
            dns_ip = self.plan.host("dns").address
            for name in self.plan.names():
                netns.write_resolv_conf(self.plan.ns(name), dns_ip)
            mark("network")
            ens = self._ensemble()
            for s in ens.servers:
                ens.start_server(s.id)
            atexit.unregister(ens.stop)  # the servers outlive this process: `lab down` stops them
            mark("zk_spawn")
            self._write_postfix()
            self._start_dns()
            with ThreadPoolExecutor(max_workers=4) as pool:
                results = list(pool.map(self._start_postfix, [h.name for h in self.plan.of_kind(*POSTFIX_KINDS)]))
            for name, rc in results:
                if rc != OCF.SUCCESS:
                    raise LabError(f"postfix on {name} did not start ({rc.name}); log: {self.paths.maillog(name)}")
            mark("postfix_dns")
            ens.wait_serving(self.options.zk_start_timeout_s)
            leader = ens.leader_id()
            mark("zk_serving")
            self._write_mdstat()
            if before_agents is not None:
                before_agents(self)
                mark("before_agents")
            # after before_agents: its mounts (the drills' spool tmpfs over the Maildirs) must exist
            # before Dovecot's mount namespace (ip netns exec) is made
            for h in self.plan.of_kind("store"):
                self._start_dovecot(h.name)
            agents: dict[str, str] = {}
            if self.options.agents:
                if agent_available():
                    for h in self.plan.of_kind("relay", "store", "fallback"):
                        self.start_agent(h.name)
                    agents = self._agents_settled()
                else:
                    agents = {h.name: "absent (hacluster.agent.loop not in this build)"
                              for h in self.plan.of_kind("relay", "store", "fallback")}
            mark("agents")
            report = UpReport(round(time.monotonic() - t0, 3), [self.plan.ns(n) for n in self.plan.names()],
                              leader, agents, phases)
            rec = load_json(self.paths.lab_json) or {}
            rec.update(status="up", up=report.to_dict(), operator=lab_access.record(self.plan.router_ns, self.paths.spec))
            save_json(self.paths.lab_json, rec)
            return report
        except BaseException:
            try:
                self.down()
            except Exception:  # the original error matters more
                log.exception("cleanup after a failed lab up failed")
            raise

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, Postfix instances)", exit_code=2)
        missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
        if missing:
            raise LabError(f"missing tools: {', '.join(missing)} (Debian: iproute2 nftables postfix "
                           "dnsmasq-base default-jre-headless zookeeper procps)", exit_code=2)
        if self.paths.lab_json.exists() and netns.exists(self.plan.router_ns):
            raise LabError(f"a lab is already up ({self.paths.root}); run `hacluster lab down` first")
        if any(netns.exists(self.plan.ns(n)) for n in self.plan.names()) or self.paths.root.exists():
            # leftovers of a crashed run: clean them the same way `lab down` would
            Lab.teardown(self.paths.root, self.prefix)

    def _prepare_state(self) -> None:
        root = self.paths.root
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text("state directory of `hacluster lab`; `hacluster lab down` removes it\n")
        for d in (self.paths.power, self.paths.frozen, self.paths.zk, self.paths.dns):
            d.mkdir(parents=True, exist_ok=True)
        save_json(self.paths.lab_json, {
            "version": 1, "prefix": self.prefix, "state_dir": str(root), "source": self.spec.source,
            "status": "starting", "started": now_stamp(), "options": asdict(self.options),
            "namespaces": [self.plan.ns(n) for n in self.plan.names()],
        })
        token = secrets.token_hex(16)
        self.paths.token.write_text(token + "\n")
        self.paths.token.chmod(0o600)
        self.paths.spec.write_text(self._spec_for_agents())
        self.paths.faults.touch()

    def _spec_for_agents(self) -> str:
        """The spec text the agents read, with api.token_file pointing at the lab's token when the
        spec leaves it null ("null = the lab's generated token")."""
        from io import StringIO

        from ruamel.yaml import YAML

        yaml = YAML(typ="rt")
        root = yaml.load(self.spec_text)
        api = root.get("api") if hasattr(root, "get") else None
        if api is not None and hasattr(api, "get") and api.get("token_file") is None:
            api["token_file"] = str(self.paths.token)
        out = StringIO()
        yaml.dump(root, out)
        return out.getvalue()

    def _write_mdstat(self) -> None:
        """A healthy simulated /proc/mdstat for every node with a `simulated: true` raid check
        (hacluster_lab.lab.mdstat_sim; the faults raid-degraded/raid-repair switch it)."""
        from . import mdstat_sim

        for name in self.spec.nodes:
            path = mdstat_sim.simulated_path(self.spec, name, self.paths.node(name))
            if path is not None:
                mdstat_sim.write(path, mdstat_sim.HEALTHY)

    def _ensemble(self) -> ZooKeeperEnsemble:
        servers = [ZkServerSpec(h.zk_id or 0, h.address, h.zk_port or 2181, ZK_PEER_PORT, ZK_ELECTION_PORT)
                   for h in self.plan.of_kind("zk")]
        prefix = self.plan.prefix
        return ZooKeeperEnsemble(self.paths.zk, servers, tick_ms=self.options.zk_tick_ms,
                                 wrap=lambda s: in_ns(f"{prefix}zk{s.id}", []))

    def _write_postfix(self) -> None:
        if self.options.spool_mode == "shared" and self.options.spool_block_mb:
            from .blockspool import create

            create(self.paths, self.options.spool_block_mb)  # write_instance lays the spool out on it
        hosts = self.plan.of_kind("client", "relay", "fallback", "store")
        dirs = [write_instance(h, self.plan, self.paths, self.options) for h in hosts]
        register_config_dirs(dirs, self.paths.root, self.paths.maincf_orig)

    def _start_dns(self) -> None:
        d = self.paths.dns
        conf = d / "dnsmasq.conf"
        conf.write_text(dnsmasq_conf(self.spec, self.plan, d / "dnsmasq.log"))
        self._spawn("dns", dnsmasq_cmd(conf), d / "dnsmasq.pid", d / "stdout.log")

    def _start_dovecot(self, name: str) -> None:
        """The store's IMAP/POP3 (lab/dovecot.py) over the Maildirs its Postfix delivers to, on
        every address of the host (the VIP too, once it is there). Without Dovecot installed the
        lab runs without it (`imap` drill steps then fail saying so)."""
        if shutil.which("dovecot") is None:
            return
        from .dovecot import dovecot_cmd, write_instance
        from .postfix import MAIL_GID, MAIL_UID
        from .tlscert import self_signed

        tls = self.paths.root / "tls"
        if not (tls / "cert.pem").exists():
            tls.mkdir(parents=True, exist_ok=True)
            self_signed(tls, f"mail.{self.plan.domain}", days=365)
        if self.options.spool_mode == "shared":
            base = self.paths.spool_mount(name) / "mail"
        else:
            base = self.paths.shared_mail_base() if self.options.shared_spool else self.paths.mail_base(name)
        d = self.paths.root / "dovecot" / name
        conf = write_instance(d, "*, ::", base, MAIL_UID, MAIL_GID, tls / "cert.pem", tls / "key.pem")
        self._spawn(name, dovecot_cmd(conf), d / "dovecot.pid", d / "stdout.log")

    def _spawn(self, host: str, cmd: list[str], pidfile: Path, logfile: Path, cwd: Path | None = None) -> int:
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(in_ns(self.ns(host), cmd), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
        write_pidfile(pidfile, proc.pid)
        return proc.pid

    # ------------------------------------------------------------------ services

    def mta(self, name: str) -> MtaResource:
        """The Postfix instance of a lab host, driven from outside its namespace."""
        return MtaResource(f"postfix@{name}", self.paths.postfix_conf(name), wrap=in_ns(self.ns(name), []))

    def _start_postfix(self, name: str) -> tuple[str, OCF]:
        return name, self.mta(name).start()

    def start_mta(self, name: str) -> OCF:
        return self.mta(name).start()

    def stop_mta(self, name: str) -> OCF:
        return self.mta(name).stop()

    def start_agent(self, name: str, config: Path | None = None) -> int:
        """Start the node agent in the node's namespace (idempotent); `config`: another spec file
        for this start only (a node on its way through a rolling change of timing)."""
        host = self.plan.host(name)
        if not host.is_mail_node:
            raise LabError(f"{name} is not a mail node: no agent runs there", exit_code=2)
        pid = read_pidfile(self.paths.agent_pid(name))
        if pid is not None:
            return pid
        node_dir = self.paths.node(name)
        node_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "hacluster", "agent", "--config", str(config or self.paths.spec), "--node", name,
               "--state-dir", str(node_dir), "--claims-log", str(self.paths.claims(name))]
        return self._spawn(name, cmd, self.paths.agent_pid(name), self.paths.agent_log(name), cwd=node_dir)

    def agent_pid(self, name: str) -> int | None:
        return read_pidfile(self.paths.agent_pid(name))

    def stop_agent(self, name: str, timeout_s: float = 10.0) -> float | None:
        """SIGTERM the agent (it stops its resources and hands its roles off) and wait for it to
        exit; SIGKILL after `timeout_s`. Returns the seconds it took, None if none was running."""
        pid = self.agent_pid(name)
        if pid is None:
            return None
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        (self.paths.frozen / name).unlink(missing_ok=True)
        while self.agent_pid(name) is not None:
            if time.monotonic() - t0 > timeout_s:
                netns.signal_pids([pid], signal.SIGKILL)
                break
            time.sleep(0.02)
        return round(time.monotonic() - t0, 3)

    def restart_agent(self, name: str) -> dict[str, Any]:
        """A planned agent restart (SIGTERM, wait, start), logged like a fault."""
        return self.fault(name, "restart-agent")

    def _agents_settled(self, grace_s: float = 1.0) -> dict[str, str]:
        """Give agents a moment; report the ones that died at once (bad config, missing module)."""
        time.sleep(grace_s)
        out = {}
        for h in self.plan.of_kind("relay", "store", "fallback"):
            if self.agent_pid(h.name) is not None:
                out[h.name] = "running"
            else:
                tail = _tail(self.paths.agent_log(h.name))
                out[h.name] = f"exited: {tail}"
        return out

    def start_service(self, name: str) -> None:
        """What a host runs after boot (power-on): its lab services and its agent."""
        host = self.plan.host(name)
        if host.kind in POSTFIX_KINDS:
            rc = self.start_mta(name)
            if rc != OCF.SUCCESS:
                raise LabError(f"postfix on {name} did not start ({rc.name}); log: {self.paths.maillog(name)}")
        if host.kind == "store":
            self._start_dovecot(name)
        if host.kind == "dns":
            self._start_dns()
        if host.kind == "zk":
            ens = self._ensemble()
            ens.start_server(host.zk_id or 0)
            atexit.unregister(ens.stop)
        if host.is_mail_node and self.options.agents and agent_available():
            self.start_agent(name)

    # ------------------------------------------------------------------ manual holds (no agent)

    def hold_vip(self, name: str, role: str | None = None, garp: bool = True) -> list[str]:
        """Add the role's VIPs on `name` by hand, like a holder would (tests, keepalived runs)."""
        host = self.plan.host(name)
        vips = self._vips_for(host, role)
        netns.ip_batch(self.ns(name), [f"addr replace {v.address} dev {v.interface}" + (" nodad" if v.address.version == 6 else "")
                                       for v in vips])
        if garp:
            for v in vips:
                run(in_ns(self.ns(name), [sys.executable, "-m", "hacluster_lab.lab.garp", v.interface, v.ip]))
        return [v.ip for v in vips]

    def release_vip(self, name: str, role: str | None = None) -> list[str]:
        host = self.plan.host(name)
        vips = self._vips_for(host, role)
        for v in vips:
            run(["ip", "-n", self.ns(name), "addr", "del", str(v.address), "dev", v.interface], check=False)
        return [v.ip for v in vips]

    def _vips_for(self, host: Host, role: str | None) -> list:
        vips = [v for v in self.plan.vips if (v.role == role if role else v.tier == host.kind)]
        if not vips:
            raise LabError(f"no VIP for {host.name} (role {role or host.kind})", exit_code=2)
        return vips

    # ------------------------------------------------------------------ mail

    def send_mail(self, to: str, subject: str | None = None, body: str = "hacluster lab test\n",
                  sender: str | None = None) -> str:
        """Inject a message on the client (sendmail; the client delivers by MX). Returns a token
        that appears in the Subject and a header, for `find_mail`."""
        from .dovecot import probe_message

        sender = sender or f"tester@client.{self.plan.domain}"
        token, msg = probe_message(to, sender, subject or "lab", body)
        conf = self.paths.postfix_conf("client")
        run(in_ns(self.ns("client"), ["sendmail", "-C", str(conf), "-f", sender, "--", to]), input=msg)
        return token

    def maildirs(self) -> dict[str, Path]:
        """Store host -> its Maildir base (one shared base with options.shared_spool)."""
        return {h.name: (self.paths.shared_mail_base() if self.options.shared_spool else self.paths.mail_base(h.name))
                for h in self.plan.of_kind("store")}

    def find_mail(self, token: str) -> list[tuple[str, Path]]:
        """(store, file) of every delivered message carrying `token`."""
        out = []
        for store, base in self.maildirs().items():
            for f in sorted(base.glob("*/new/*")) + sorted(base.glob("*/cur/*")):
                try:
                    if token in f.read_text(errors="replace"):
                        out.append((store, f))
                except OSError:
                    continue
        return out

    def wait_mail(self, token: str, timeout_s: float = 30.0) -> tuple[str, Path]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.find_mail(token)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise LabError(f"mail {token} not delivered to any store within {timeout_s:g}s")
            time.sleep(0.1)

    # ------------------------------------------------------------------ ZooKeeper, queues, spool

    def ns_call(self, name: str, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Run `fn` in a short-lived thread that has joined the host's network namespace (setns
        affects only the calling thread), so its sockets live there: a TCP probe without a
        subprocess. Raises what `fn` raised."""
        from .rtnl import CLONE_NEWNET, _libc

        ns = self.ns(name)
        box: list[Any] = []

        def target() -> None:
            try:
                fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns({ns}) failed")
                finally:
                    os.close(fd)
                box.append((True, fn()))
            except BaseException as err:  # handed to the caller
                box.append((False, err))

        t = threading.Thread(target=target, name=f"ns-call-{ns}", daemon=True)
        t.start()
        t.join(timeout_s)
        if not box:
            raise LabError(f"{name}: call in {ns} did not finish within {timeout_s:g}s")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def zk_modes(self) -> dict[str, str | None]:
        """zk host -> `leader` / `follower` / None (down or not serving): `srvr` asked from inside
        each zk namespace, in parallel (the ensemble object of `up` is gone in an attached lab)."""
        from hacluster.zkserver import four_letter, parse_mode

        def ask(h: Host) -> tuple[str, str | None]:
            if h.name in self.powered_off():
                return h.name, None
            try:
                answer = self.ns_call(h.name, lambda: four_letter(h.address, h.zk_port or 2181, timeout=1.0))
            except OSError:
                return h.name, None
            return h.name, parse_mode(answer)

        zks = self.plan.of_kind("zk")
        with ThreadPoolExecutor(max_workers=len(zks) or 1) as pool:
            return dict(pool.map(ask, zks))

    def zk_leader(self) -> str | None:
        """The zk host that leads the ensemble now (None: no quorum)."""
        return next((n for n, m in self.zk_modes().items() if m in ("leader", "standalone")), None)

    def queue_length(self, name: str) -> int:
        """Messages in a host's Postfix queue (maildrop, incoming, active, deferred, hold), counted
        from the queue directory: it works whether or not the instance runs, and costs no
        subprocess (`postqueue` needs a running master). A file in incoming/ counts only once
        cleanup has marked it complete (owner-execute bit): a half-received message whose sender
        went away (a VIP moved mid-DATA) is not mail anyone accepted; smtpd removes it later."""
        base = self.paths.postfix_queue(name)
        count = 0
        for sub in QUEUE_DIRS:
            for dirpath, _dirs, files in os.walk(base / sub):
                if sub != "incoming":
                    count += len(files)
                    continue
                for f in files:
                    try:
                        if os.stat(os.path.join(dirpath, f)).st_mode & 0o100:
                            count += 1
                    except OSError:
                        continue
        return count

    def flush_queue(self, name: str) -> bool:
        """`postqueue -f`: retry deferred mail now (only a running instance can)."""
        if self.mta(name).master_pid() is None:
            return False
        return run(in_ns(self.ns(name), ["postqueue", "-c", str(self.paths.postfix_conf(name)), "-f"]),
                   check=False).returncode == 0

    def mount_tmpfs(self, path: Path, size_mb: int, uid: int = 0, gid: int = 0, mode: int = 0o755) -> Path:
        """Mount a small tmpfs at `path` (inside the state dir), e.g. a store's Maildir base so a
        drill can fill the spool for real. `down` unmounts everything under the state dir."""
        path = Path(path).resolve()
        if self.paths.root.resolve() not in path.parents:
            raise LabError(f"{path}: a lab mount must be inside {self.paths.root}", exit_code=2)
        path.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", f"size={int(size_mb)}m,uid={uid},gid={gid},mode={mode:o}",
             f"{self.prefix}spool", str(path)])
        return path

    # ------------------------------------------------------------------ exec / status

    def exec(self, name: str, cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run `cmd` in the host's namespace (kwargs go to subprocess.run)."""
        return subprocess.run(in_ns(self.ns(name), list(cmd)), **kwargs)

    def powered_off(self) -> set[str]:
        try:
            return set(os.listdir(self.paths.power))
        except FileNotFoundError:
            return set()

    def status(self) -> dict[str, Any]:
        rec = load_json(self.paths.lab_json) or {}
        off = self.powered_off()
        frozen = set(os.listdir(self.paths.frozen)) if self.paths.frozen.exists() else set()
        hosts: dict[str, Any] = {}
        holders: dict[str, list[str]] = {v.ip: [] for v in self.plan.vips}
        zk_pids = {h.name: read_pidfile(self.paths.zk / f"zk{h.zk_id}" / "zk.pid") for h in self.plan.of_kind("zk")}
        for name in self.plan.names():
            ns = self.plan.ns(name)
            entry: dict[str, Any] = {"ns": ns, "exists": netns.exists(ns)}
            if name != ROUTER:
                host = self.plan.host(name)
                entry.update(kind=host.kind, powered_off=name in off, agent_frozen=name in frozen)
            if not entry["exists"]:
                hosts[name] = entry
                continue
            links = _ip_json(ns, ["addr", "show"])
            entry["links"] = {
                ln["ifname"]: {"up": "UP" in ln.get("flags", []), "mac": ln.get("address"),
                               "addresses": [f"{a['local']}/{a['prefixlen']}" for a in ln.get("addr_info", [])]}
                for ln in links if ln.get("ifname") != "lo"
            }
            entry["processes"] = len(netns.pids_in(ns))
            entry["filters"] = sorted(f"{fam} {t}" for fam, t in _nft_tables(ns))
            if name != ROUTER:
                host = self.plan.host(name)
                svc: dict[str, Any] = {}
                if host.kind in ("client", "relay", "fallback", "store"):
                    svc["postfix"] = self.mta(name).master_pid() is not None
                if host.is_mail_node:
                    svc["agent"] = self.agent_pid(name) is not None
                if host.kind == "dns":
                    svc["dnsmasq"] = read_pidfile(self.paths.dns / "dnsmasq.pid") is not None
                if host.kind == "zk":
                    svc["zookeeper"] = zk_pids.get(name) is not None
                entry["services"] = svc
                if name not in off:
                    for ln in entry["links"].values():
                        if not ln["up"]:
                            continue
                        for a in ln["addresses"]:
                            ip = a.split("/")[0]
                            if ip in holders:
                                holders[ip].append(name)
            hosts[name] = entry
        roles: dict[str, list[str]] = {}
        for v in self.plan.vips:
            roles.setdefault(v.role, [])
            for h in holders[v.ip]:
                if h not in roles[v.role]:
                    roles[v.role].append(h)
        return {"state_dir": str(self.paths.root), "prefix": self.prefix, "status": rec.get("status", "down"),
                "up": netns.exists(self.plan.router_ns), "hosts": hosts, "vips": holders, "roles": roles,
                "faults": len(read_jsonl(self.paths.faults))}

    # ------------------------------------------------------------------ faults

    def fault(self, name: str, kind: str) -> dict[str, Any]:
        """Apply a host fault and append it (with CLOCK_MONOTONIC and wall time) to the fault log."""
        from .faults import apply_host_fault

        if kind not in FAULTS:
            raise LabError(f"unknown fault {kind!r} (known: {', '.join(FAULTS)})", exit_code=2)
        host = self.plan.host(name) if name != ROUTER else None
        if host is None:
            raise LabError("faults apply to lab hosts, not the router", exit_code=2)
        stamp = now_stamp()
        detail = apply_host_fault(self, host, kind)
        rec = {**stamp, "fault": kind, "node": name, "detail": detail,
               "duration_s": round(time.clock_gettime(time.CLOCK_MONOTONIC) - stamp["t_mono"], 6)}
        append_jsonl(self.paths.faults, rec)
        return rec

    def partition(self, a: str | Sequence[str], b: str | Sequence[str]) -> dict[str, Any]:
        from .faults import apply_partition

        side_a = _names(a)
        side_b = _names(b)
        hosts_a = [self.plan.host(n) for n in side_a]
        hosts_b = [self.plan.host(n) for n in side_b]
        if set(side_a) & set(side_b):
            raise LabError(f"a host can't be on both sides of a partition: {sorted(set(side_a) & set(side_b))}", exit_code=2)
        stamp = now_stamp()
        apply_partition(self, hosts_a, hosts_b)
        rec = {**stamp, "fault": "partition", "node": ",".join(side_a), "peer": ",".join(side_b),
               "duration_s": round(time.clock_gettime(time.CLOCK_MONOTONIC) - stamp["t_mono"], 6)}
        append_jsonl(self.paths.faults, rec)
        return rec

    def heal(self) -> dict[str, Any]:
        from .faults import heal_all

        stamp = now_stamp()
        healed = heal_all(self)
        rec = {**stamp, "fault": "heal", "node": ",".join(healed),
               "duration_s": round(time.clock_gettime(time.CLOCK_MONOTONIC) - stamp["t_mono"], 6)}
        append_jsonl(self.paths.faults, rec)
        return rec

    def faults(self) -> list[dict[str, Any]]:
        return read_jsonl(self.paths.faults)

    # ------------------------------------------------------------------ monitor

    def monitor(self, **kwargs: Any):
        """An InvariantMonitor over this lab's mail nodes, VIPs and router (not started)."""
        from .monitor import InvariantMonitor, MonitorTarget

        return InvariantMonitor(MonitorTarget.from_lab(self), **kwargs)

    # ------------------------------------------------------------------ down

    def down(self) -> DownReport:
        return Lab.teardown(self.paths.root, self.prefix)

    @staticmethod
    def teardown(state_dir: str | Path = DEFAULT_STATE_DIR, prefix: str | None = None) -> DownReport:
        """Remove every namespace, process, file and main.cf change of the lab at `state_dir`.

        Idempotent, and needs nothing but the state dir and the prefix: processes are found by
        namespace (every lab process lives in one) and by pid file, namespaces by name prefix,
        the main.cf change by its marker lines."""
        t0 = time.monotonic()
        paths = LabPaths(Path(state_dir))
        rec = load_json(paths.lab_json) or {}
        prefix = prefix or rec.get("prefix") or DEFAULT_PREFIX
        spaces = netns.list_ns(prefix)
        killed = 0
        # thaw first: a SIGSTOPped process dies on SIGKILL anyway, but its children may wait
        for ns in spaces:
            netns.kill_all(ns, signal.SIGCONT)
        for ns in spaces:
            killed += netns.kill_all(ns, signal.SIGKILL)
        # a process whose namespace was deleted under it is only found by its pid file
        # (zombies awaiting their reaper count as dead: read_pidfile says None)
        for pidfile in [*paths.root.glob("nodes/*/agent.pid"), paths.dns / "dnsmasq.pid", *paths.zk.glob("zk*/zk.pid")]:
            pid = read_pidfile(pidfile)
            if pid is not None:
                killed += netns.signal_pids([pid], signal.SIGKILL)
        for ns in spaces:
            netns.delete_ns(ns)
        netns.remove_etc_netns(prefix)
        restored = unregister_config_dirs(paths.root, paths.maincf_orig)
        for mnt in _mounts_under(paths.root):
            run(["umount", "-l", str(mnt)], check=False)
        from .blockspool import destroy

        destroy(paths)  # a block-device spool's loop device (nothing mounts it any more)
        removed = False
        if paths.root.exists() and (paths.root / MARKER).exists():
            shutil.rmtree(paths.root, ignore_errors=True)
            removed = not paths.root.exists()
        return DownReport(round(time.monotonic() - t0, 3), spaces, killed, restored, removed)


# --------------------------------------------------------------------------- helpers


def _names(x: str | Sequence[str]) -> list[str]:
    if isinstance(x, str):
        return [n for n in x.split(",") if n]
    return list(x)


def _mounts_under(root: Path) -> list[Path]:
    """Mount points below `root`, deepest first (from /proc/self/mountinfo; octal escapes decoded)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    base = str(Path(root).resolve())
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) < 5:
            continue
        mnt = parts[4].encode().decode("unicode_escape")
        if mnt.startswith(base + "/"):
            out.append(Path(mnt))
    return sorted(set(out), key=lambda p: len(p.parts), reverse=True)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _ip_json(ns: str, args: list[str]) -> list[dict[str, Any]]:
    proc = run(["ip", "-j", "-n", ns, *args], check=False)
    try:
        return json.loads(proc.stdout or "[]")
    except ValueError:
        return []


def _nft_tables(ns: str) -> set[tuple[str, str]]:
    proc = run(in_ns(ns, ["nft", "list", "tables"]), check=False)
    return nftrules.present_tables(proc.stdout) & set(nftrules.ALL_TABLES)
