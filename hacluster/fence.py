"""Host fencing through the standard fence-agent interface, so the agents of Debian's
`fence-agents` package (fence_ipmilan, fence_virsh, fence_redfish, fence_scsi, ...) and our lab's
`fence_hacluster_lab` work unchanged.

The interface (ClusterLabs fence-agents, as Pacemaker drives it): the agent reads `key=value`
lines on stdin -- `action=off|on|status|monitor|metadata|...` plus the device's parameters
(`ip`, `username`, `password`, `plug`, ...) -- and answers with its exit status: 0 success;
for `status` 0 means ON, 2 means OFF, anything else an error. `metadata` prints the agent's XML
description. Nothing is passed on the command line, so passwords never show in `ps`.

A fence is `off`, then `status` until it says OFF (bounded by the device's timeout): only a
confirmed OFF counts (ha.py rules 15-19). The secrets (passwords, keys) come from a separate
file readable by root alone (`fence.secrets_file`: YAML node -> {param: value}, mode 0600), merged
over the spec's parameters, so the spec itself can be shared and checked in.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Mapping, NamedTuple

from .errors import UserError
from .fence_spec import PARAM_NAME, FenceDevice

#: where fence agents live when PATH (a systemd unit's) does not name the directory
AGENT_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
STATUS_ON, STATUS_OFF = 0, 2
STATUS_POLL_S = 0.5


class AgentRun(NamedTuple):
    action: str
    rc: int | None  # None: it did not finish within the timeout (killed) or could not run
    seconds: float
    output: str  # the last lines of stdout and stderr (for the log, the alarm, the history)


class FenceOutcome(NamedTuple):
    node: str
    ok: bool  # off, and status confirmed it
    seconds: float
    detail: str
    runs: tuple[AgentRun, ...]


def agent_path(agent: str) -> str | None:
    """The agent's executable: an absolute path as given, else found on PATH or in AGENT_DIRS."""
    if agent.startswith("/"):
        return agent if os.access(agent, os.X_OK) else None
    found = shutil.which(agent)
    if found:
        return found
    for d in AGENT_DIRS:
        p = os.path.join(d, agent)
        if os.access(p, os.X_OK):
            return p
    return None


def stdin_text(params: Mapping[str, str], action: str) -> str:
    """The agent's standard input: `action=...` then one `key=value` line per parameter."""
    lines = [f"action={action}"]
    lines += [f"{k}={v}" for k, v in params.items() if k != "action"]
    return "\n".join(lines) + "\n"


def run_agent(agent: str, params: Mapping[str, str], action: str, timeout_s: float) -> AgentRun:
    """One action of one agent; never raises for an agent that fails, hangs or is missing."""
    t0 = time.monotonic()
    path = agent_path(agent)
    if path is None:
        return AgentRun(action, None, 0.0, f"fence agent {agent} not found (PATH, {', '.join(AGENT_DIRS)})")
    try:
        p = subprocess.run([path], input=stdin_text(params, action), capture_output=True, text=True,
                           timeout=timeout_s, start_new_session=True)
    except subprocess.TimeoutExpired as err:
        tail = ((err.stdout or "") + (err.stderr or "")) if isinstance(err.stdout, str) else ""
        return AgentRun(action, None, time.monotonic() - t0, f"timed out after {timeout_s:g}s {tail[-200:]}".strip())
    except OSError as err:
        return AgentRun(action, None, time.monotonic() - t0, f"cannot run {path}: {err}")
    out = " | ".join(line.strip() for line in (p.stdout + p.stderr).splitlines() if line.strip())
    return AgentRun(action, p.returncode, time.monotonic() - t0, out[-300:])


def fence_off(dev: FenceDevice, secrets: Mapping[str, str], timeout_s: float) -> FenceOutcome:
    """Power `dev.node` off: `off`, then `status` until OFF, all within `timeout_s`."""
    t0 = time.monotonic()
    params = {**dev.params, **secrets}
    runs = [run_agent(dev.agent, params, "off", timeout_s)]
    if runs[0].rc != 0:
        why = "timed out or could not run" if runs[0].rc is None else f"exit {runs[0].rc}"
        return FenceOutcome(dev.node, False, time.monotonic() - t0, f"{dev.agent} off: {why}: {runs[0].output}", tuple(runs))
    while True:
        left = timeout_s - (time.monotonic() - t0)
        run = run_agent(dev.agent, params, "status", max(0.5, left))
        runs.append(run)
        if run.rc == STATUS_OFF:
            return FenceOutcome(dev.node, True, time.monotonic() - t0, f"{dev.agent}: off, status confirms off", tuple(runs))
        if run.rc not in (STATUS_ON,) or time.monotonic() - t0 + STATUS_POLL_S > timeout_s:
            what = "still on" if run.rc == STATUS_ON else ("timed out" if run.rc is None else f"exit {run.rc}")
            return FenceOutcome(dev.node, False, time.monotonic() - t0,
                                f"{dev.agent} status after off: {what}: {run.output}", tuple(runs))
        time.sleep(STATUS_POLL_S)


def load_secrets(path: str | None) -> dict[str, dict[str, str]]:
    """node -> {param: value} from the secrets file; UserError (naming the file) if it is readable
    by anybody but its owner, not a mapping of mappings, or unreadable. None: no secrets."""
    if path is None:
        return {}
    from .yamlread import ProblemsError, Reader, load_yaml, read_text

    p = Path(path)
    try:
        st = p.stat()
    except OSError as err:
        raise UserError(f"{path}: fence secrets: {err.strerror or err}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"{path}: fence secrets must be readable by their owner alone (chmod 600), "
                        f"mode is {stat.S_IMODE(st.st_mode):04o}")
    try:
        root = load_yaml(read_text(p), path)
    except ProblemsError as err:
        raise UserError(str(err)) from None
    r = Reader(path)
    out: dict[str, dict[str, str]] = {}
    m = r.mapping(root if root is not None else {}, "(top)", None, 1)
    for node, body in (m or {}).items():
        b = r.mapping(body, str(node), None, r.line_of(m, node))
        for k, v in (b or {}).items():
            if not PARAM_NAME.fullmatch(str(k)) or not isinstance(v, (str, int, float)) or isinstance(v, bool) \
                    or "\n" in str(v):
                r.problem(r.line_of(b, k), f"{node}.{k}", "must be a parameter name with a one-line value")
                continue
            out.setdefault(str(node), {})[str(k)] = str(v)
    if r.problems:
        raise UserError("\n".join(r.render()))
    return out
