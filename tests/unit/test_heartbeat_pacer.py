"""When the heartbeat is written (hacluster/coord/heartbeat.py): a meaningful change at once,
volatile details only with the periodic refresh, and always after a new ZooKeeper session."""

from __future__ import annotations

from hacluster.config_digest import ConfigDigest
from hacluster.coord.heartbeat import HeartbeatPacer, meaningful
from hacluster.coord.model import Member


def member(healthy: bool = True, latency: float = 0.01, detail: str = "ok", **kw: object) -> Member:
    health = {"smtp": {"name": "smtp", "ok": True, "severity": "ok", "detail": detail, "latency_s": latency,
                       "data": {"banner_ms": latency * 1000}, "scope": "node"}}
    return Member("n1", "store", 100, healthy, False, health=health, config=ConfigDigest("t", "r", 1.0, 0.3), **kw)


def test_unchanged_heartbeat_waits_for_the_period_and_volatile_details_do_not_count() -> None:
    p = HeartbeatPacer(2.0)
    assert p.due(member(), 0.0, 1)  # never sent
    p.sent(member(), 0.0, 1)
    assert not p.due(member(), 0.2, 1)
    # probe latency, detail text and data change every probe: displays only
    assert not p.due(member(latency=0.5, detail="banner in 12 ms"), 1.9, 1)
    assert p.due(member(), 2.0, 1)


def test_what_peers_act_on_goes_out_at_once() -> None:
    p = HeartbeatPacer(60.0)
    p.sent(member(), 0.0, 1)
    assert p.due(member(healthy=False), 0.2, 1)
    assert p.due(member()._replace(demote=True), 0.2, 1)
    assert p.due(member()._replace(penalty=10), 0.2, 1)
    assert p.due(member()._replace(reasons=("standby",)), 0.2, 1)
    assert p.due(member()._replace(config=ConfigDigest("t2", "r", 0.3, 0.1)), 0.2, 1)
    failing = member()._replace(health={"smtp": {"ok": False, "severity": "crit", "latency_s": 1.0}})
    assert p.due(failing, 0.2, 1)  # a check flipping: shown in status before the verdict changes


def test_a_new_session_rewrites_at_once() -> None:
    """ZooKeeper drops the ephemeral member znode with the old session: recreate it now."""
    p = HeartbeatPacer(60.0)
    p.sent(member(), 0.0, 1)
    assert p.due(member(), 0.2, 2)
    assert p.due(member(), 0.2, None)


def test_meaningful_ignores_the_age_field_and_tolerates_odd_health() -> None:
    assert meaningful(member()._replace(heartbeat_age_s=5.0)) == meaningful(member())
    odd = member()._replace(health={"x": "not a dict"})
    assert meaningful(odd) != meaningful(member())


def test_only_a_periodic_refresh_rides_a_renewal_and_only_for_its_slack() -> None:
    """An idle holder's refresh may wait for its next renewal (one multi); a change, a new session
    or a refresh more than renew_s + loop_s late goes out alone (its create restores a vanished znode)."""
    p = HeartbeatPacer(2.0, 0.55)
    assert not p.rides_renewal(member(), 0.0, 1)  # never sent: the create must go alone
    p.sent(member(), 0.0, 1)
    assert p.due(member(latency=0.3), 2.0, 1) and p.rides_renewal(member(latency=0.3), 2.0, 1)
    assert p.rides_renewal(member(), 2.54, 1)
    assert not p.rides_renewal(member(), 2.55, 1)  # alone, whatever the renewals do
    assert not p.rides_renewal(member(healthy=False), 2.0, 1)  # peers act on it: at once
    assert not p.rides_renewal(member(), 2.0, 2)  # a new session lost the ephemeral znode


def test_the_longest_gap_a_riding_refresh_allows_is_inside_heartbeat_stale_s() -> None:
    """heartbeat_s + renew_s + loop_s < heartbeat_stale_s for every profile and odd timings."""
    from hacluster.timing import PROFILES

    for t in [*PROFILES.values(), PROFILES["default"].replace(heartbeat_s=0.1),
              PROFILES["relaxed"].replace(heartbeat_s=60.0), PROFILES["fast"].replace(loop_s=0.2, heartbeat_s=0.05)]:
        assert t.heartbeat_s + t.renew_s + t.loop_s < t.heartbeat_stale_s, t
