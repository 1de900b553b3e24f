"""The status page's view model (pure: no ZooKeeper, no server). It lives with the web tests; it
decides what the page shows, so the browser tests only check the drawing."""

from __future__ import annotations

from typing import Any

from hacluster.spec import parse_spec
from hacluster.http.web import held_since, node_state, queue_view, raid_view, spool_view, view_model

SPEC = parse_spec("""\
cluster: lab
mail: {domain: lab.example}
zookeeper: {hosts: ["127.0.0.1:2181"]}
roles:
  store: {tier: store, vip: {address: 198.51.100.20/24, interface: eth0}}
  fallback: {tier: fallback}
nodes:
  - {name: relay2, tier: relay, interface: eth0, addresses: [192.0.2.12/24], priority: 90, mx_preference: 20}
  - {name: relay1, tier: relay, interface: eth0, addresses: [192.0.2.11/24], priority: 100, mx_preference: 10}
  - {name: fallback, tier: fallback, interface: eth0, addresses: [192.0.2.13/24]}
  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.11/24]}
  - {name: store2, tier: store, interface: eth0, addresses: [198.51.100.12/24], priority: 90}
""", "test.yml")


def member(healthy: bool = True, demote: bool = False, age: float = 0.1, health: Any = None) -> dict[str, Any]:
    return {"tier": "x", "priority": 100, "healthy": healthy, "demote": demote, "penalty": 0, "reasons": [],
            "heartbeat_age_s": age, "health": health or {}}


def status(**members: Any) -> dict[str, Any]:
    return {
        "cluster": "lab", "maintenance": False,
        "members": {n: members.get(n) for n in SPEC.nodes},
        "roles": {
            "store": {"holder": "store1", "term": 4, "lease_age_s": 0.2, "handoff_to": None, "request": None,
                      "vips": ["198.51.100.20/24"]},
            "fallback": {"holder": None, "term": 2, "lease_age_s": None, "handoff_to": None, "request": None, "vips": []},
        },
    }


QUEUE = {"name": "queue", "ok": True, "severity": "warn", "detail": "queue deferred=7", "latency_s": 0.01,
         "data": {"counts": {"deferred": 7, "active": 0}, "total": 7, "oldest_age_s": 600.0, "growing": True}}


def test_tiers_follow_the_mail_path_and_relays_their_mx_order() -> None:
    v = view_model(SPEC, status(), [], stale_s=2.0, now=1000.0, can_write=False)
    assert [t["tier"] for t in v["tiers"]] == ["relay", "fallback", "store"]
    assert v["tiers"][0]["nodes"] == ["relay1", "relay2"]  # MX 10 before MX 20, whatever the spec order
    assert v["tiers"][2]["roles"] == ["store"] and v["tiers"][0]["roles"] == []
    assert v["nodes"]["relay1"]["mx_preference"] == 10
    assert v["roles"]["store"]["candidates"] == ["store1", "store2"]
    assert v["roles"]["store"]["vips"] == ["198.51.100.20/24"]


def test_node_states() -> None:
    assert node_state(None, 2.0) == "down"
    assert node_state(member(age=5.0), 2.0) == "stale"
    assert node_state(member(demote=True, healthy=False), 2.0) == "demote"
    assert node_state(member(healthy=False), 2.0) == "unhealthy"
    assert node_state(member(), 2.0) == "healthy"
    v = view_model(SPEC, status(store1=member(), store2=member(healthy=False)), [], stale_s=2.0, now=0, can_write=True)
    assert v["nodes"]["store1"]["state"] == "healthy" and v["nodes"]["store1"]["holds"] == ["store"]
    assert v["nodes"]["store2"]["state"] == "unhealthy" and v["nodes"]["relay1"]["state"] == "down"
    assert v["can_write"] is True


def test_fallback_queue_is_summed_and_shown() -> None:
    v = view_model(SPEC, status(fallback=member(health={"queue": QUEUE})), [], stale_s=2.0, now=0, can_write=False)
    assert v["fallback_queue"] == 7
    q = v["nodes"]["fallback"]["queue"]
    assert q == {"severity": "warn", "detail": "queue deferred=7", "total": 7, "counts": {"deferred": 7, "active": 0},
                 "oldest_age_s": 600.0, "growing": True, "ok": True, "top_deferral_reasons": [], "shape": None}


