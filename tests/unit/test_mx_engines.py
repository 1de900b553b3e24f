"""The fast engine must equal the reference DES exactly: every attempt, every fate, every number.

Random small scenarios mix everything the model knows: Postfix and sendmail hosts, MX and static
routes, equal preferences, self-MX, null MX, not-found domains, fallbacks, short lifetimes,
overlapping outages (including hosts down at t=0 or forever), even and Poisson arrivals.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hacluster.mx.des import run_des
from hacluster.mx.fast import run_fast
from hacluster.mx.model import summarize
from hacluster.mx.scenario import Domain, Host, MxRecord, Outage, Policy, Scenario, Traffic, example_scenarios, load_scenario

RELAYS = ("r1", "r2", "r3")
DURATION = 6 * 3600.0


@st.composite
def policies(draw, name: str) -> Policy:
    fallback = tuple(draw(st.lists(st.sampled_from(("fb", "r1", "r3")), max_size=2, unique=True)))
    life = draw(st.sampled_from((1800.0, 5400.0, 5 * 86400.0)))
    if draw(st.booleans()):
        return Policy("sendmail", draw(st.sampled_from((120.0, 900.0, 1800.0))), 0.0, 0.0, life, 0.0, fallback,
                      draw(st.sampled_from((3, 25))))
    q = draw(st.sampled_from((60.0, 300.0, 700.0)))
    lo = draw(st.sampled_from((60.0, 300.0)))
    hi = draw(st.sampled_from((lo, 1200.0, 4000.0)))
    return Policy("postfix", q, lo, hi, life, 1.0, fallback, draw(st.sampled_from((3, 50))))


@st.composite
def scenarios(draw) -> Scenario:
    hosts: dict[str, Host] = {}
    for s in ("s1", "s2"):
        hosts[s] = Host(s, "mx", None, draw(policies(s)))
    for r in RELAYS:
        route = draw(st.sampled_from(("mx", "relay-store", "relay-r1")))
        if route == "relay-r1" and r == "r1":
            route = "relay-store"
        rt = None if route == "mx" else route.split("-")[1]
        hosts[r] = Host(r, "mx" if rt is None else "relay", rt, draw(policies(r)))
    hosts["fb"] = Host("fb", "relay", "store", draw(policies("fb")))
    hosts["store"] = Host("store", "local", None, Policy())
    mx = tuple(MxRecord(draw(st.sampled_from((10, 10, 20))), r) for r in RELAYS if draw(st.booleans()))
    domains = {
        "main.example": Domain("main.example", mx),
        "null.example": Domain("null.example", (MxRecord(0, "."),)),
        "none.example": Domain("none.example", ()),
    }
    outages = []
    for _ in range(draw(st.integers(0, 5))):
        host = draw(st.sampled_from(("s1", "s2", "r1", "r2", "r3", "fb", "store")))
        a = float(draw(st.integers(0, 20)) * 900 + draw(st.sampled_from((0, 1, 150))))
        b = math.inf if draw(st.integers(0, 6)) == 0 else a + draw(st.integers(1, 12)) * 600.0
        outages.append(Outage(host, a, b))
    traffic = []
    for _ in range(draw(st.integers(1, 3))):
        origin = draw(st.sampled_from(("s1", "s2", "r2")))
        dom = draw(st.sampled_from(("main.example", "main.example", "null.example", "none.example")))
        start = float(draw(st.integers(0, 10)) * 1000)
        end = start + draw(st.integers(1, 10)) * 1000.0
        traffic.append(Traffic(origin, dom, draw(st.integers(1, 25)), start, min(end, DURATION),
                               draw(st.sampled_from(("even", "poisson")))))
    return Scenario("random", DURATION, domains, hosts, tuple(traffic), tuple(outages), draw(st.integers(0, 2**32)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_fast_equals_des_on_random_scenarios(scn):
    des, fast = run_des(scn, record_outcomes=True), run_fast(scn, record_outcomes=True)
    assert fast.attempts == des.attempts
    assert fast.outcomes == des.outcomes
    assert summarize(fast) == summarize(des)
    s = summarize(fast)
    assert s["delivered"] + s["bounced"] + s["in_queue_at_end"] == s["messages"]
    # and without the per-message records (the cohort-counting path proper)
    assert summarize(run_fast(scn)) == s


def test_fast_equals_des_on_shipped_scenarios():
    shipped = example_scenarios()
    assert set(shipped) >= {"relay1-down", "both-relays-down", "store-down-fallback", "lifetime-bounce"}
    for path in shipped.values():
        scn = load_scenario(path)
        for variant in (scn, scn.with_seed(7), scn.scaled(0.02)):
            des, fast = run_des(variant, record_outcomes=True), run_fast(variant, record_outcomes=True)
            assert fast.attempts == des.attempts, path
            assert summarize(fast) == summarize(des) == summarize(run_fast(variant)), path


def test_equal_preference_choice_on_retries_matches():
    # Equal-preference MX hosts both down, then both up: every deferred message makes a random
    # choice on a retry, keyed by its attempt number. Both engines must make the same choices.
    scn = Scenario(
        "retry-choice", 4 * 3600.0,
        {"d.example": Domain("d.example", (MxRecord(10, "r1"), MxRecord(10, "r2"), MxRecord(10, "r3")))},
        {"s1": Host("s1", "mx", None, Policy()),
         **{r: Host(r, "relay", "store", Policy()) for r in RELAYS},
         "store": Host("store", "local", None, Policy())},
        (Traffic("s1", "d.example", 300, 0.0, 3600.0, "poisson"),),
        tuple(Outage(r, 0.0, 3000.0) for r in RELAYS),
        seed=11)
    des, fast = run_des(scn, record_outcomes=True), run_fast(scn, record_outcomes=True)
    assert fast.attempts == des.attempts
    s = summarize(fast)
    assert s == summarize(des)
    assert min(s["accepted_by"][r] for r in RELAYS) > 40  # the choices really were random
