"""When the heartbeat (the agent's member znode) is written: at once when what peers and
operators act on changes, else every `timing.heartbeat_s`.

Rewriting it every loop cost ZooKeeper ~5 writes/s per agent (up to ~4 kB each, every one a
transaction logged and snapshotted by every server) while nothing happened. Peers decide from
the health verdict (healthy, demote, penalty: ha.py ranks candidates by them), the operator's
status shows the reasons and the config digests: those go out the loop they change. The rest of
the payload -- probe latencies, check details, queue counts and ages -- changes on every probe
and only feeds displays, so the periodic refresh carries it. Leases, not heartbeats, decide who
holds a role, so the period has no part in failover timing (docs/safety.md).

A holder's periodic refresh rides on its next lease renewal (one multi, one transaction: see
`rides_renewal`), which it sends every `renew_s` anyway; a meaningful change or a new session is
written at once, alone.
"""

from __future__ import annotations

from typing import Any, Hashable

from .model import Member


def meaningful(m: Member) -> Hashable:
    """What must reach peers without delay: everything but the checks' volatile details."""
    checks = tuple(sorted((name, r.get("ok"), r.get("severity")) if isinstance(r, dict) else (name, None, None)
                          for name, r in m.health.items()))
    return (m.tier, m.priority, m.healthy, m.demote, m.penalty, tuple(m.reasons), m.api, m.config, checks)


class HeartbeatPacer:
    """Remembers the last heartbeat that ZooKeeper acknowledged and says when the next is due."""

    def __init__(self, period_s: float, ride_slack_s: float = 0.0) -> None:
        self.period_s = period_s
        self.ride_slack_s = ride_slack_s  # how late a refresh may get waiting for a renewal (renew_s + loop_s)
        self._key: Hashable = None
        self._at: float | None = None
        self._session: Any = None

    def due(self, m: Member, now: float, session: Any) -> bool:
        """True if `m` differs meaningfully from the last one sent, the period has passed, or the
        ZooKeeper session is another one (a new session lost our ephemeral znode)."""
        return (self._at is None or now - self._at >= self.period_s or session != self._session
                or meaningful(m) != self._key)

    def sent(self, m: Member, now: float, session: Any) -> None:
        self._key, self._at, self._session = meaningful(m), now, session

    def rides_renewal(self, m: Member, now: float, session: Any) -> bool:
        """True if the only reason to write `m` is the period, and it is less than `ride_slack_s`
        late: then a holder may send it with its next renewal (one every renew_s, the loop may
        add one loop_s) instead of alone. Past that it goes out alone whatever the renewals do: a
        member znode that vanished within our session makes the multi fail, and only the plain
        heartbeat's create puts it back. Refreshes are then at most heartbeat_s + renew_s + loop_s
        apart, inside heartbeat_stale_s (renew_s < lease_s, so < 2*max(heartbeat_s, loop_s) + lease_s)."""
        return (self._at is not None and session == self._session and meaningful(m) == self._key
                and now - self._at < self.period_s + self.ride_slack_s)
