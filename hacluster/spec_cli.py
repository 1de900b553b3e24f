"""`hacluster config check|show`: validate a spec before it is deployed."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from .config_path import config_option
from .errors import UserError
from .spec import SpecError, load_spec


@click.group()
def config() -> None:
    """Validate and show cluster specs."""


@config.command("check")
@config_option(alias="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print {ok, problems} as JSON.")
def check_cmd(config: Path, as_json: bool) -> None:
    """Exit 0 when the spec (FILE, -c FILE, $HACLUSTER_CONFIG, else /etc/hacluster/cluster.yml) is
    valid; else print every problem, exit 2."""
    try:
        spec = load_spec(config)
    except SpecError as err:
        if as_json:
            click.echo(json.dumps({"ok": False, "problems": err.problems}))
            raise click.exceptions.Exit(2)
        raise
    if as_json:
        click.echo(json.dumps({"ok": True, "problems": [], "cluster": spec.name}))
    else:
        click.echo(f"{spec.source}: ok: cluster {spec.name}, {len(spec.nodes)} nodes, roles {', '.join(spec.roles) or '-'}, "
                   f"lease {spec.timing.lease_s:g}s (holder valid {spec.timing.holder_validity_s:g}s after send)")


@config.command("show")
@config_option(alias="FILE")
def show_cmd(config: Path) -> None:
    """Print the fully resolved spec (profile values filled in) as JSON."""
    spec = load_spec(config)
    click.echo(json.dumps(asdict(spec), default=str, indent=2))


__all__ = ["config", "UserError"]
