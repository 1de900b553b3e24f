"""Log format: our own timestamps on a terminal or in a file, syslog priorities under systemd.

journald stamps every line itself and takes a line's priority from a `<N>` prefix
(sd-daemon(3)); without it every line of the agent is "info", so `journalctl -p warning` would
miss demotions and alarms. Under systemd we therefore drop the timestamp and prefix each line,
continuation lines of a traceback included (journald splits the stream at newlines).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Mapping, TextIO

def syslog_priority(levelno: int) -> int:
    """Python level -> syslog priority (logging has no NOTICE: nothing maps to 5)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """`<priority>` before every line of a record; no timestamp (journald adds its own)."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def under_journal(environ: Mapping[str, str] = os.environ, stream: TextIO | None = None) -> bool:
    """True when stderr goes to the journal: $JOURNAL_STREAM names stderr's device:inode (set by
    systemd when it connected the stream; a child that redirected stderr elsewhere keeps the
    variable but not the inode), or, without it, $INVOCATION_ID says a systemd unit runs us."""
    journal = environ.get("JOURNAL_STREAM", "")
    if journal:
        dev, _, ino = journal.partition(":")
        try:
            st = os.fstat((stream or sys.stderr).fileno())
        except (OSError, ValueError, AttributeError):
            return False
        return dev.isdigit() and ino.isdigit() and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    return bool(environ.get("INVOCATION_ID"))


def configure_logging(level: int, fmt: str, journal_fmt: str, force: bool = True,
                      environ: Mapping[str, str] = os.environ) -> None:
    """Root logger to stderr: `fmt` normally, `journal_fmt` with priority prefixes under systemd
    (`force`: replace handlers already there, as logging.basicConfig(force=True))."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(journal_fmt) if under_journal(environ) else logging.Formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=force)
