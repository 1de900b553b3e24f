"""`hacluster config check|show`: validate a spec before it is deployed."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from .errors import UserError
from .spec import SpecError, load_spec


@click.group()
def config() -> None:
    """Validate and show cluster specs."""


@config.command("check")
@click.argument("file", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print {ok, problems} as JSON.")
def check_cmd(file: str | None, as_json: bool) -> None:
    """Exit 0 when FILE (default: the embedded lab spec) is valid; else print every problem, exit 2."""
    try:
        spec = load_spec(file)
    except SpecError as err:
        if as_json:
            click.echo(json.dumps({"ok": False, "problems": err.problems}))
            raise click.exceptions.Exit(2) from None
        raise
    if as_json:
        click.echo(json.dumps({"ok": True, "problems": [], "cluster": spec.name}))
    else:
        click.echo(f"{spec.source}: ok: cluster {spec.name}, {len(spec.nodes)} nodes, roles {', '.join(spec.roles) or '-'}, "
                   f"lease {spec.timing.lease_s:g}s (holder valid {spec.timing.holder_validity_s:g}s after send)")


@config.command("show")
@click.argument("file", required=False)
def show_cmd(file: str | None) -> None:
    """Print the fully resolved spec (profile values filled in) as JSON."""
    spec = load_spec(file)
    click.echo(json.dumps(asdict(spec), default=str, indent=2))


__all__ = ["config", "UserError"]
