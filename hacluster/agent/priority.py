"""The agent's scheduling priority: run the loop ahead of ordinary work, as keepalived and corosync do.

A lease renewal is a few ms of CPU, but on a saturated core it waits for its turn behind every
runnable process of the same weight; with the `fast` profile's short lease that wait alone can
let the lease lapse (docs/vip.md, "Speed has a price"). keepalived runs its VRRP process at a
raised priority (`vrrp_priority`, a nice value, or `vrrp_rt_priority` for SCHED_RR), corosync
runs SCHED_RR; we lower the agent's nice value at start by `raise_by` (default 10, relative, as
`nice -n -10` would: under systemd the agent starts at 0 and runs at -10; started under
`nice -n 19`, as a test suite on a shared machine does, it runs at 9 and stays out of the way).

Why nice and not SCHED_RR for the loop thread: the agent is Python. A real-time thread that
needs the GIL waits for whichever ordinary thread holds it, and that thread is preempted by the
hogs like any other (priority inversion: no gain); a real-time thread that spins holding the GIL
starves the host. A nice value for every thread of the process is honest: whichever thread holds
the GIL runs ahead of the load, and CFS still gives the rest of the host its share (-10 weighs
~10x a nice-0 process, not infinitely).

The VIP guard process (hacluster/resources/vip_guard.py) stays above the agent: it asks for
SCHED_FIFO 50, else nice -20; the agent's floor is -19 so the guard's fallback still outranks it.
Linux keeps the nice value per thread: `apply` sets every thread of the process (at start there is
only the main thread; threads started later inherit it). Children inherit it too: `normal_argv`
prefixes a command (Postfix's `postfix start`) so the MTA runs at the agent's starting priority,
not ahead of the agent under a mail flood.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_RAISE_BY = 10
MAX_RAISE_BY = 19
#: the agent never goes below this: the VIP guard's fallback (nice -20) must stay above it
FLOOR = -19


@dataclass(frozen=True)
class Plan:
    """What `decide` chose: the nice value to set (None: leave it) and why, for the log line."""

    target: int | None
    reason: str


def decide(raise_by: int, current: int) -> Plan:
    """The nice value the agent asks for, from the requested raise and the value it started with.

    1. raise_by 0: off, keep `current`.
    2. the target is `current - raise_by`, never below FLOOR (the VIP guard stays above).
    3. a target not below `current` (already at the floor): nothing to do.
    """
    if not 0 <= raise_by <= MAX_RAISE_BY:
        raise ValueError(f"raise_by must be 0..{MAX_RAISE_BY}, got {raise_by}")
    if raise_by == 0:
        return Plan(None, "off (--raise-priority 0)")
    target = max(FLOOR, current - raise_by)
    if target >= current:
        return Plan(None, f"already at nice {current} (floor {FLOOR}: the VIP guard runs above)")
    return Plan(target, f"raised by {current - target}")


@dataclass(frozen=True)
class Outcome:
    before: int
    after: int
    note: str

    def line(self) -> str:
        return f"scheduling priority: nice {self.before} -> {self.after} ({self.note})"


_started_at: int | None = None


def _threads() -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return [0]


def apply(raise_by: int) -> Outcome:
    """Lower the nice value of every thread of this process as `decide` says; a refusal (no
    CAP_SYS_NICE, RLIMIT_NICE too low) is logged and leaves the priority as it was."""
    global _started_at
    before = os.getpriority(os.PRIO_PROCESS, 0)
    _started_at = before
    plan = decide(raise_by, before)
    if plan.target is None:
        out = Outcome(before, before, plan.reason)
    else:
        try:
            for tid in _threads():
                try:
                    os.setpriority(os.PRIO_PROCESS, tid, plan.target)
                except ProcessLookupError:
                    pass  # a thread that ended meanwhile
            out = Outcome(before, os.getpriority(os.PRIO_PROCESS, 0), plan.reason)
        except PermissionError as err:
            out = Outcome(before, os.getpriority(os.PRIO_PROCESS, 0),
                          f"not permitted ({err.strerror}): needs CAP_SYS_NICE or RLIMIT_NICE; running as started")
    (log.info if out.after < out.before or raise_by == 0 else log.warning)("%s", out.line())
    return out


def normal_argv(argv: list[str]) -> list[str]:
    """`argv` run at the priority the agent started with (coreutils `nice -n N`, N the raise this
    thread has now; raising a nice value needs no privilege), or `argv` itself when not raised."""
    if _started_at is None:
        return argv
    delta = _started_at - os.getpriority(os.PRIO_PROCESS, 0)
    return ["nice", "-n", str(delta), *argv] if delta > 0 else argv
