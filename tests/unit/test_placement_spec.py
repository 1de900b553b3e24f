"""roles.R.nodes / prefer / avoid_with / failback / exercise in the spec (placement_spec.py):
contradictions are `config check` errors with FILE:LINE: field, a good spec parses into the
Placement the rules 30-34 of ha.py read, and the roles digest changes only when placement is set."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from hacluster.config_digest import digest_of
from hacluster.placement_spec import Exercise, Placement
from hacluster.spec import SpecError, parse_spec

HEAD = """\
cluster: mail
zookeeper: {hosts: [127.0.0.1:2181]}
nodes:
  - {name: s1, tier: store, interface: lo, addresses: [127.0.0.11/8], priority: 100}
  - {name: s2, tier: store, interface: lo, addresses: [127.0.0.12/8], priority: 90}
  - {name: s3, tier: store, interface: lo, addresses: [127.0.0.13/8], priority: 90}
  - {name: r1, tier: relay, interface: lo, addresses: [127.0.0.14/8]}
roles:
  relay:
    tier: relay
  store-b:
    tier: store
    nodes: [s3]
  store:
    tier: store
"""
LINE = 16  # the first line after HEAD: the store role's placement keys


def check(extra: str) -> list[str]:
    try:
        parse_spec(HEAD + extra, "c.yml")
    except SpecError as err:
        return str(err).splitlines()
    return []


@pytest.mark.parametrize("extra, where, needle", [
    ("    nodes: [s1, s9]\n", "c.yml:16: roles.store.nodes", "no node named 's9'"),
    ("    nodes: [s1, r1]\n", "c.yml:16: roles.store.nodes", "r1 is in tier relay"),
    ("    nodes: []\n", "c.yml:16: roles.store.nodes", "at least one node"),
    ("    nodes: [s1, s1]\n", "c.yml:16: roles.store.nodes", "twice"),
    ("    nodes: s1\n", "c.yml:16: roles.store.nodes", "must be a list of names"),
    ("    nodes: [s1, s2]\n    prefer: {s3: 10}\n", "c.yml:17: roles.store.prefer.s3", "not in roles.store.nodes"),
    ("    prefer: {s1: 1001}\n", "c.yml:16: roles.store.prefer.s1", "-1000..1000"),
    ("    prefer: {s1: high}\n", "c.yml:16: roles.store.prefer.s1", "whole number"),
    ("    prefer: [s1]\n", "c.yml:16: roles.store.prefer", "mapping of node to weight"),
    ("    prefer: {r1: 5}\n", "c.yml:16: roles.store.prefer.r1", "tier relay"),
    ("    avoid_with: [store]\n", "c.yml:16: roles.store.avoid_with", "cannot avoid itself"),
    ("    avoid_with: [relay]\n", "c.yml:16: roles.store.avoid_with", "never share a node"),
    ("    avoid_with: [nope]\n", "c.yml:16: roles.store.avoid_with", "no role named 'nope'"),
    ("    nodes: [s3]\n    avoid_with: [store-b]\n", "c.yml:17: roles.store.avoid_with", "can never be apart"),
    ("    nodes: [s2, s3]\n    failback: {delay_s: 60}\n", "c.yml:17: roles.store.failback", "nothing to fail back to"),
    ("    failback: {delay_s: soon}\n", "c.yml:16: roles.store.failback.delay_s", "duration"),
    ("    failback: {after: 5}\n", "c.yml:16: roles.store.failback.after", "unknown key"),
    ("    exercise: {every: 7d, at: '25:00'}\n", "c.yml:16: roles.store.exercise.at", "HH:MM"),
    ("    exercise: {at: '03:00'}\n", "c.yml:16: roles.store.exercise.every", "is required"),
    ("    exercise: {every: 2m, at: '03:00', hold: 1m}\n", "c.yml:16: roles.store.exercise.hold", "no time between"),
    ("    nodes: [s1]\n    exercise: {every: 7d, at: '03:00'}\n", "c.yml:17: roles.store.exercise", "needs two nodes"),
])
def test_contradictions_are_errors_with_file_line_field(extra: str, where: str, needle: str) -> None:
    lines = check(extra)
    assert any(line.startswith(where + ":") and needle in line for line in lines), lines


def test_a_good_placement_parses() -> None:
    spec = parse_spec(HEAD + "    nodes: [s1, s2]\n    prefer: {s2: 20}\n    avoid_with: [store-b]\n"
                      "    failback: {delay_s: 5m}\n    exercise: {every: 7d, at: '03:00', hold: 2m}\n", "c.yml")
    p = spec.roles["store"].placement
    assert p == Placement(("s1", "s2"), {"s2": 20}, ("store-b",), 300.0, Exercise(7 * 86400, "03:00", 120.0))
    assert p.allows("s1") and not p.allows("s3") and p.weight("s2") == 20 and p.weight("s1") == 0
    assert spec.roles["relay"].placement == Placement()  # nothing set: every node, sticky


def test_roles_digest_changes_only_with_placement() -> None:
    plain = digest_of(parse_spec(HEAD, "c.yml")).roles
    assert digest_of(parse_spec(HEAD, "c.yml")).roles == plain
    assert digest_of(parse_spec(HEAD + "    prefer: {s2: 20}\n", "c.yml")).roles != plain
    # the pre-placement form of the digest is kept for specs without it (a rolling upgrade)
    from hacluster.config_digest import roles_canonical

    assert all("placement" not in r for r in roles_canonical(parse_spec(HEAD, "c.yml")) if r["name"] != "store-b")


def test_exercise_times() -> None:
    ex = Exercise(7 * 86400, "03:00")
    base = datetime(2026, 12, 4, 12, 0).timestamp()
    nxt = ex.next_after(base)
    assert datetime.fromtimestamp(nxt) == datetime(2026, 12, 7, 3, 0)  # weekly: Mondays (counted from 1970-01-05)
    assert ex.next_after(nxt) - nxt == pytest.approx(7 * 86400)
    assert datetime.fromtimestamp(ex.next_after(nxt + 3600)).weekday() == 0
    daily = Exercise(86400, "03:00")
    assert datetime.fromtimestamp(daily.next_after(datetime(2026, 12, 4, 2, 59).timestamp())) == datetime(2026, 12, 4, 3, 0)
    hourly = Exercise(3600, "03:00")
    got = datetime.fromtimestamp(hourly.next_after(datetime(2026, 12, 4, 1, 10).timestamp()))
    assert got == datetime(2026, 12, 4, 2, 0)
    assert hourly.next_after(time.time()) > time.time()
