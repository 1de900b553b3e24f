"""Which verdict lines reach the INFO log: every change at once, an unchanged verdict now and then.

The agent decides every loop (5 times a second at the default timing) and used to log every
verdict at INFO: ~4-5 lines a second per agent, mostly "wait (holder n1 term 4, unchanged for
0.412s)", the largest single item of an idle agent's CPU after the snapshot (bench scale,
docs/scale.md) and a log nobody can read back. Like Patroni (one "no action" line per
`loop_wait`), an unchanged verdict is now repeated once every `SUMMARY_S` with how long it has
stood, while a verdict that changes -- another action, holder, term, rank, reason -- is logged in
the loop that decides it, so every acquire, release, demotion and the wait that precedes it are
still in the log with their own figures. The times that move by themselves ("unchanged for
0.412s", "my turn in 0.2s", "scheduled in 120s") do not count as a change; every loop's verdict is
still logged at DEBUG.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..ha import Verdict

#: an unchanged verdict is logged again after this long: 10 s keeps a tail -f of an idle agent
#: alive (well within the 30 s watchdog and any operator's patience) at 1/50 of the loop's lines
SUMMARY_S = 10.0

# the elapsed and remaining times in a reason (ha.py): "unchanged for 0.412s", "my turn in 0.2s",
# "valid for 0.8s", "scheduled in 120s", "expired 0.1s ago". Other figures (terms, ranks,
# "promised lease 1s", a configured ">= 30s") stay part of the verdict.
# (one pattern, a plain replacement: a group reference made re expand a template each loop, which
# cost more than the rest of this module)
_MOVING = re.compile(r"(?:(?<=\bin )|(?<=\bfor ))-?\d+(?:\.\d+)?s\b|-?\d+(?:\.\d+)?s(?= ago\b)")


def verdict_key(v: Verdict) -> str:
    """What must change for a verdict to count as a new one."""
    return v.action.value + "|" + _MOVING.sub("#s", v.reason)


class _Shown(NamedTuple):
    key: str
    since: float  # when this verdict was first decided
    logged_at: float  # when its last INFO line went out
    loops: int  # loops that decided it since that line


class VerdictLog:
    """Per role: the INFO line for this loop's verdict, or None when it only repeats the last."""

    def __init__(self, summary_s: float = SUMMARY_S) -> None:
        self.summary_s = summary_s
        self._shown: dict[str, _Shown] = {}

    def line(self, v: Verdict, now: float) -> str | None:
        key = verdict_key(v)
        last = self._shown.get(v.role)
        if last is None or last.key != key:
            self._shown[v.role] = _Shown(key, now, now, 0)
            return v.line()
        if now - last.logged_at < self.summary_s:
            self._shown[v.role] = last._replace(loops=last.loops + 1)
            return None
        self._shown[v.role] = last._replace(logged_at=now, loops=0)
        return f"{v.line()} [same verdict for {now - last.since:.0f}s, {last.loops + 1} loops since the last line]"
