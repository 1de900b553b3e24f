"""Confirmation before an operator command moves a role (patronictl asks the same way).

A switchover or failover interrupts mail service for a moment: on a terminal the operator is
asked, naming the move; with no terminal (a script, cron, CI) nobody can answer, so the command
needs `--yes`, and without it exits 2 at once with one line saying so, before any connect.
"""

from __future__ import annotations

import sys
from typing import TextIO

import click

from .errors import UserError

NO_TTY = "{what}: not confirmed and no terminal to ask on; add --yes (-y) to confirm (nothing changed)"


def needs_asking(yes: bool, what: str, stdin: TextIO | None = None) -> bool:
    """False with --yes; True when a terminal can answer; else the usage error (exit 2)."""
    if yes:
        return False
    stream = sys.stdin if stdin is None else stdin
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdin
        tty = False
    if not tty:
        raise UserError(NO_TTY.format(what=what))
    return True


def ask(question: str) -> None:
    """Ask on the terminal; anything but yes leaves everything as it was (exit 1)."""
    if not click.confirm(question, default=False):
        raise UserError("not confirmed; nothing changed", 1)


yes_option = click.option("-y", "--yes", is_flag=True,
                          help="Do it without asking (required when there is no terminal to ask on).")

__all__ = ["ask", "needs_asking", "yes_option"]
