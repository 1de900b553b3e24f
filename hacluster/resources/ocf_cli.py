"""Our resources as OCF resource agents, for Pacemaker (or any OCF runner, including our own).

`hacluster resource run TYPE ACTION --param k=v ...` runs one action of one of our resource types
and exits with the OCF code; `python -m hacluster.resources.ocf_cli TYPE ACTION` does the same
with the parameters taken from OCF_RESKEY_* -- that is what the scripts in agents/ocf/ exec.
`meta-data` prints the ra-api-1 XML generated from the PARAMS table below (one source of truth
for the scripts, the docs and the test that validates the XML).

Each OCF call is a fresh process, so resources that must keep running between calls (the
mirrored spool's sender, the replicator's receiver) run as a detached `python -m hacluster.spool`
daemon whose pid file lives in the state directory; start/stop/monitor manage that daemon.
Fencing token: OCF_RESKEY_token, else HACLUSTER_TOKEN (set by our OCF runner), else the
wall-clock milliseconds at start (a later promotion wins; needs synchronised clocks). It is kept
in the state directory so monitor checks the same token.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from xml.sax.saxutils import escape, quoteattr

import click

from ..errors import UserError
from .base import OCF

log = logging.getLogger(__name__)

ACTIONS = ("start", "stop", "monitor", "promote", "demote", "validate-all", "meta-data")


@dataclass(frozen=True)
class P:
    """One OCF parameter: `kind` drives both the XML content type and the string -> value coercion."""

    name: str
    kind: str  # string | integer | number | boolean | list
    desc: str
    required: bool = False
    default: str | None = None
    unique: bool = False


COMMON = (
    P("token", "integer", "Fencing token (lease term). Default: HACLUSTER_TOKEN, else wall-clock ms at start."),
    P("state_dir", "string", "Directory for pid, token and report files.",
      default="${HA_RSCTMP:-/run/resource-agents}/hacluster-${OCF_RESOURCE_INSTANCE}"),
)

TYPES: dict[str, tuple[str, tuple[P, ...]]] = {
    "spool": ("The mail spool of the store tier: a shared device mounted on the holder only, with an "
              "owner marker carrying the fencing token, or a mirrored Maildir replicated per message.", (
        P("mode", "string", "shared or mirrored.", required=True),
        P("path", "string", "Mount point (shared) or local Maildir root (mirrored).", required=True, unique=True),
        P("device", "string", "shared: block device or directory (bind mount)."),
        P("fstype", "string", "shared: filesystem type passed to mount -t."),
        P("mount_options", "string", "shared: mount -o options."),
        P("subdirs", "list", "shared: directories to create on the spool (e.g. mail postfix-queue)."),
        P("umount_wait_s", "number", "shared: seconds to wait for busy files before a lazy unmount.", default="5"),
        P("peer", "list", "mirrored: peers' replicators, HOST[:PORT] (space-separated).", ),
        P("replicate_port", "integer", "mirrored: default replicator port.", default="7925"),
        P("listen", "string", "mirrored: this node's replicator HOST[:PORT] (run by ocf:hacluster:hacluster-replicator)."),
        P("catchup_timeout_s", "number", "mirrored: per-peer connect/IO timeout of the promotion catch-up.", default="10"),
        P("require_catchup", "boolean", "mirrored: fail the start when the old holder cannot be reached.", default="false"),
        P("drain_timeout_s", "number", "mirrored: seconds stop waits for pending copies.", default="1"),
        P("scan_interval_s", "number", "mirrored: full rescan interval (inotify does the rest).", default="5"),
        *COMMON)),
    "replicator": ("The mirrored spool's receiver: stores the holder's messages on this node and serves a "
                   "new holder's catch-up. Run it as a clone on every store node.", (
        P("path", "string", "Local Maildir root.", required=True, unique=True),
        P("listen", "string", "HOST[:PORT] to listen on.", required=True),
        P("replicate_port", "integer", "Port when listen has none.", default="7925"),
        *COMMON)),
    "mta": ("A Postfix instance with its own configuration directory.", (
        P("config_dir", "string", "The instance's main.cf/master.cf directory (default: the system instance).",
          unique=True),
        P("restart_attempts", "integer", "Extra start attempts.", default="1"),
        P("kind", "string", "MTA kind (postfix).", default="postfix"),
        *COMMON)),
    "vip": ("A virtual IP address announced with gratuitous ARP / unsolicited NA.", (
        P("ip", "string", "The address.", required=True, unique=True),
        P("cidr_netmask", "integer", "Prefix length.", default="24"),
        P("nic", "string", "Interface.", required=True),
        P("garp_count", "integer", "Announcements after adding the address.", default="3"),
        P("garp_interval_s", "number", "Seconds between announcements."),
        P("dad_timeout_s", "number", "Duplicate-address wait before adding (0: none)."),
        P("guard", "boolean", "Hand the address to a guard process (our agent's lease; off under Pacemaker).",
          default="false"),
        *COMMON)),
}


# --------------------------------------------------------------------------- meta-data


def meta_data_xml(rtype: str) -> str:
    longdesc, params = TYPES[rtype]
    lines = ['<?xml version="1.0"?>', '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">',
             f'<resource-agent name="hacluster-{rtype}" version="0.1">', "<version>1.1</version>",
             f'<longdesc lang="en">{escape(longdesc)}</longdesc>',
             f'<shortdesc lang="en">hacluster {rtype}</shortdesc>', "<parameters>"]
    for p in params:
        ctype = {"integer": "integer", "boolean": "boolean"}.get(p.kind, "string")
        default = f" default={quoteattr(p.default)}" if p.default is not None else ""
        lines += [f'<parameter name="{p.name}" unique="{int(p.unique)}" required="{int(p.required)}">',
                  f'<longdesc lang="en">{escape(p.desc)}</longdesc>',
                  f'<shortdesc lang="en">{escape(p.desc.split(".")[0])}</shortdesc>',
                  f'<content type="{ctype}"{default}/>', "</parameter>"]
    lines += ["</parameters>", "<actions>",
              '<action name="start" timeout="60s"/>', '<action name="stop" timeout="60s"/>',
              '<action name="monitor" timeout="20s" interval="10s" depth="0"/>',
              '<action name="validate-all" timeout="20s"/>', '<action name="meta-data" timeout="5s"/>',
              "</actions>", "</resource-agent>"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- parameters


def coerce(p: P, raw: str) -> Any:
    """OCF parameters are strings; our builders want typed values. ValueError names the problem."""
    if p.kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{p.name}: not an integer: {raw!r}") from None
    if p.kind == "number":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{p.name}: not a number: {raw!r}") from None
    if p.kind == "boolean":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on", "y"):
            return True
        if low in ("0", "false", "no", "off", "n", ""):
            return False
        raise ValueError(f"{p.name}: not a boolean: {raw!r}")
    if p.kind == "list":
        return [x for x in raw.replace(",", " ").split() if x]
    return raw


def params_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """OCF_RESKEY_<name> (not CRM_meta_*), empty values dropped (= use the default)."""
    return {k[len("OCF_RESKEY_"):]: v for k, v in env.items()
            if k.startswith("OCF_RESKEY_") and not k.startswith("OCF_RESKEY_CRM_meta") and v != ""}


def typed_params(rtype: str, raw: Mapping[str, str]) -> dict[str, Any]:
    _, params = TYPES[rtype]
    known = {p.name: p for p in params}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in known:
            raise ValueError(f"{k}: not a parameter of hacluster-{rtype} (known: {', '.join(known)})")
        out[k] = coerce(known[k], v)
    for p in params:
        if p.required and p.name not in out:
            raise ValueError(f"{p.name}: required")
    return out


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class _Spec:
    """The part of ClusterSpec our builders read, for a resource run outside a cluster spec."""

    source: str
    name: str = "ocf"

    def candidates(self, role: str) -> tuple:
        return ()


def _node_name(env: Mapping[str, str]) -> str:
    return env.get("OCF_RESKEY_CRM_meta_on_node") or env.get("HA_NODENAME") or socket.gethostname()


class Runner:
    """One OCF action for one resource, with its state directory."""

    def __init__(self, rtype: str, params: dict[str, Any], instance: str, env: Mapping[str, str]) -> None:
        self.rtype, self.instance, self.env = rtype, instance, env
        self.params = dict(params)
        self.node = _node_name(env)
        default_state = Path(env.get("HA_RSCTMP") or "/run/resource-agents") / f"hacluster-{instance}"
        self.state_dir = Path(self.params.pop("state_dir", default_state))
        self.token_arg = self.params.pop("token", None)
        if self.token_arg is None and env.get("HACLUSTER_TOKEN", "").lstrip("-").isdigit():
            self.token_arg = int(env["HACLUSTER_TOKEN"])

    # token kept between calls so monitor checks the one start claimed
    def _token_file(self) -> Path:
        return self.state_dir / "token"

    def token(self, starting: bool) -> int | None:
        if self.token_arg is not None:
            return int(self.token_arg)
        if starting:
            return int(time.time() * 1000)
        try:
            return int(self._token_file().read_text())
        except (OSError, ValueError):
            return None

    def _save_token(self, token: int) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._token_file().write_text(f"{token}\n")

    # ------------------------------------------------------------------ builders

    def _ctx(self, role_vips: tuple = ()) -> Any:
        from ..spec import NodeSpec, RoleSpec
        from .factory import ResourceContext

        addr = self.params.get("ip") or "127.0.0.1"
        node = NodeSpec(self.node, "ocf", str(self.params.get("nic", "lo")), (ipaddress.ip_interface(addr),))
        return ResourceContext(_Spec(f"<ocf:hacluster:hacluster-{self.rtype}>"), RoleSpec(self.instance, "ocf", role_vips),  # type: ignore[arg-type]
                               node, self.state_dir)

    def build(self) -> Any:
        from ..spec import ResourceSpec

        if self.rtype == "mta":
            from . import mta
            return mta.build(ResourceSpec("mta", self.instance, self.params), dict(self.params), self._ctx())
        if self.rtype == "vip":
            from ..spec import VipSpec
            from . import vip
            p = dict(self.params)
            vspec = VipSpec(ipaddress.ip_interface(f"{p.pop('ip')}/{p.pop('cidr_netmask', 24)}"), p.pop("nic"))
            p.setdefault("guard", False)
            return vip.build(ResourceSpec("vip", self.instance, p), p, self._ctx((vspec,)))
        if self.rtype == "spool" and self.params.get("mode") == "shared":
            from . import spool
            return spool.build(ResourceSpec("spool", self.instance, self.params), dict(self.params), self._ctx())
        raise AssertionError(self.rtype)

    # ------------------------------------------------------------------ actions

    def run(self, action: str) -> OCF:
        if action == "meta-data":
            sys.stdout.write(meta_data_xml(self.rtype))
            return OCF.SUCCESS
        daemon = self.rtype == "replicator" or (self.rtype == "spool" and self.params.get("mode") == "mirrored")
        if daemon:
            return self._run_daemon(action)
        try:
            res = self.build()
        except UserError as err:
            print(f"ocf-exit-reason:{err}", file=sys.stderr)
            return OCF.ERR_CONFIGURED
        except (KeyError, ValueError) as err:
            print(f"ocf-exit-reason:{err}", file=sys.stderr)
            return OCF.ERR_CONFIGURED
        if action == "validate-all":
            return OCF.SUCCESS
        token = self.token(starting=action == "start")
        if token is not None:
            res.set_fencing_token(token)
        if action == "start":
            rc = res.start()
            if rc == OCF.SUCCESS and token is not None:
                self._save_token(token)
            return rc
        if action in ("stop", "monitor", "promote", "demote"):
            return getattr(res, action)()
        return OCF.ERR_UNIMPLEMENTED

    # ------------------------------------------------------------------ daemons (mirrored spool, replicator)

    def _pidfile(self) -> Path:
        return self.state_dir / "daemon.pid"

    def _daemon_pid(self) -> int | None:
        try:
            pid = int(self._pidfile().read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if b"hacluster.spool" in cmdline else None  # a reused pid is not ours

    def _spawn(self, argv: list[str]) -> OCF:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.state_dir / "daemon.log", "ab")
        try:
            p = subprocess.Popen([sys.executable, "-m", "hacluster.spool", *argv], stdin=subprocess.DEVNULL,
                                 stdout=logf, stderr=logf, start_new_session=True, cwd="/")
        finally:
            logf.close()
        self._pidfile().write_text(f"{p.pid}\n")
        time.sleep(0.2)
        if p.poll() is not None:
            print(f"ocf-exit-reason:daemon exited {p.returncode}; see {self.state_dir}/daemon.log", file=sys.stderr)
            return OCF.ERR_GENERIC
        return OCF.SUCCESS

    def _kill_daemon(self, timeout_s: float) -> OCF:
        pid = self._daemon_pid()
        if pid is None:
            return OCF.SUCCESS
        os.kill(pid, signal.SIGTERM)  # `send` drains pending copies first
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._daemon_pid() is not None:
            time.sleep(0.05)
        if self._daemon_pid() is not None:
            os.kill(pid, signal.SIGKILL)
        self._pidfile().unlink(missing_ok=True)
        return OCF.SUCCESS

    def _run_daemon(self, action: str) -> OCF:
        from ..spool.protocol import parse_peer

        p = self.params
        try:
            port = int(p.get("replicate_port", 7925))
            listen = parse_peer(p["listen"], port, listen=True) if p.get("listen") else None
            peers = [parse_peer(x, port) for x in p.get("peer", [])]
        except (ValueError, KeyError) as err:
            print(f"ocf-exit-reason:{err}", file=sys.stderr)
            return OCF.ERR_CONFIGURED
        if self.rtype == "replicator" and listen is None:
            print("ocf-exit-reason:listen: required", file=sys.stderr)
            return OCF.ERR_CONFIGURED
        if self.rtype == "spool" and not peers:
            print("ocf-exit-reason:peer: mirrored mode needs at least one peer", file=sys.stderr)
            return OCF.ERR_CONFIGURED
        if action == "validate-all":
            return OCF.SUCCESS
        running = self._daemon_pid() is not None
        if action == "monitor":
            return OCF.SUCCESS if running else OCF.NOT_RUNNING
        if action == "stop":
            return self._kill_daemon(float(p.get("drain_timeout_s", 1.0)) + 5)
        if action != "start":
            return OCF.SUCCESS if action in ("promote", "demote") else OCF.ERR_UNIMPLEMENTED
        if running:
            return OCF.SUCCESS
        if self.rtype == "replicator":
            assert listen is not None  # a replicator without one was refused above
            return self._spawn(["serve", "--path", p["path"], "--listen", f"{listen[0]}:{listen[1]}",
                                "--node", self.node, "--name", self.instance])
        return self._promote_mirror(peers, listen)

    def _promote_mirror(self, peers: list[tuple[str, int]], listen: tuple[str, int] | None) -> OCF:
        import json

        from ..spool.marker import StaleToken, claim, write_atomic
        from ..spool.protocol import Client, Rejected
        from ..spool.sender import catch_up

        p, path = self.params, Path(self.params["path"])
        token = self.token(starting=True)
        assert token is not None
        path.mkdir(parents=True, exist_ok=True)
        try:
            claim(path, token, self.node)
            results = [catch_up(path, peer, token, self.node, self.instance, float(p.get("catchup_timeout_s", 10)))
                       for peer in peers]
        except (StaleToken, Rejected) as err:
            print(f"ocf-exit-reason:{err}", file=sys.stderr)
            return OCF.ERR_GENERIC
        missing: list[str] = []
        if listen is not None and any(not r.reachable for r in results):
            try:  # the local replicator knows what the old holder announced and never sent
                with Client(listen[0] if listen[0] not in ("0.0.0.0", "::") else "127.0.0.1", listen[1], token,
                            self.node, 5.0) as c:
                    missing = c.call("missing")[0].get("paths", [])
            except (OSError, Rejected) as err:
                log.warning("cannot ask the local replicator for the missing list: %s", err)
        report = {"token": token, "pulled": sorted(x for r in results for x in r.pulled),
                  "failed": {k: v for r in results for k, v in r.failed.items()},
                  "unreachable": {r.peer: r.detail for r in results if not r.reachable}, "missing": missing}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_dir / f"promotion-{token}.json", json.dumps(report, indent=1).encode())
        if report["unreachable"] or report["failed"]:
            print(f"old holder not fully copied: {len(missing)} announced messages missing", file=sys.stderr)
            if p.get("require_catchup"):
                print("ocf-exit-reason:catch-up incomplete and require_catchup is set", file=sys.stderr)
                return OCF.ERR_GENERIC
        self._save_token(token)
        argv = ["send", "--path", str(path), "--token", str(token), "--node", self.node, "--name", self.instance,
                "--scan-interval-s", str(p.get("scan_interval_s", 5.0)), "--drain-s", str(p.get("drain_timeout_s", 1.0))]
        for host, port in peers:
            argv += ["--peer", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        return self._spawn(argv)


def run_action(rtype: str, action: str, raw_params: Mapping[str, str], instance: str | None = None,
               env: Mapping[str, str] | None = None) -> int:
    """Exit code of one OCF action (never raises for bad input: ERR_CONFIGURED with a reason)."""
    env = os.environ if env is None else env
    if rtype not in TYPES:
        print(f"ocf-exit-reason:unknown resource type {rtype!r} (known: {', '.join(TYPES)})", file=sys.stderr)
        return OCF.ERR_CONFIGURED
    if action not in ACTIONS:
        print(f"ocf-exit-reason:unsupported action {action!r}", file=sys.stderr)
        return OCF.ERR_UNIMPLEMENTED
    if action == "meta-data":
        sys.stdout.write(meta_data_xml(rtype))
        return OCF.SUCCESS
    try:
        params = typed_params(rtype, raw_params)
    except ValueError as err:
        print(f"ocf-exit-reason:{err}", file=sys.stderr)
        return OCF.ERR_CONFIGURED
    inst = instance or env.get("OCF_RESOURCE_INSTANCE") or f"hacluster-{rtype}"
    return int(Runner(rtype, params, inst, env).run(action))


# --------------------------------------------------------------------------- CLI


@click.group("resource")
def resource() -> None:
    """Run our resources one OCF action at a time (what agents/ocf/* call)."""


@resource.command("run")
@click.argument("rtype", metavar="TYPE", type=click.Choice(sorted(TYPES)))
@click.argument("action", type=click.Choice(ACTIONS))
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A resource parameter (repeatable).")
@click.option("--name", default=None, help="Instance name (OCF_RESOURCE_INSTANCE).")
@click.option("--from-env", is_flag=True, help="Also take parameters from OCF_RESKEY_*.")
def run_cmd(rtype: str, action: str, params: tuple[str, ...], name: str | None, from_env: bool) -> None:
    """Run ACTION of a TYPE resource; the exit status is the OCF code (0 ok, 7 not running, ...)."""
    raw = params_from_env(os.environ) if from_env else {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param {item!r}: expected KEY=VALUE", exit_code=2)
        raw[key] = value
    raise click.exceptions.Exit(run_action(rtype, action, raw, name))


@resource.command("meta-data")
@click.argument("rtype", metavar="TYPE", type=click.Choice(sorted(TYPES)))
def meta_data_cmd(rtype: str) -> None:
    """Print the OCF meta-data XML of a resource type."""
    click.echo(meta_data_xml(rtype), nl=False)


def main(argv: list[str] | None = None) -> int:
    """`python -m hacluster.resources.ocf_cli TYPE ACTION`: parameters from OCF_RESKEY_*."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if len(args) != 2:
        print("usage: python -m hacluster.resources.ocf_cli TYPE ACTION", file=sys.stderr)
        return OCF.ERR_ARGS
    return run_action(args[0], args[1], params_from_env(os.environ))


if __name__ == "__main__":
    sys.exit(main())
