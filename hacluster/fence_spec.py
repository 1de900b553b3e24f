"""The spec's `fencing:` mode and `fence:` section: which agent powers off which node.

    fencing: required          # required (default) | self-only
    fence:
      timeout_s: 30            # each agent action (off, status) gives up after this
      secrets_file: /etc/hacluster/fence.secrets   # YAML node -> {param: value}, mode 0600
      nodes:
        store1: {agent: fence_ipmilan, params: {ip: 192.0.2.201, username: admin, lanplus: 1}}

A role whose resources `require_fencing` (default for a shared spool on a block device: the
guard's lazy unmount cannot stop a *frozen host* from writing it when it wakes) is taken over from
a silent holder only after the candidate fenced it (ha.py rules 15-19). `fencing: self-only` drops
that requirement knowingly: the role then relies on the holder's own guard (which a frozen host
cannot run), and `config check` says so in a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ruamel.yaml.comments import CommentedMap

MODES = ("required", "self-only")
DEFAULT_TIMEOUT_S = 30.0
#: fence agent parameters are key=value lines on stdin: names as the agents spell them
PARAM_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class FenceDevice:
    node: str  # the node this device powers off
    agent: str  # fence_ipmilan, fence_virsh, ... or an absolute path
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FenceSpec:
    devices: Mapping[str, FenceDevice]  # node -> its device
    timeout_s: float = DEFAULT_TIMEOUT_S
    secrets_file: str | None = None


def _agent_problem(v: str) -> str | None:
    if v.startswith("/") or re.fullmatch(r"fence_[A-Za-z0-9_]+", v):
        return None
    return "must be a fence agent name (fence_*) or an absolute path"


def _param_value(v: Any) -> str | None:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (str, int, float)):
        text = str(v)
        return text if "\n" not in text else None
    return None


def read_fence(r: Any, root: CommentedMap, node_names: set[str]) -> tuple[str, FenceSpec | None]:
    """(fencing mode, the `fence:` section or None); problems go to the reader `r`."""
    mode = r.get(root, "fencing", "", str, default="required",
                 check=lambda v: None if v in MODES else f"must be one of {', '.join(MODES)}")
    if "fence" not in root:
        return mode or "required", None
    m = r.mapping(root["fence"], "fence", {"timeout_s", "secrets_file", "nodes"}, r.line_of(root, "fence"))
    if m is None:
        return mode or "required", None
    timeout = r.get(m, "timeout_s", "fence", float, default=DEFAULT_TIMEOUT_S,
                    check=lambda v: None if 0 < v <= 600 else "must be in (0, 600] seconds")
    secrets = r.get(m, "secrets_file", "fence", str,
                    check=lambda v: None if v.startswith("/") else "must be an absolute path")
    devices: dict[str, FenceDevice] = {}
    nm = r.mapping(m.get("nodes"), "fence.nodes", None, r.line_of(m, "nodes")) if "nodes" in m else None
    if "nodes" not in m:
        r.problem(r.line_of(root, "fence"), "fence.nodes", "is required: node -> {agent, params}")
    for node, body in (nm or {}).items():
        path = f"fence.nodes.{node}"
        line = r.line_of(nm, node)
        if node not in node_names:
            r.problem(line, path, f"no node named {node!r} (nodes: {', '.join(sorted(node_names))})")
        b = r.mapping(body, path, {"agent", "params"}, line)
        if b is None:
            continue
        agent = r.get(b, "agent", path, str, required=True, check=_agent_problem)
        params: dict[str, str] = {}
        pm = r.mapping(b.get("params", CommentedMap()), f"{path}.params", None, r.line_of(b, "params"))
        for key, val in (pm or {}).items():
            text = _param_value(val)
            if not PARAM_NAME.fullmatch(str(key)):
                r.problem(r.line_of(pm, key), f"{path}.params.{key}", "parameter names are lowercase words (a-z, 0-9, _)")
            elif str(key) == "action":
                r.problem(r.line_of(pm, key), f"{path}.params.action", "is chosen by the agent (off, status), not configured")
            elif text is None:
                r.problem(r.line_of(pm, key), f"{path}.params.{key}", f"must be a one-line string, number or boolean, got {val!r}")
            else:
                params[str(key)] = text
        if agent:
            devices[str(node)] = FenceDevice(str(node), agent, params)
    return mode or "required", FenceSpec(devices, timeout or DEFAULT_TIMEOUT_S, secrets)


def resource_requires_fencing(rtype: str, params: Mapping[str, Any]) -> bool:
    """A resource's `require_fencing`, else its default: true for a shared spool on a block
    device (a device path under /dev/), false for everything else (a bind-mounted directory is
    one kernel's filesystem: a frozen host's writes land in the same page cache, never corrupt)."""
    explicit = params.get("require_fencing")
    if isinstance(explicit, bool):
        return explicit
    device = params.get("device")
    return rtype == "spool" and params.get("mode") == "shared" and isinstance(device, str) and device.startswith("/dev/")
