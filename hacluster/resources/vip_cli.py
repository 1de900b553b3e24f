"""`hacluster vip ...`: the VIP's out-of-agent helpers.

`cleanup` is what systemd's ExecStopPost runs after the agent exited for any reason (crash,
SIGKILL, watchdog): it removes every VIP of the node's roles from this host, so a dead agent
never leaves an address that the kernel keeps answering ARP for. `guard` is the guard process
itself (normally started by the VIP resource). Neither imports scapy, pyroute2 or kazoo.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config_path import config_option
from ..errors import UserError
from .vip_guard import Target, main as guard_main, remove_addresses


@click.group("vip")
def vip() -> None:
    """VIP helpers: cleanup after the agent, the guard process."""


@vip.command("cleanup")
@config_option()
@click.option("--node", required=True, help="This node's name in the spec.")
def cleanup_cmd(config: Path, node: str) -> None:
    """Remove every VIP of NODE's roles from this host's interfaces (idempotent).

    Exit 0 when none is left, 1 when a removal failed, 2 on a bad spec or node name."""
    from ..spec import load_spec

    spec = load_spec(config)
    spec.node(node)
    targets = [Target(v.ip, v.prefixlen, v.interface) for role in spec.roles_for(node) for v in role.vips]
    if not targets:
        click.echo(f"{node}: no VIP in its roles")
        return
    try:
        results = remove_addresses(targets)
    except OSError as err:
        raise UserError(f"vip cleanup: {err.strerror or err}", 1) from None
    for t, result in results:
        click.echo(f"{t.ip}/{t.prefixlen} on {t.ifname}: {result}")


@vip.command("guard", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def guard_cmd(args: tuple[str, ...]) -> None:
    """The guard process (started by the VIP resource; see docs/vip.md)."""
    raise click.exceptions.Exit(guard_main(list(args)))
