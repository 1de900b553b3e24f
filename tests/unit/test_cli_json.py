"""Every reporting command takes --json (issue 8): walk the whole `hacluster` command tree.

A command either has a --json flag, or is in NOT_REPORTING with the reason, or is in
AWAITING_JSON (owned elsewhere, still to add it). Both lists must stay true: an entry that no
longer exists, or that gained --json, fails the test, so the lists only shrink.
"""

from __future__ import annotations

import importlib.util

import click

from hacluster.cli import LazyGroup, MissingLabCommand, cli

#: the product's tests also run without the lab toolkit (`make product-check`): its commands are
#: then stand-ins that say what to install, and the lab's entries below are not in the tree
LAB = importlib.util.find_spec("hacluster_lab") is not None
LAB_ROOTS = ("lab", "demo", "drill", "chaos", "bench", "mx validate")

#: commands that print no report (daemons, pass-through runners, fixed file formats) or whose
#: only output already is JSON
NOT_REPORTING: dict[str, str] = {
    "agent": "the node agent daemon: runs until stopped, logs",
    "web": "serves the status page until stopped",
    "vip guard": "the VIP guard daemon",
    "lab exec": "runs CMD in a namespace: its output and exit code are CMD's",
    "resource run": "OCF action: the exit status is the result, as for any OCF agent",
    "resource meta-data": "prints OCF meta-data XML, the format cluster tools read",
    "mx zone": "prints a zone-file fragment to paste into the zone, not a report",
    "config show": "its output is JSON already",
    "lab faults": "its output is JSON lines already",
    "lab mail-path": "applies Postfix settings over SSH, one progress line per machine; --dry-run prints the script",
}

#: reporting commands without --json yet, in files other helpers own: remove the entry when it lands
AWAITING_JSON: dict[str, str] = {
    "vip cleanup": "resources/vip_cli.py (H1): prints one line per VIP removed",
    "drill check": "drill/ (H4): reports each playbook's problems",
}


def leaves(group: click.Group, prefix: str = "") -> dict[str, click.Command | None]:
    """Every leaf command, `sub sub` -> command (None: registered but its module is not built yet)."""
    out: dict[str, click.Command | None] = {}
    ctx = click.Context(group, info_name="hacluster")
    for name in group.list_commands(ctx):
        path = f"{prefix} {name}".strip()
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, MissingLabCommand):
            assert not LAB, f"{path}: a stand-in although the lab toolkit is installed"
            continue
        if isinstance(cmd, click.Group):
            out.update(leaves(cmd, path))
        else:
            out[path] = cmd
    return out


def has_json(cmd: click.Command) -> bool:
    return any("--json" in getattr(p, "opts", ()) and getattr(p, "is_flag", False) for p in cmd.params)


def test_the_walk_sees_the_whole_tree() -> None:
    assert isinstance(cli, LazyGroup)
    found = leaves(cli)
    for must in ("status", "history", "maintenance", "switchover", "failover", "raid status",
                 "mx lint", "config check", "deploy", *(("bench election", "lab up", "mx validate") if LAB else ())):
        assert found.get(must) is not None, must
    if not LAB:
        assert not [p for p in found if p.split()[0] in LAB_ROOTS or p.startswith("mx validate")]


def test_every_reporting_command_has_json() -> None:
    found = {path: cmd for path, cmd in leaves(cli).items() if cmd is not None}  # not-yet-built modules: checked once they land
    lacking = sorted(path for path, cmd in found.items()
                     if not has_json(cmd) and path not in NOT_REPORTING and path not in AWAITING_JSON)
    assert not lacking, f"reporting commands without --json (add it, or list the command with a reason): {lacking}"


def test_the_lists_stay_true() -> None:
    found = leaves(cli)
    gone = sorted(p for p in (*NOT_REPORTING, *AWAITING_JSON) if found.get(p) is None
                  and (LAB or not p.startswith(LAB_ROOTS)))
    assert not gone, f"listed but no such command: {gone}"
    landed = sorted(p for p in AWAITING_JSON if p in found and has_json(found[p]))  # type: ignore[arg-type]
    assert not landed, f"these have --json now: drop them from AWAITING_JSON: {landed}"
    both = sorted(p for p in NOT_REPORTING if p in found and has_json(found[p]))  # type: ignore[arg-type]
    assert not both, f"listed as not reporting but have --json: {both}"
