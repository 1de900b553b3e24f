"""Timing profiles and the safety inequality they must satisfy.

The lease (see docs/safety.md) is a ZooKeeper znode renewed by compare-and-set:

* the holder reads its clock (t_send) before each renewal; when the renewal is acknowledged it
  may act as holder until ``t_send + lease_s - margin_s`` and not one instant longer;
* a candidate may take the lease only after it has seen the same znode version, unchanged, for
  ``lease_s`` on its own clock (then a fresh read and a version-checked write).

The candidate first saw that version after the holder's t_send, so the holder's deadline comes
at least ``margin_s`` before any takeover. Safety needs the margin to cover stopping the role's
fast resources (the VIP) and the clock-rate error of both clocks:

    (S)  margin_s >= stop_timeout_s + 2 * max_drift * lease_s

Liveness (a healthy holder never lets its lease lapse because one request was slow), in the
spirit of Patroni's ``loop_wait + 2*retry_timeout <= ttl``:

    (L)  loop_s + 2 * request_timeout_s <= lease_s - margin_s

The heartbeat (the member znode) is not part of either inequality: leases alone decide who holds
a role. It is rewritten when its meaningful content changes and otherwise every ``heartbeat_s``,
so an idle cluster costs ZooKeeper next to nothing; a heartbeat older than ``heartbeat_stale_s``
means the agent is silent (status, status page, switchover checks).

The margin's remainder beyond (S), ``probe_lead_s = margin_s - stop_timeout_s - 2*max_drift*lease_s``,
is time in which the old holder is already down but no candidate may take over yet: a candidate
runs its duplicate-address probe there, so the VIP goes up at takeover without waiting for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: timing.heartbeat_s when the spec says nothing (issue 14: <= 1 ZooKeeper write/s per idle agent)
DEFAULT_HEARTBEAT_S = 2.0


@dataclass(frozen=True)
class Timing:
    lease_s: float  # L: how long a candidate must see the lease unchanged before taking it
    loop_s: float  # agent loop period; the holder renews every renew_s (>= one loop)
    request_timeout_s: float  # one ZooKeeper request (renewal) gives up after this
    margin_s: float  # the holder stops this long before a candidate could take over
    stop_timeout_s: float  # bound on stopping the role's fast resources (VIP removal)
    max_drift: float = 0.01  # clock-rate error bound (1 % is generous for CLOCK_BOOTTIME)
    stagger_s: float = 0.0  # extra wait per rank for lower-ranked candidates (0 = lease_s/4)
    heartbeat_s: float = DEFAULT_HEARTBEAT_S  # refresh of an unchanged heartbeat (changes go out at once)
    stall_s: float = 0.0  # a ZooKeeper write stall (a server's GC pause) the holder rides out; see renew_s

    def replace(self, **kw: float) -> "Timing":
        return replace(self, **kw)

    @property
    def holder_validity_s(self) -> float:
        """How long after t_send of an acknowledged renewal the holder may act."""
        return self.lease_s - self.margin_s

    @property
    def renew_s(self) -> float:
        """How often the holder renews: as seldom as still leaves room, before the holder's
        deadline, for the worse of two mishaps, and never more often than once a loop:

        * one renewal that fails outright (no answer within request_timeout_s) and a retry at the
          next loop that lands within its own request_timeout_s;
        * every write stalled for `stall_s` (a ZooKeeper server's stop-the-world pause) from the
          instant the renewal is sent: after the stall the next attempt goes out within
          `retry_at - request_timeout_s` (a timed-out one is retried a loop later), finds the
          stalled renewal landed (Adopted) and is sent again at once, landing within
          request_timeout_s.

        `renew_s + retry_at + max(request_timeout_s, stall_s) <= lease_s - margin_s`, retry_at =
        max(loop_s, request_timeout_s). Safety does not depend on it (docs/safety.md, "Renewal
        cadence"); the default profile renews every 1.05 s and rides out a 0.5 s stall."""
        retry_at = max(self.loop_s, self.request_timeout_s)  # a timed-out renewal blocks the loop that long
        return max(self.loop_s, self.holder_validity_s - retry_at - max(self.request_timeout_s, self.stall_s))

    @property
    def probe_lead_s(self) -> float:
        """How long before its takeover time a candidate may start checking that nobody answers
        for the VIP: the old holder's deadline plus stop_timeout_s, with both clocks' drift, lies
        this far before the takeover (see the module docstring; 0 when (S) holds with equality)."""
        return max(0.0, self.margin_s - self.stop_timeout_s - 2 * self.max_drift * self.lease_s)

    @property
    def rank_stagger_s(self) -> float:
        return self.stagger_s or self.lease_s / 4

    @property
    def heartbeat_stale_s(self) -> float:
        """A heartbeat older than this has no live agent behind it: two missed refreshes plus a
        lease of slack (loop jitter, the operator's wall clock against ZooKeeper's mtime), and
        never less than the two leases it was before the heartbeat was paced."""
        return max(2 * self.lease_s, 2 * max(self.heartbeat_s, self.loop_s) + self.lease_s, 1.0)

    def takeover_bound_s(self, ranks: int = 1) -> float:
        """Worst case from holder death to a new holder, with `ranks` dead candidates ahead."""
        return self.lease_s + self.loop_s + ranks * self.rank_stagger_s + 2 * self.request_timeout_s


#: the largest timing.heartbeat_s: status judges an agent silent after about two of them. (One
#: shorter than loop_s means every loop: the loop writes it; an older spec with a slow loop stays valid.)
MAX_HEARTBEAT_S = 60.0

#: the largest lease_s a spec may set and a lease record may promise (see coord.model.decode_lease):
#: a rogue record promising a year must not stall every candidate for a year
MAX_LEASE_S = 3600.0

PROFILES: dict[str, Timing] = {
    # renews every 1.05 s (< 1 ZooKeeper write/s, the heartbeat riding along) and rides out a 0.5 s
    # ZooKeeper pause; failover p50 ~1.6 s (docs/safety.md, "Renewal cadence": why these numbers)
    "default": Timing(lease_s=2.05, loop_s=0.2, request_timeout_s=0.15, margin_s=0.3, stop_timeout_s=0.2,
                      stall_s=0.5),
    "fast": Timing(lease_s=0.3, loop_s=0.05, request_timeout_s=0.04, margin_s=0.1, stop_timeout_s=0.08),
    # for WAN-stretched ZooKeeper or slow hosts: still far quicker than Pacemaker's defaults
    "relaxed": Timing(lease_s=5.0, loop_s=1.0, request_timeout_s=1.0, margin_s=1.5, stop_timeout_s=1.0),
}


def timing_problems(t: Timing) -> list[tuple[str, str]]:
    """Every violated inequality as (the field to blame, a message that names the numbers)."""
    out: list[tuple[str, str]] = []
    need = t.stop_timeout_s + 2 * t.max_drift * t.lease_s
    if t.margin_s < need:
        out.append(("margin_s",
            f"unsafe: margin_s ({t.margin_s:g}) must be >= stop_timeout_s + 2*max_drift*lease_s "
            f"({t.stop_timeout_s:g} + 2*{t.max_drift:g}*{t.lease_s:g} = {need:g}), "
            "or an old holder could still hold the VIP when another takes it",
        ))
    have = t.lease_s - t.margin_s
    spend = t.loop_s + 2 * t.request_timeout_s
    if spend > have:
        out.append(("loop_s",
            f"unstable: loop_s + 2*request_timeout_s ({t.loop_s:g} + 2*{t.request_timeout_s:g} = {spend:g}) "
            f"must be <= lease_s - margin_s ({t.lease_s:g} - {t.margin_s:g} = {have:g}), "
            "or a healthy holder would lose its lease after one slow request",
        ))
    if t.lease_s > MAX_LEASE_S:
        out.append(("lease_s", f"lease_s ({t.lease_s:g}) must be <= {MAX_LEASE_S:g}: candidates read a larger "
                    "promise in a lease record as a scribble"))
    if t.heartbeat_s > MAX_HEARTBEAT_S:
        out.append(("heartbeat_s", f"heartbeat_s ({t.heartbeat_s:g}) must be <= {MAX_HEARTBEAT_S:g}: "
                    "a silent agent must show in status within minutes"))
    retry_at = max(t.loop_s, t.request_timeout_s)
    ride = t.holder_validity_s - retry_at - t.stall_s
    if t.stall_s > t.request_timeout_s and ride < t.loop_s and spend <= have:  # a too-long loop is blamed above
        out.append(("stall_s",
            f"stall_s ({t.stall_s:g}) leaves no room: lease_s - margin_s - max(loop_s, request_timeout_s) - stall_s "
            f"({t.lease_s:g} - {t.margin_s:g} - {retry_at:g} - {t.stall_s:g} = {ride:.3g}) must be >= loop_s ({t.loop_s:g}), "
            "or a stall that long costs the lease; raise lease_s or lower stall_s (0: no stall budget)",
        ))
    if not 0 <= t.max_drift < 0.1:
        out.append(("max_drift", f"max_drift ({t.max_drift:g}) must be in [0, 0.1)"))
    return out
