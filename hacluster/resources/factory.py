"""Turn a role's resource specs into Resource objects for one node.

Each resource type registers a builder here; params may use {node}, {role}, {cluster} and
{state_dir} placeholders so one cluster-wide spec serves every node (the lab uses this for
per-node Postfix config directories).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..spec import ClusterSpec, NodeSpec, ResourceSpec, RoleSpec
from .base import Resource


@dataclass(frozen=True)
class ResourceContext:
    spec: ClusterSpec
    role: RoleSpec
    node: NodeSpec
    state_dir: Path  # the agent's private runtime directory (guard sockets, markers)


Builder = Callable[[ResourceSpec, dict[str, Any], ResourceContext], Resource]

#: type -> "module:function"; builders are imported lazily so a relay never imports pyroute2
BUILDERS: dict[str, str] = {
    "command": "hacluster.resources.factory:_build_command",
    "vip": "hacluster.resources.vip:build",
    "mta": "hacluster.resources.mta:build",
    "spool": "hacluster.resources.spool:build",
    "ocf": "hacluster.resources.ocf:build",
    "systemd": "hacluster.resources.systemd_unit:build",
}


def _expand(value: Any, subst: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in subst.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _expand(v, subst) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, subst) for v in value]
    return value


def build_resources(ctx: ResourceContext) -> list[Resource]:
    """All resources of ctx.role for ctx.node, in start order."""
    subst = {"node": ctx.node.name, "role": ctx.role.name, "cluster": ctx.spec.name, "state_dir": str(ctx.state_dir)}
    out: list[Resource] = []
    for res in ctx.role.resources:
        target = BUILDERS.get(res.type)
        if target is None:
            raise UserError(f"{ctx.spec.source}: roles.{ctx.role.name}: resource type {res.type!r} is not supported")
        module, func = target.split(":")
        try:
            builder: Builder = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as err:
            raise UserError(f"resource type {res.type!r} is not available in this build: {err}") from None
        out.append(builder(res, _expand(dict(res.params), subst), ctx))
    return out


def _build_command(res: ResourceSpec, params: dict[str, Any], ctx: ResourceContext) -> Resource:
    from .command import CommandResource

    return CommandResource(res.name, params["start"], params["stop"], params.get("monitor"),
                           params.get("promote"), params.get("demote"), float(params.get("timeout_s", 20.0)),
                           params.get("env"))
