"""`hacluster vip ...`: the VIP's out-of-agent helpers.

`cleanup` is what systemd's ExecStopPost runs after the agent exited for any reason (crash,
SIGKILL, watchdog): it removes the VIPs the agent *recorded* adding (vip_record.py), so a dead
agent never leaves an address that the kernel keeps answering ARP for. It does not read the
spec. `guard` is the guard process itself (normally started by the VIP resource). Neither imports
scapy, pyroute2 or kazoo.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import UserError
from .vip_guard import main as guard_main, remove_addresses
from .vip_record import RecordError, default_state_dir, read_record, record_files


@click.group("vip")
def vip() -> None:
    """VIP helpers: cleanup after the agent, the guard process."""


@vip.command("cleanup")
@click.option("--node", required=True, help="This node's name (locates the default state dir).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, envvar="HACLUSTER_STATE_DIR",
              help="The agent's state dir (default $HACLUSTER_STATE_DIR, else /run/hacluster/NODE).")
# units written by older versions pass the spec: accepted, never read (an edited spec must not matter)
@click.option("-c", "--config", "_config", default=None, hidden=True)
def cleanup_cmd(node: str, state_dir: str | None, _config: str | None) -> None:
    """Remove the VIPs the agent recorded adding on this host, and their records (idempotent).

    Exit 0 when none is left, 1 when a removal failed (its record is kept), 2 on a bad node
    name or an unreadable record (after removing every readable one)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", node):
        raise UserError(f"vip cleanup: --node {node!r}: not a node name ([a-z][a-z0-9-]*)")
    where = Path(state_dir or default_state_dir(node))
    files = record_files(where)
    if not files:
        click.echo(f"{node}: no VIP recorded in {where / 'vips'}")
        return
    bad: list[str] = []  # unreadable records
    failed: list[str] = []  # removals that failed: record kept
    for path in files:
        try:
            targets = read_record(path)
        except RecordError as err:
            bad.append(str(err))
            continue
        try:
            results = remove_addresses(targets)
        except OSError as err:  # the other records are still worth trying
            failed.append(f"{path}: {err.strerror or err}")
            continue
        for t, result in results:
            click.echo(f"{t.ip}/{t.prefixlen} on {t.ifname}: {result}")
        path.unlink(missing_ok=True)
    if failed or bad:
        raise UserError("vip cleanup: " + "; ".join(failed + bad), 1 if failed else 2)


@vip.command("guard", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def guard_cmd(args: tuple[str, ...]) -> None:
    """The guard process (started by the VIP resource; see docs/vip.md)."""
    raise click.exceptions.Exit(guard_main(list(args)))
