"""`hacluster raid status`: the md arrays this host sees, as a table or JSON.

Exit 0 when every array is clean (or there are none), 1 otherwise, 2 when an input cannot be
read or parsed, so the command works unchanged as a cron/Nagios-style check.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import EXIT_FAILED, UserError
from .mdstat import MdArray, MdstatError, merge, parse_mdadm_detail, parse_mdstat

DEFAULT_MDSTAT = "/proc/mdstat"


def read_text(path: str) -> str:
    """File contents, or a UserError naming the file (exit 2)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None


def load_arrays(mdstat: str | None, details: tuple[str, ...]) -> tuple[MdArray, ...]:
    """Arrays from /proc/mdstat (default when nothing is named) and `mdadm --detail` captures;
    an array named in both is taken from mdadm, which knows more (e.g. FAILED)."""
    sources = []
    try:
        if mdstat is not None or not details:
            path = mdstat or DEFAULT_MDSTAT
            sources.append(parse_mdstat(read_text(path), source=path))
        for path in details:
            sources.append(parse_mdadm_detail(read_text(path), source=path))
    except MdstatError as err:
        raise UserError(str(err)) from None
    return merge(*sources)


def format_table(arrays: tuple[MdArray, ...]) -> str:
    if not arrays:
        return "no md arrays"
    header = ("NAME", "LEVEL", "STATE", "DISKS", "FAILED", "SPARE", "PROGRESS")
    rows = [header] + [
        (
            a.name,
            a.level or "-",
            a.state,
            f"{a.disks_active}/{a.disks_total}",
            ",".join(a.failed_devices) or "-",
            ",".join(a.spare_devices) or "-",
            "-" if a.progress_pct is None else f"{a.progress_pct:.1f}%",
        )
        for a in arrays
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


@click.group()
def raid() -> None:
    """Linux md RAID status (parsed from /proc/mdstat and mdadm --detail)."""


@raid.command("status")
@click.option("--mdstat", "mdstat", metavar="PATH", help=f"mdstat file [default: {DEFAULT_MDSTAT} unless --mdadm-detail is given]")
@click.option("--mdadm-detail", "details", metavar="PATH", multiple=True, help="captured `mdadm --detail` output (repeatable)")
@click.option("--json", "as_json", is_flag=True, help='print {"arrays": [...]}')
def status(mdstat: str | None, details: tuple[str, ...], as_json: bool) -> None:
    """List arrays; exit 0 if all are clean, 1 if any is not, 2 on unreadable or malformed input."""
    arrays = load_arrays(mdstat, details)
    if as_json:
        click.echo(json.dumps({"arrays": [a.to_json() for a in arrays]}, indent=2))
    else:
        click.echo(format_table(arrays))
    unclean = [a for a in arrays if not a.clean]
    if unclean:
        # UserError, not click's Exit: hacluster.cli.main drops the code of a returned Exit
        summary = ", ".join(f"{a.name} {a.state}" for a in unclean)
        raise UserError(f"{len(unclean)} of {len(arrays)} arrays not clean: {summary}", exit_code=EXIT_FAILED)
