"""Graceful demote: when a holder gives the role up with time left, SMTP transactions in flight on
the VIP finish before the VIP goes; when its deadline forces it, nothing waits. Pure: the agent
hands in its clock, its lease deadline and the count of established sessions; tests/unit/
test_graceful.py holds the table.

Why: SMTP is at-least-once. A store whose VIP vanishes between queuing a message and the `250`
reaching the relay gets that message again from the relay's retry (issue 21: a duplicate). A
holder that first refuses *new* connections on the VIP's SMTP port (the relay then tries its next
route at once) and lets the sessions it is in already finish, avoids most such windows. The
deadline is never moved for this: the lease rules of docs/safety.md are untouched, and the guard
thread still stops everything at the deadline wherever the drain is.

Rules (numbered after ha.py's, see its docstring):
 20. a demote forced by the lease -- deadline passed (ha.py rule 1) or lease taken (rule 2) --
     stops at once: no drain.
 21. a release with time left (health, rule 3; switchover, rule 4; placement, rule 12; SIGTERM):
     close the port to new connections, keep renewing as usual, and stop (VIP first) as soon as no
     session is established on VIP:25, or at `min(start + drain_max_s, until - reserve_s)`,
     whichever comes first; `until` is the current deadline (renewals move it, so only
     `drain_max_s` bounds a release that keeps renewing). `reserve_s` keeps the stop ours, ahead
     of the guard's, and never lets a drain end less than `reserve_s` before the deadline.
 22. a holder cut off from ZooKeeper (renewals failing, no failsafe extension): the role will go
     at the deadline unless a renewal lands first, so close the port to new connections now and
     let the open sessions use what is left; the VIP still goes exactly at the deadline (rule 1).
     A renewal that lands reopens the port.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

DEFAULT_DRAIN_MAX_S = 1.0  # a release waits at most this long for SMTP sessions in flight (idle cached
# connections look the same from here; a relay closes those after 2 s, smtp_connection_cache_time_limit)
SMTP_PORT = 25
TCP_ESTABLISHED = "01"


class Cause(str, enum.Enum):
    EXPIRED = "expired"  # deadline passed (ha.py rule 1)
    TAKEN = "taken"  # the znode names another holder or term (rule 2)
    RELEASE = "release"  # health, switchover, placement, SIGTERM: our choice, time left
    CUT_OFF = "cut-off"  # ZooKeeper unreachable, deadline still ahead


class Step(NamedTuple):
    """What the drain does now: `close` the port to new connections, `stop` the resources now."""

    close: bool
    stop: bool
    why: str


def drain_end(started: float, until: float, drain_max_s: float, reserve_s: float) -> float:
    """Rule 21: the latest instant a release drain may last."""
    return min(started + drain_max_s, until - reserve_s)


def drain_step(cause: Cause, now: float, until: float, started: float, in_flight: int,
               drain_max_s: float = DEFAULT_DRAIN_MAX_S, reserve_s: float = 0.1) -> Step:
    """One decision of the drain (rules 20-22). `started`: when the drain began (= now at first)."""
    if cause in (Cause.EXPIRED, Cause.TAKEN) or now >= until:
        return Step(False, True, f"rule 20: {cause.value if now < until else 'deadline passed'}: stop at once")
    if cause == Cause.CUT_OFF:
        # the VIP stays until the deadline (rule 1 removes it); sessions in flight use the time left
        return Step(True, False, f"rule 22: zookeeper unreachable, {until - now:.3f}s left: no new SMTP sessions")
    if drain_max_s <= 0:
        return Step(False, True, "rule 21: drain disabled (drain_max_s 0)")
    end = drain_end(started, until, drain_max_s, reserve_s)
    if now >= end:
        which = "drain_max_s" if started + drain_max_s <= until - reserve_s else "deadline - reserve"
        return Step(True, True, f"rule 21: {in_flight} session(s) still open at {which}: stop")
    if in_flight <= 0:
        return Step(True, True, "rule 21: no SMTP session in flight: stop")
    return Step(True, False, f"rule 21: {in_flight} session(s) in flight, {end - now:.3f}s left")


def _hex_addr(ip: str) -> str:
    """An address as /proc/net/tcp{,6} prints it: each 32-bit word in host byte order, %08X."""
    import ipaddress
    import sys

    raw = ipaddress.ip_address(ip).packed
    return "".join(f"{int.from_bytes(raw[i:i + 4], sys.byteorder):08X}" for i in range(0, len(raw), 4))


def established(proc_net_tcp: str, ip: str, port: int = SMTP_PORT) -> int:
    """Sessions established on ip:port in a /proc/net/tcp (or tcp6) text: the SMTP transactions
    in flight (or connections idle between them) that a stop would cut."""
    want = f"{_hex_addr(ip)}:{port:04X}"
    n = 0
    for line in proc_net_tcp.splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and f[1].upper() == want and f[3] == TCP_ESTABLISHED:
            n += 1
    return n
