"""RFC 5321 §5.1 candidate ordering and the MTAs' fallback rules (hacluster.mx.routing)."""

from __future__ import annotations

from collections import Counter

import pytest

from hacluster.mx.model import ACCEPT, BOUNCE, DEFER, Router
from hacluster.mx.routing import permute, plan_for
from hacluster.mx.scenario import parse_scenario


def scenario(domains: str, hosts: str, seed: int = 1):
    text = f"""
duration: 1h
seed: {seed}
domains:
{domains}
hosts:
{hosts}
  sender: {{route: mx}}
traffic:
  - {{from: sender, to: example.org, messages: 1}}
"""
    return parse_scenario(text, "test.yml")


DOMAIN = """  example.org:
    mx: ["20 b", "10 a", "30 c", "20 d"]
  nullmx.example: {mx: ["0 ."]}
  implicit.example: {mx: []}
  nowhere.example: {mx: []}"""
HOSTS = """  a: {route: mx}
  b: {route: mx, smtp_fallback_relay: [fb]}
  c: {route: mx}
  d: {route: mx}
  fb: {route: "[store]"}
  store: {route: local}
  implicit.example: {route: local}
  smx: {mta: sendmail, route: mx, FallbackMXhost: fb}
  pfx: {route: mx, smtp_fallback_relay: "fb, b"}
  relay: {route: "[store]", smtp_fallback_relay: [fb, relay]}"""


@pytest.fixture(scope="module")
def scn():
    return scenario(DOMAIN, HOSTS)


@pytest.mark.parametrize(
    "host, domain, groups, bounce",
    [
        # preference order; equal preferences form one group (shuffled per attempt)
        ("sender", "example.org", (("a",), ("b", "d"), ("c",)), None),
        # a host that is itself an MX keeps only more-preferred hosts, and never falls back
        ("b", "example.org", (("a",),), None),
        ("d", "example.org", (("a",),), None),
        ("c", "example.org", (("a",), ("b", "d")), None),
        # the most preferred MX with an MX route: mail loops back to itself
        ("a", "example.org", (), "mail for example.org loops back to myself"),
        # null MX: bounce, even with a fallback relay configured
        ("b", "nullmx.example", (), "nullmx.example does not accept mail (null MX, RFC 7505)"),
        # no MX: implicit MX, the domain's own address
        ("sender", "implicit.example", (("implicit.example",),), None),
        # neither MX nor address: not found -> bounce, or the fallback relay when there is one
        ("sender", "nowhere.example", (), "nowhere.example: host or domain name not found (no MX, no address)"),
        ("b", "nowhere.example", (("fb",),), None),
        # fallback relays after all MX hosts, in configured order, minus MX hosts already listed
        ("pfx", "example.org", (("a",), ("b", "d"), ("c",), ("fb",)), None),
        # static route: no MX lookup; the fallback applies; the host itself is never its fallback
        ("relay", "example.org", (("store",), ("fb",)), None),
    ],
)
def test_plans(scn, host, domain, groups, bounce):
    plan = plan_for(scn, scn.hosts[host], domain)
    assert plan.groups == groups
    assert plan.bounce == bounce


def test_sendmail_orders_equal_preferences_once_and_appends_fallback_mx(scn):
    plan = plan_for(scn, scn.hosts["smx"], "example.org")
    assert not plan.shuffle
    flat = [g[0] for g in plan.groups]
    assert all(len(g) == 1 for g in plan.groups)
    assert flat[0] == "a" and set(flat[1:3]) == {"b", "d"} and flat[3:] == ["c", "fb"]
    # the same order on every call (mxrand is fixed per instance)
    assert plan_for(scn, scn.hosts["smx"], "example.org") == plan


def test_sendmail_equal_preference_order_depends_on_seed():
    orders = {tuple(g[0] for g in plan_for(scenario(DOMAIN, HOSTS, seed), scenario(DOMAIN, HOSTS, seed).hosts["smx"],
                                           "example.org").groups[1:3]) for seed in range(1, 40)}
    assert orders == {("b", "d"), ("d", "b")}


def test_permutation_is_uniform_and_deterministic():
    group = ("x", "y", "z")
    counts = Counter(tuple(permute(group, 7, msg, 1, 0, 0)) for msg in range(6000))
    assert len(counts) == 6
    for c in counts.values():
        assert abs(c - 1000) < 120  # 6000 draws, 6 orders: sd ~ 29
    assert permute(group, 7, 42, 1, 0, 0) == permute(group, 7, 42, 1, 0, 0)
    assert any(permute(group, 7, 42, 1, a, 0) != permute(group, 7, 42, 1, 0, 0) for a in range(1, 10))


def test_attempt_outcomes(scn):
    r = Router(scn)
    up = lambda *down: (lambda h: h not in down)  # noqa: E731
    assert r.attempt("sender", "example.org", up(), 1, 1, 0) == (ACCEPT, "a")
    status, host = r.attempt("sender", "example.org", up("a"), 1, 1, 0)
    assert status == ACCEPT and host in ("b", "d")
    assert r.attempt("sender", "example.org", up("a", "b"), 1, 1, 0) == (ACCEPT, "d")
    assert r.attempt("sender", "example.org", up("a", "b", "d"), 1, 1, 0) == (ACCEPT, "c")
    assert r.attempt("sender", "example.org", up("a", "b", "c", "d"), 1, 1, 0) == (DEFER, None)
    assert r.attempt("b", "example.org", up("a"), 1, 2, 0) == (DEFER, None)  # no fallback: b is MX
    assert r.attempt("pfx", "example.org", up("a", "b", "c", "d"), 1, 1, 0) == (ACCEPT, "fb")
    assert r.attempt("a", "example.org", up(), 1, 2, 0)[0] == BOUNCE
    # hop limit: Postfix hopcount_limit 50 ends forwarding loops
    assert r.attempt("sender", "example.org", up(), 1, 50, 0) == (BOUNCE, "mail forwarding loop (hop count exceeded)")


def test_equal_preference_choice_is_random_per_attempt(scn):
    r = Router(scn)
    picks = Counter(r.attempt("sender", "example.org", lambda h: h != "a", msg, 1, 0)[1] for msg in range(4000))
    assert set(picks) == {"b", "d"}
    assert abs(picks["b"] / 4000 - 0.5) < 0.035  # sd 0.008
    per_attempt = {r.attempt("sender", "example.org", lambda h: h != "a", 5, 1, n)[1] for n in range(40)}
    assert per_attempt == {"b", "d"}

