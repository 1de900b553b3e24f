"""`hacluster config check|show`: validate a spec before it is deployed."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from .config_path import config_option
from .errors import UserError
from .spec import ClusterSpec, SpecError, load_spec


@click.group()
def config() -> None:
    """Validate and show cluster specs."""


@config.command("check")
@config_option(alias="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print {ok, problems} as JSON.")
@click.option("--against-cluster", is_flag=True,
              help="Also compare the spec's timing and roles digests with what the running agents publish "
                   "(its zookeeper section says where): exit 1 on any difference.")
def check_cmd(config: Path, as_json: bool, against_cluster: bool) -> None:
    """Exit 0 when the spec (FILE, -c FILE, $HACLUSTER_CONFIG, else /etc/hacluster/cluster.yml) is
    valid; else print every problem, exit 2. With --against-cluster, exit 1 unless every running
    agent publishes the spec's timing and roles."""
    try:
        spec = load_spec(config)
    except SpecError as err:
        if as_json:
            click.echo(json.dumps({"ok": False, "problems": err.problems}))
            raise click.exceptions.Exit(2) from None
        raise
    if against_cluster:
        _against_cluster(config, spec, as_json)
        return
    if as_json:
        out = {"ok": True, "problems": [], "cluster": spec.name}
        if spec.warnings:  # a risk the file takes knowingly (fencing: self-only)
            out["warnings"] = list(spec.warnings)
        click.echo(json.dumps(out))
    else:
        for line in spec.warnings:
            click.echo(f"warning: {line}", err=True)
        click.echo(f"{spec.source}: ok: cluster {spec.name}, {len(spec.nodes)} nodes, roles {', '.join(spec.roles) or '-'}, "
                   f"lease {spec.timing.lease_s:g}s (holder valid {spec.timing.holder_validity_s:g}s after send)"
                   + (", failsafe on" if spec.failsafe else "") + _fencing_note(spec))


def _fencing_note(spec: ClusterSpec) -> str:
    """Which roles a candidate takes over from a silent holder only after fencing it."""
    fenced = [r for r in spec.roles if spec.requires_fencing(r)]
    if fenced:
        return f", fencing before takeover: {', '.join(fenced)}"
    return ", fencing: self-only" if spec.fencing == "self-only" and spec.warnings else ""


def _against_cluster(config: Path, spec: ClusterSpec, as_json: bool) -> None:
    """Compare the file's digests with every agent's heartbeat; one line per differing node."""
    from .config_digest import describe, digest_of, mismatches
    from hacluster.operator.client import _open, zk_hint

    _, coord = _open(config)
    try:
        c = coord.snapshot(spec.roles, timeout=5.0)
    finally:
        coord.stop()
    if not c.connected:
        raise UserError(f"ZooKeeper did not answer in time; nothing compared: {zk_hint(spec)}", 1)
    own = digest_of(spec)
    published = {n: m.config for n, m in sorted(c.members.items())}
    bad = mismatches(published, own)
    problems = [describe(n, parts, published[n], own, "this file") for n, parts in bad.items()]
    if not published:
        problems.append(f"no agent of cluster {spec.name} is running (no heartbeat in ZooKeeper): nothing to compare with")
    if as_json:
        click.echo(json.dumps({"ok": not problems, "problems": problems, "cluster": spec.name, "file": own.to_json(),
                               "agents": {n: d.to_json() if d else None for n, d in published.items()},
                               "differs": bad}))
    elif problems:
        click.echo(f"{spec.source}: differs from the running cluster {spec.name}:", err=True)
        for line in problems:
            click.echo(f"  {line}", err=True)
    else:
        click.echo(f"{spec.source}: same timing and roles as the running cluster {spec.name} "
                   f"({len(published)} agents: {', '.join(published)}; {own.text()})")
    if problems:
        raise click.exceptions.Exit(1)


@config.command("show")
@config_option(alias="FILE")
def show_cmd(config: Path) -> None:
    """Print the fully resolved spec (profile values filled in) as JSON."""
    spec = load_spec(config)
    click.echo(json.dumps(asdict(spec), default=str, indent=2))


__all__ = ["config", "UserError"]
