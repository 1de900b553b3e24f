"""`hacluster node standby|unstandby NODE`, `hacluster role ban ROLE NODE`, `hacluster role clear
ROLE`: the operator's placement constraints (Pacemaker's `pcs node standby` and `pcs resource
ban/clear`).

They are znodes under `/<cluster>/constraints` (coord.paths); every agent reads them in its
snapshot and ha.py rule 12 keeps a barred node from holding the role: a holder hands the role
to the best node not barred, gracefully. A lifetime makes one expire by itself (the agents
compare it with their wall clock), so a forgotten ban cannot keep a node out for ever.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from .completion import complete_nodes, complete_roles
from .coord.model import Constraint
from .errors import UserError
from hacluster.operator.client import _config, _open, wait_holder
from .spec import ClusterSpec
from .units import parse_duration


def _by() -> str:
    return f"cli@{os.uname().nodename}"


def _until(lifetime: str | None) -> float | None:
    if lifetime is None:
        return None
    try:
        secs = parse_duration(lifetime)
    except ValueError as err:
        raise UserError(f"--lifetime: {err}") from None
    if secs <= 0:
        raise UserError("--lifetime: must be more than 0 (to lift a constraint: `node unstandby` or `role clear`)")
    return time.time() + secs


def _moved(spec: ClusterSpec, coord: Any, node: str, wait: float) -> dict[str, str | None]:
    """Wait (bounded) until `node` holds none of the roles it held; role -> new holder."""
    c = coord.snapshot(spec.roles, timeout=5.0)
    held = [r for r, lease in c.leases.items() if lease.holder == node]
    return {r: wait_holder(spec, coord, r, None, node, wait) if wait > 0 else None for r in held}


def _report(con: Constraint, moved: dict[str, str | None], as_json: bool, wait: float) -> None:
    if as_json:
        click.echo(json.dumps({"constraint": con.name, "node": con.node, "role": con.role, "by": con.by,
                               "until": con.until, "moved": moved}))
        return
    click.echo(f"set: {con.describe()}")
    for role, new in moved.items():
        click.echo(f"  {role}: {con.node} -> {new}" if new else
                   f"  {role}: still on {con.node} after {wait:g}s (no other eligible node?); see `hacluster status`")


@click.group("node")
def node() -> None:
    """Per-node placement: standby (hold no role) and back."""


@click.group("role")
def role() -> None:
    """Per-role placement: keep a node from a role (ban) and lift it (clear)."""


@node.command("standby")
@_config
@click.argument("node", shell_complete=complete_nodes)
@click.option("--lifetime", default=None, help="Lift it by itself after this long (300, 30m, 2h, 1d).")
@click.option("--wait", type=float, default=10.0, show_default=True, help="Seconds to wait for its roles to move.")
@click.option("--json", "as_json", is_flag=True)
def standby_cmd(config: Path, node: str, lifetime: str | None, wait: float, as_json: bool) -> None:
    """Keep NODE from holding any role (maintenance of one host); its roles move gracefully."""
    until = _until(lifetime)
    spec, coord = _open(config, nodes=[node])
    try:
        con = coord.put_constraint(node, None, _by(), until)
        coord.record("standby", None, node_name=node, until=until, by=con.by)
        moved = _moved(spec, coord, node, wait)
    finally:
        coord.stop()
    _report(con, moved, as_json, wait)


@node.command("unstandby")
@_config
@click.argument("node", shell_complete=complete_nodes)
@click.option("--json", "as_json", is_flag=True)
def unstandby_cmd(config: Path, node: str, as_json: bool) -> None:
    """Lift NODE's standby: it may hold roles again (nothing moves back by itself)."""
    spec, coord = _open(config, nodes=[node])
    try:
        removed = coord.clear_constraints(node=node, standby=True)
        if removed:
            coord.record("unstandby", None, node_name=node, by=_by())
    finally:
        coord.stop()
    if as_json:
        click.echo(json.dumps({"node": node, "removed": removed}))
    else:
        click.echo(f"{node}: out of standby" if removed else f"{node}: was not in standby")


@role.command("ban")
@_config
@click.argument("role", shell_complete=complete_roles)
@click.argument("node", shell_complete=complete_nodes)
@click.option("--lifetime", default=None, help="Lift it by itself after this long (300, 30m, 2h, 1d).")
@click.option("--wait", type=float, default=10.0, show_default=True, help="Seconds to wait for the role to move.")
@click.option("--json", "as_json", is_flag=True)
def ban_cmd(config: Path, role: str, node: str, lifetime: str | None, wait: float, as_json: bool) -> None:
    """Keep NODE from holding ROLE; if it holds it, the role moves gracefully."""
    until = _until(lifetime)
    spec, coord = _open(config, roles=[role], nodes=[node])
    try:
        if spec.nodes[node].tier != spec.roles[role].tier:
            raise UserError(f"{node} is in tier {spec.nodes[node].tier}; role {role} runs on tier "
                            f"{spec.roles[role].tier}: it never holds it")
        con = coord.put_constraint(node, role, _by(), until)
        coord.record("ban", role, node_name=node, until=until, by=con.by)
        c = coord.snapshot([role], timeout=5.0)
        lease = c.leases.get(role)
        moved = {}
        if lease is not None and lease.holder == node:
            moved[role] = wait_holder(spec, coord, role, None, node, wait) if wait > 0 else None
    finally:
        coord.stop()
    _report(con, moved, as_json, wait)


@role.command("clear")
@_config
@click.argument("role", shell_complete=complete_roles)
@click.option("--node", default=None, shell_complete=complete_nodes, help="Only this node's ban (default: every ban of ROLE).")
@click.option("--json", "as_json", is_flag=True)
def clear_cmd(config: Path, role: str, node: str | None, as_json: bool) -> None:
    """Remove ROLE's bans (Pacemaker's `pcs resource clear`)."""
    spec, coord = _open(config, roles=[role], nodes=[node])
    try:
        removed = coord.clear_constraints(node=node, role=role)
        if removed:
            coord.record("clear", role, node_name=node, by=_by())
    finally:
        coord.stop()
    if as_json:
        click.echo(json.dumps({"role": role, "node": node, "removed": removed}))
    else:
        click.echo(f"{role}: removed {', '.join(removed)}" if removed else f"{role}: no ban to remove")


__all__ = ["node", "role"]