def test_raid_and_spool_views() -> None:
    raid = {"severity": "warn", "detail": "md1 degraded", "data": {
        "arrays": [{"name": "md1", "state": "degraded", "level": "raid1", "progress_pct": None}],
        "degraded": ["md1"], "failed": [], "missing": []}}
    spool = {"severity": "crit", "detail": "/srv/mail: read-only", "scope": "holder",
             "data": {"path": "/srv/mail", "free_pct": 40.0, "writable": False, "read_only": True}}
    assert raid_view({"raid": raid})["degraded"] == ["md1"]
    assert raid_view({"raid": raid})["arrays"][0]["state"] == "degraded"
    s = spool_view({"spool": spool})
    assert (s["writable"], s["read_only"], s["free_pct"], s["scope"]) == (False, True, 40.0, "holder")


def test_rogue_health_content_never_breaks_the_page() -> None:
    """Member znodes are written by agents, but anything may end up there: wrong types become blanks."""
    weird = {"queue": {"severity": "ok", "data": {"counts": "lots", "total": "7"}}, "raid": "degraded",
             "spool": {"data": ["x"]}, "smtp": 5}
    v = view_model(SPEC, status(fallback=member(health=weird)), [], stale_s=2.0, now=0, can_write=False)
    n = v["nodes"]["fallback"]
    assert n["queue"]["total"] is None and n["queue"]["counts"] == {}
    assert n["raid"] is None and n["spool"]["free_pct"] is None
    assert [c["name"] for c in n["checks"]] == ["queue", "spool"]
    assert v["fallback_queue"] == 0
    assert queue_view({}) is None


def test_history_newest_first_and_held_since() -> None:
    hist = [
        {"at": 100.0, "node": "store2", "event": "acquired", "role": "store", "term": 3, "seq": 1},
        {"at": 200.0, "node": "store2", "event": "released", "role": "store", "term": 3, "reason": "switchover", "seq": 2},
        {"at": 201.0, "node": "store1", "event": "acquired", "role": "store", "term": 4, "seq": 3},
    ]
    assert held_since(hist, "store", "store1") == 201.0
    assert held_since(hist, "store", "store2") is None  # its acquisition is not the latest
    assert held_since(hist, "store", None) is None
    v = view_model(SPEC, status(), hist, stale_s=2.0, now=261.0, can_write=False)
    assert v["roles"]["store"]["held_for_s"] == 60.0
    assert [h["event"] for h in v["history"]] == ["acquired", "released", "acquired"]
    assert v["history"][0]["node"] == "store1" and v["history"][0]["extra"] == "term=4"
    assert v["history"][1]["extra"] == "term=3 reason=switchover"


def test_standby_bans_and_scheduled_switchover_are_shown() -> None:
    st = status(store1=member(), store2=member())
    st["constraints"] = [
        {"name": "standby@store2", "node": "store2", "role": None, "active": True, "text": "standby store2 (by ops)"},
        {"name": "ban@store@store1", "node": "store1", "role": "store", "active": True, "text": "store1 banned from store"},
        {"name": "standby@relay1", "node": "relay1", "role": None, "active": False, "text": "expired"},
    ]
    st["roles"]["store"]["request"] = {"kind": "switchover", "to": "store2", "by": "cli", "age_s": 3.0,
                                       "not_before": 1_800_000_000.0}
    v = view_model(SPEC, st, [], stale_s=2.0, now=0, can_write=False)
    assert v["nodes"]["store2"]["standby"] == "standby store2 (by ops)"
    assert v["nodes"]["relay1"]["standby"] is None and v["nodes"]["store1"]["standby"] is None  # expired: not shown
    assert v["roles"]["store"]["bans"] == ["store1 banned from store"] and v["roles"]["fallback"]["bans"] == []
    assert v["roles"]["store"]["request"]["not_before"] == 1_800_000_000.0
