"""The `ocf` resource: run any OCF resource agent (Pacemaker's `ocf:heartbeat:postfix`, `Dummy`,
`Filesystem`, ... or our own scripts in agents/ocf/) unchanged.

An agent is an executable taking the action as its only argument; everything else comes from the
environment, exactly as Pacemaker's executor sets it: OCF_ROOT, OCF_FUNCTIONS_DIR,
OCF_RESOURCE_INSTANCE/TYPE/PROVIDER, OCF_RA_VERSION_MAJOR/MINOR, one OCF_RESKEY_<name> per
parameter and the OCF_RESKEY_CRM_meta_* attributes agents read (timeout in ms, interval 0 = probe).
The exit code is the OCF code. Each call runs in its own process group so a timeout kills the
agent *and* what it forked.

Params (spec `type: ocf`): `agent` ("ocf:PROVIDER:TYPE", "PROVIDER:TYPE" or a path), `params`
(mapping -> OCF_RESKEY_*), `timeout_s` (per action, default 20), `ocf_root` (default /usr/lib/ocf),
`instance` (OCF_RESOURCE_INSTANCE, default the resource name).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from .base import OCF, Resource
from .params import seconds

log = logging.getLogger(__name__)

OCF_ROOT = Path("/usr/lib/ocf")
RA_VERSION = (1, 1)  # the OCF 1.1 API (resource-agents >= 4.8 speaks it; promoted/demoted codes)
ACTIONS = ("start", "stop", "monitor", "promote", "demote", "notify", "reload", "meta-data", "validate-all")
MONITOR_INTERVAL_MS = 10_000  # what a recurring (non-probe) monitor announces in CRM_meta_interval


@dataclass(frozen=True)
class AgentRef:
    """Where an agent lives and the names Pacemaker would give it."""

    path: Path
    provider: str
    type: str

    @property
    def standard_name(self) -> str:
        return f"ocf:{self.provider}:{self.type}"


def resolve_agent(agent: str, ocf_root: Path = OCF_ROOT) -> AgentRef:
    """"ocf:heartbeat:postfix" / "heartbeat:postfix" -> OCF_ROOT/resource.d/heartbeat/postfix;
    a path names the script itself (provider: its directory's name under resource.d, else "local").
    Raises ValueError for a malformed name; existence is checked by `problem()`."""
    if "/" in agent:
        path = Path(agent)
        provider = path.parent.name if path.parent.parent.name == "resource.d" else "local"
        return AgentRef(path, provider, path.name)
    parts = agent.split(":")
    if len(parts) == 3 and parts[0] == "ocf":
        parts = parts[1:]
    elif parts[0] == "ocf":
        parts = []  # "ocf:TYPE" lacks the provider
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise ValueError(f"agent {agent!r}: expected ocf:PROVIDER:TYPE, PROVIDER:TYPE or a path")
    provider, rtype = parts
    return AgentRef(ocf_root / "resource.d" / provider / rtype, provider, rtype)


def reskey_value(value: Any) -> str:
    """OCF parameters are strings; booleans the way resource-agents' ocf_is_true reads them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def ocf_env(ref: AgentRef, instance: str, params: Mapping[str, Any], *, ocf_root: Path = OCF_ROOT,
            timeout_s: float = 20.0, interval_ms: int = 0, node: str | None = None,
            token: int | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Pacemaker's executor gives an agent (pure: tests compare it directly).
    Inherited OCF_* / HA_* variables are dropped so one agent's settings never leak into another."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(("OCF_", "HA_", "__OCF"))}
    env.update({
        "OCF_ROOT": str(ocf_root),
        "OCF_FUNCTIONS_DIR": str(ocf_root / "lib" / "heartbeat"),
        "OCF_RA_VERSION_MAJOR": str(RA_VERSION[0]),
        "OCF_RA_VERSION_MINOR": str(RA_VERSION[1]),
        "OCF_RESOURCE_INSTANCE": instance,
        "OCF_RESOURCE_TYPE": ref.type,
        "OCF_RESOURCE_PROVIDER": ref.provider,
        "OCF_RESKEY_CRM_meta_timeout": str(int(timeout_s * 1000)),
        "OCF_RESKEY_CRM_meta_interval": str(interval_ms),
        # ocf_log: no syslog, no tty; the log line goes to stderr, which we capture and log
        "HA_LOGFACILITY": "none",
        "HA_LOGFILE": "/dev/stderr",
    })
    if node:
        env["OCF_RESKEY_CRM_meta_on_node"] = node
        env["HA_NODENAME"] = node
    if token is not None:
        env["HACLUSTER_TOKEN"] = str(token)  # our own agents (agents/ocf/) fence with it
    for key, value in params.items():
        env[f"OCF_RESKEY_{key}"] = reskey_value(value)
    return env


@dataclass(frozen=True)
class Result:
    rc: OCF
    raw_rc: int
    stdout: str
    stderr: str
    seconds: float

    def reason(self) -> str:
        """The agent's `ocf_exit_reason` if it gave one, else the last stderr/stdout line."""
        for line in reversed(self.stderr.splitlines()):
            if line.startswith("ocf-exit-reason:"):
                return line.split(":", 1)[1].strip()
        tail = (self.stderr or self.stdout).strip().splitlines()
        return tail[-1][-300:] if tail else ""


def run_agent(path: Path, action: str, env: Mapping[str, str], timeout_s: float) -> Result:
    """One agent call in a new process group; on timeout the whole group is killed (TERM, then
    KILL after 1 s) and the result is ERR_GENERIC, as Pacemaker treats a timed-out operation."""
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen([str(path), action], env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, cwd="/")
    except FileNotFoundError:
        return Result(OCF.ERR_INSTALLED, OCF.ERR_INSTALLED, "", f"{path}: not found", 0.0)
    except PermissionError:
        return Result(OCF.ERR_INSTALLED, OCF.ERR_INSTALLED, "", f"{path}: not executable", 0.0)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = proc.communicate(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            out, err = "", ""
        return Result(OCF.ERR_GENERIC, -1, out or "", f"{action} timed out after {timeout_s:g}s\n{err or ''}",
                      time.monotonic() - t0)
    return Result(OCF.of(proc.returncode), proc.returncode, out, err, time.monotonic() - t0)


# --------------------------------------------------------------------------- meta-data


@dataclass(frozen=True)
class ParamMeta:
    name: str
    required: bool = False
    unique: bool = False
    type: str = "string"
    default: str | None = None
    shortdesc: str = ""


@dataclass(frozen=True)
class AgentMeta:
    name: str
    version: str
    parameters: tuple[ParamMeta, ...] = ()
    actions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def param(self, name: str) -> ParamMeta | None:
        return next((p for p in self.parameters if p.name == name), None)


def parse_meta_data(xml: str) -> AgentMeta:
    """The OCF meta-data document (ra-api-1.dtd) -> AgentMeta. ValueError names what is wrong."""
    try:
        root = ET.fromstring(xml.strip())
    except ET.ParseError as err:
        raise ValueError(f"meta-data is not well-formed XML: {err}") from None
    if root.tag != "resource-agent":
        raise ValueError(f"meta-data root element is <{root.tag}>, expected <resource-agent>")
    name = root.get("name")
    if not name:
        raise ValueError("meta-data: <resource-agent> has no name attribute")
    params: list[ParamMeta] = []
    pe = root.find("parameters")
    if pe is None:
        raise ValueError("meta-data: no <parameters> element")
    for p in pe.findall("parameter"):
        pname = p.get("name")
        if not pname:
            raise ValueError("meta-data: a <parameter> has no name")
        content = p.find("content")
        params.append(ParamMeta(pname, p.get("required") in ("1", "true"), p.get("unique") in ("1", "true"),
                                content.get("type", "string") if content is not None else "string",
                                content.get("default") if content is not None else None,
                                (p.findtext("shortdesc") or "").strip()))
    ae = root.find("actions")
    if ae is None:
        raise ValueError("meta-data: no <actions> element")
    actions = {a.get("name", ""): dict(a.attrib) for a in ae.findall("action")}
    missing = [a for a in ("start", "stop", "monitor", "meta-data") if a not in actions]
    if missing:
        raise ValueError(f"meta-data: required actions missing: {', '.join(missing)}")
    version = root.get("version") or (root.findtext("version") or "").strip()
    return AgentMeta(name, version, tuple(params), actions)


# --------------------------------------------------------------------------- the resource


class OcfResource(Resource):
    """An OCF agent as a Resource. Idempotence is the agent's job (OCF requires it); we add the
    process-group timeout, logging with the agent's exit reason, and the fencing token in env."""

    def __init__(self, name: str, agent: str, params: Mapping[str, Any] | None = None, timeout_s: float = 20.0,
                 ocf_root: str | Path = OCF_ROOT, instance: str | None = None, node: str | None = None) -> None:
        self.name = name
        self.ocf_root = Path(ocf_root)
        self.ref = resolve_agent(agent, self.ocf_root)
        self.params = dict(params or {})
        self.timeout_s = float(timeout_s)
        self.instance = instance or name
        self.node = node
        self.token: int | None = None
        self._started = False  # a monitor before our first start is a probe (interval 0)
        self.last: Result | None = None

    def set_fencing_token(self, token: int) -> None:
        self.token = token

    def problem(self) -> str | None:
        """Why the agent cannot run at all (missing / not executable), else None."""
        if not self.ref.path.is_file():
            return f"{self.ref.path} not found"
        if not os.access(self.ref.path, os.X_OK):
            return f"{self.ref.path} is not executable"
        return None

    def env(self, action: str) -> dict[str, str]:
        interval = MONITOR_INTERVAL_MS if action == "monitor" and self._started else 0
        return ocf_env(self.ref, self.instance, self.params, ocf_root=self.ocf_root, timeout_s=self.timeout_s,
                       interval_ms=interval, node=self.node, token=self.token)

    def run(self, action: str) -> Result:
        if action not in ACTIONS:
            raise ValueError(f"unknown OCF action {action!r}")
        res = run_agent(self.ref.path, action, self.env(action), self.timeout_s)
        self.last = res
        ok = res.rc == OCF.SUCCESS or (action == "monitor" and res.rc == OCF.NOT_RUNNING)
        (log.debug if ok else log.warning)("ocf %s (%s): %s -> %s in %.2fs%s", self.name, self.ref.standard_name,
                                           action, res.rc.name, res.seconds, "" if ok else f": {res.reason()}")
        return res

    def start(self) -> OCF:
        rc = self.run("start").rc
        self._started = self._started or rc == OCF.SUCCESS
        return rc

    def stop(self) -> OCF:
        rc = self.run("stop").rc
        if rc == OCF.SUCCESS:
            self._started = False
        return rc

    def monitor(self) -> OCF:
        return self.run("monitor").rc

    def promote(self) -> OCF:
        return self.run("promote").rc

    def demote(self) -> OCF:
        return self.run("demote").rc

    def validate_all(self) -> OCF:
        return self.run("validate-all").rc

    def meta_data(self) -> AgentMeta:
        res = self.run("meta-data")
        if res.rc != OCF.SUCCESS:
            raise ValueError(f"{self.ref.standard_name} meta-data exited {res.raw_rc}: {res.reason()}")
        return parse_meta_data(res.stdout)


def check_params(meta: AgentMeta, params: Mapping[str, Any]) -> list[str]:
    """Problems of `params` against the agent's meta-data: unknown names, missing required ones."""
    known = {p.name for p in meta.parameters}
    out = [f"{k}: not a parameter of {meta.name} (known: {', '.join(sorted(known)) or 'none'})"
           for k in params if k not in known]
    out += [f"{p.name}: required by {meta.name}" for p in meta.parameters if p.required and p.name not in params]
    return out


def build(res: Any, params: dict[str, Any], ctx: Any) -> OcfResource:
    """Factory builder: the agent must exist and the params must match its meta-data, so a typo
    fails `hacluster agent` at start-up with the field named, not at failover time."""
    where = f"{ctx.spec.source}: roles.{ctx.role.name}.resources[{res.name}]"
    agent = params.get("agent")
    if not isinstance(agent, str) or not agent:
        raise UserError(f"{where}.agent: required (ocf:PROVIDER:TYPE or a path)")
    rparams = params.get("params", {}) or {}
    if not isinstance(rparams, dict):
        raise UserError(f"{where}.params: must be a mapping of OCF parameter names to values")
    timeout_s = seconds(params, where, 20.0)
    try:
        r = OcfResource(res.name, agent, rparams, timeout_s, params.get("ocf_root", OCF_ROOT),
                        params.get("instance"), ctx.node.name)
    except ValueError as err:
        raise UserError(f"{where}.agent: {err}") from None
    problem = r.problem()
    if problem:
        raise UserError(f"{where}.agent: {problem}")
    try:
        meta = r.meta_data()
    except ValueError as err:
        log.warning("%s: cannot check params: %s", where, err)
        return r
    bad = check_params(meta, rparams)
    if bad:
        raise UserError(f"{where}.params.{bad[0]}")
    return r
