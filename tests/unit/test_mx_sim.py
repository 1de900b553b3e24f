"""Delivery simulation: retry schedules computed by hand, bounces, fallback relays, randomness.

Every case runs through both engines (the reference DES and the fast one) and checks that they
agree on every message's attempts and fate before checking the expected values.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from hacluster.mx.des import run_des
from hacluster.mx.fast import run_fast
from hacluster.mx.model import MSG_ID_STRIDE, Timeline, summarize
from hacluster.mx.scenario import parse_scenario

LAB_HOSTS = """
  relay1:   {route: "[store]"}
  relay2:   {route: "[store]"}
  fallback: {route: "[store]"}
  store:    {route: local}
"""


def make(body: str, hosts: str = LAB_HOSTS, mx: str = '["10 relay1", "20 relay2"]', duration: str = "6h"):
    text = f"""
duration: {duration}
seed: 3
domains:
  lab.example: {{mx: {mx}}}
hosts:
  sender: {{route: mx}}
{hosts}
{body}
"""
    return parse_scenario(text, "case.yml")


def one_message_at(t: float) -> str:
    """Traffic of one message arriving at exactly t (even arrivals put it mid-window)."""
    return f"traffic:\n  - {{from: sender, to: lab.example, messages: 1, start: 0, end: {2 * t:g}}}\n"


def run_both(scn):
    des, fast = run_des(scn, record_outcomes=True), run_fast(scn, record_outcomes=True)
    assert des.attempts == fast.attempts
    assert des.outcomes == fast.outcomes
    s = summarize(fast)
    assert summarize(des) == s
    assert s["delivered"] + s["bounced"] + s["in_queue_at_end"] == s["messages"]
    return fast, s


def attempts_at(trace, host: str, mid: int = 0) -> list[float]:
    return [t for h, t in trace.attempts[mid] if h == host]


def test_postfix_backoff_schedule_for_a_message_deferred_two_hours():
    # Both MX hosts down 0-2h; one message at t=100. By hand, with queue_run_delay 300 (scans at
    # 0, 300, 600, ...), backoff clamp(age, 300, 4000) and qmgr's 1 s mtime slack:
    #   100: age 0 -> eligible 400 -> scan 600;  600: age 500 -> 1100 -> scan 1200
    #  1200: age 1100 -> 2300 -> scan 2400;  2400: age 2300 -> 4700 -> scan 4800
    #  4800: age 4700, capped 4000 -> 8800 -> scan 9000: relays are up, delivered.
    scn = make(one_message_at(100) + "outages:\n  - {host: relay1, from: 0, to: 2h}\n  - {host: relay2, from: 0, to: 2h}\n",
               duration="4h")
    trace, s = run_both(scn)
    assert attempts_at(trace, "sender") == [100, 600, 1200, 2400, 4800, 9000]
    assert trace.outcomes[0] == ("delivered", 9000, "store")
    assert s["delay_s"] == {"p50": 8900.0, "p95": 8900.0, "max": 8900.0}
    assert s["accepted_by"]["relay1"] == 1 and s["queue_peak"]["sender"] == 1


def test_postfix_scan_slack_picks_up_a_file_one_second_early():
    # qmgr_active_feed() skips a deferred file only if mtime > now + 1: eligible at 301 -> scan 300
    scn = make(one_message_at(1) + "outages:\n  - {host: relay1, from: 0}\n  - {host: relay2, from: 0}\n", duration="1h")
    trace, _ = run_both(scn)
    assert attempts_at(trace, "sender")[:4] == [1, 300, 600, 1200]


def test_default_lifetime_bounces_after_five_days_at_the_backoff_cap():
    # After the 4000 s cap the retries come every 4200 s (the next 300 s scan at or after +3999 s):
    # 9000 + 4200k; the first failed attempt at or after 100 + 5d = 432100 is k=101: 433200.
    scn = make(one_message_at(100) + "outages:\n  - {host: store, from: 0}\n", duration="6d")
    trace, s = run_both(scn)
    relay = attempts_at(trace, "relay1")
    assert relay[:6] == [100, 600, 1200, 2400, 4800, 9000]
    assert all(b - a == 4200 for a, b in pairwise(relay[5:]))
    assert trace.outcomes[0] == ("bounced", 433200, "relay1")
    assert s["bounced"] == 1 and s["delivered"] == 0 and s["in_queue_at_end"] == 0


def test_short_lifetime_bounces_at_the_first_failed_attempt_after_it():
    hosts = LAB_HOSTS.replace('relay1:   {route: "[store]"}', 'relay1: {route: "[store]", maximal_queue_lifetime: 2h}')
    scn = make(one_message_at(100) + "outages:\n  - {host: store, from: 0}\n", hosts=hosts, duration="4h")
    trace, s = run_both(scn)
    assert attempts_at(trace, "relay1") == [100, 600, 1200, 2400, 4800, 9000]  # 4800 < 7300 <= 9000
    assert trace.outcomes[0] == ("bounced", 9000, "relay1")


SENDMAIL = """
duration: 3h
domains: {{lab.example: {{mx: ["10 relay1"]}}}}
hosts:
  sender: {{mta: sendmail, route: mx, queue_interval: 30m{extra}}}
  relay1: {{route: "[store]"}}
  store: {{route: local}}
traffic:
  - {{from: sender, to: lab.example, messages: {n}, start: 0, end: {end}}}
outages:
  - {{host: relay1, from: 0, to: 2h}}
"""


def test_sendmail_retries_every_queue_run_and_returns_after_queuereturn():
    # arrivals at 100 and 300; queue runs every 30 min from the start (-q30m), every queued
    # message tried on every run; the first failed run 1 h or more after arrival returns it
    # (at 3600 the ages are 3500 and 3300: not yet; at 5400 both are over an hour old)
    scn = parse_scenario(SENDMAIL.format(extra=", Timeout.queuereturn: 1h", n=2, end=400), "sendmail.yml")
    trace, _ = run_both(scn)
    assert attempts_at(trace, "sender", 0) == [100, 1800, 3600, 5400]
    assert attempts_at(trace, "sender", 1) == [300, 1800, 3600, 5400]
    assert trace.outcomes[0] == ("bounced", 5400, "sender") and trace.outcomes[1] == ("bounced", 5400, "sender")
    scn = parse_scenario(SENDMAIL.format(extra="", n=1, end=200), "sendmail2.yml")
    trace, _ = run_both(scn)
    assert attempts_at(trace, "sender") == [100, 1800, 3600, 5400, 7200]  # relay1 up again at 2h exactly
    assert trace.outcomes[0] == ("delivered", 7200, "store")


def test_relay_hands_mail_to_fallback_when_store_is_down():
    hosts = LAB_HOSTS.replace('relay1:   {route: "[store]"}', 'relay1: {route: "[store]", smtp_fallback_relay: [fallback]}')
    scn = make(one_message_at(100) + "outages:\n  - {host: store, from: 0, to: 1h}\n", hosts=hosts, duration="3h")
    trace, s = run_both(scn)
    assert trace.attempts[0] == [("sender", 100), ("relay1", 100), ("fallback", 100), ("fallback", 600),
                                 ("fallback", 1200), ("fallback", 2400), ("fallback", 4800)]
    assert s["accepted_by"] == {"fallback": 1, "relay1": 1, "relay2": 0, "sender": 0, "store": 1}
    assert s["queue_peak"]["fallback"] == 1 and s["queue_peak"]["relay1"] == 0


def test_relay_queues_when_fallback_is_down_too_then_tries_store_then_fallback():
    hosts = LAB_HOSTS.replace('relay1:   {route: "[store]"}', 'relay1: {route: "[store]", smtp_fallback_relay: [fallback]}')
    scn = make(one_message_at(100) + "outages:\n  - {host: store, from: 0, to: 2h}\n  - {host: fallback, from: 0, to: 1000}\n",
               hosts=hosts, duration="4h")
    trace, s = run_both(scn)
    assert attempts_at(trace, "relay1") == [100, 600, 1200]  # 1200: store still down, fallback back up
    # the fallback restarted at 1000, so its scans run at 1000 + 300k; its own clock starts at 1200:
    # 1200 -> eligible 1500 -> 1600 -> 2000 -> 2200 -> 3200 -> 3400 -> 5600 -> 5800 -> (cap) 9800 -> 10000
    assert attempts_at(trace, "fallback") == [1200, 1600, 2200, 3400, 5800, 10000]
    assert trace.outcomes[0] == ("delivered", 10000, "store")
    assert s["queue_peak"]["relay1"] == 1 and s["queue_peak"]["fallback"] == 1


def test_backup_mx_with_mx_route_waits_for_the_primary_and_never_falls_back():
    hosts = LAB_HOSTS.replace('relay2:   {route: "[store]"}', 'relay2: {route: mx, smtp_fallback_relay: [fallback]}')
    scn = make(one_message_at(100) + "outages:\n  - {host: relay1, from: 0, to: 1h}\n", hosts=hosts, duration="3h")
    trace, s = run_both(scn)
    # the sender hands it to MX 20; relay2 is an MX itself: only MX 10 remains, no fallback
    assert trace.attempts[0][:2] == [("sender", 100), ("relay2", 100)]
    assert {h for h, _ in trace.attempts[0]} == {"sender", "relay2", "relay1"}
    assert attempts_at(trace, "relay2") == [100, 600, 1200, 2400, 4800]
    assert trace.outcomes[0] == ("delivered", 4800, "store")
    assert s["accepted_by"]["fallback"] == 0 and s["accepted_by"]["relay1"] == 1


def test_primary_mx_with_mx_route_bounces_loops_back_to_myself():
    hosts = LAB_HOSTS.replace('relay1:   {route: "[store]"}', "relay1: {route: mx}")
    trace, s = run_both(make(one_message_at(100), hosts=hosts, duration="1h"))
    assert trace.outcomes[0] == ("bounced", 100, "relay1")


def test_sender_falls_back_when_no_mx_answers():
    scn = parse_scenario("""
duration: 1h
domains: {lab.example: {mx: ["10 relay1", "20 relay2"]}}
hosts:
  sender: {route: mx, smtp_fallback_relay: [fallback]}
  relay1: {route: "[store]"}
  relay2: {route: "[store]"}
  fallback: {route: "[store]"}
  store: {route: local}
traffic: [{from: sender, to: lab.example, messages: 1, start: 0, end: 200}]
outages: [{host: relay1, from: 0}, {host: relay2, from: 0}]
""", "fb.yml")
    trace, s = run_both(scn)
    assert trace.outcomes[0] == ("delivered", 100, "store")
    assert s["accepted_by"]["fallback"] == 1 and s["delay_s"]["max"] == 0.0


@pytest.mark.parametrize("mx, fallback, expect", [
    ('["0 ."]', "[fallback]", ("bounced", 100, "sender")),   # null MX: no fallback either
    ("[]", "[fallback]", ("delivered", 100, "store")),       # not found: fallback relay
    ("[]", "[]", ("bounced", 100, "sender")),                 # not found, no fallback: bounce
])
def test_null_mx_and_not_found(mx, fallback, expect):
    scn = parse_scenario(f"""
duration: 1h
domains: {{other.example: {{mx: {mx}}}}}
hosts:
  sender: {{route: mx, smtp_fallback_relay: {fallback}}}
  fallback: {{route: "[store]"}}
  store: {{route: local}}
traffic: [{{from: sender, to: other.example, messages: 1, start: 0, end: 200}}]
""", "nx.yml")
    trace, _ = run_both(scn)
    assert trace.outcomes[0] == expect


def test_implicit_mx_delivers_to_the_domain_host():
    scn = parse_scenario("""
duration: 1h
domains: {store.example: {mx: []}}
hosts:
  sender: {route: mx}
  store.example: {route: local}
traffic: [{from: sender, to: store.example, messages: 5}]
""", "implicit.yml")
    _, s = run_both(scn)
    assert s["delivered"] == 5 and s["accepted_by"]["store.example"] == 5


def test_restart_scans_at_once_then_on_a_new_grid():
    # relay1 holds the message (store down until 2000); relay1 itself is down 1000-1500.
    scn = make(one_message_at(100) + "outages:\n  - {host: store, from: 0, to: 2000}\n  - {host: relay1, from: 1000, to: 1500}\n",
               duration="2h")
    trace, _ = run_both(scn)
    # 100 -> 600 -> (eligible 1100, but down) restart scan at 1500 -> eligible 2900 -> scan 1500+5*300
    assert attempts_at(trace, "relay1") == [100, 600, 1500, 3000]
    assert trace.outcomes[0] == ("delivered", 3000, "store")


def test_mail_still_queued_at_the_end_is_counted():
    scn = make("traffic:\n  - {from: sender, to: lab.example, messages: 10, start: 0, end: 1h}\n"
               "outages:\n  - {host: store, from: 30m}\n", duration="2h")
    _, s = run_both(scn)
    assert (s["delivered"], s["bounced"], s["in_queue_at_end"]) == (5, 0, 5)
    assert s["queue_peak"]["relay1"] == 5


def test_equal_preferences_spread_load_and_sendmail_does_not():
    body = "traffic:\n  - {from: sender, to: lab.example, messages: 4000, start: 0, end: 4h, arrivals: poisson}\n"
    scn = make(body, mx='["10 relay1", "10 relay2"]', duration="4h")
    _, s = run_both(scn)
    share = s["accepted_by"]["relay1"] / 4000
    assert abs(share - 0.5) < 0.035, share  # binomial sd 0.008
    assert s["accepted_by"]["relay1"] + s["accepted_by"]["relay2"] == 4000
    # sendmail's mxrand order is fixed per instance: one relay takes everything
    sm = parse_scenario("""
duration: 4h
domains: {lab.example: {mx: ["10 relay1", "10 relay2"]}}
hosts:
  sender: {mta: sendmail, route: mx}
  relay1: {route: "[store]"}
  relay2: {route: "[store]"}
  store: {route: local}
traffic: [{from: sender, to: lab.example, messages: 400, start: 0, end: 4h}]
""", "sm.yml")
    _, s2 = run_both(sm)
    assert sorted([s2["accepted_by"]["relay1"], s2["accepted_by"]["relay2"]]) == [0, 400]


def test_equal_preference_with_one_host_down_goes_to_the_other():
    body = "traffic:\n  - {from: sender, to: lab.example, messages: 100, start: 0, end: 2h}\noutages:\n  - {host: relay2, from: 0, to: 1h}\n"
    _, s = run_both(make(body, mx='["10 relay1", "10 relay2", "20 fallback"]', duration="2h"))
    assert s["accepted_by"]["relay1"] >= 50 and s["accepted_by"]["fallback"] == 0


def test_seed_changes_poisson_arrivals_but_not_counts():
    body = "traffic:\n  - {from: sender, to: lab.example, messages: 300, start: 0, end: 5h, arrivals: poisson}\n" \
           "outages:\n  - {host: relay1, from: 1h, to: 2h}\n  - {host: relay2, from: 1h, to: 2h}\n"
    a = summarize(run_fast(make(body)))
    b = summarize(run_fast(make(body).with_seed(99)))
    assert a["messages"] == b["messages"] == 300 and a != b


def test_scaled_scenario_scales_every_time():
    scn = make(one_message_at(100) + "outages:\n  - {host: relay1, from: 0, to: 2h}\n  - {host: relay2, from: 0, to: 2h}\n",
               duration="4h")
    small = scn.scaled(0.01)
    assert small.duration_s == pytest.approx(144) and small.outages[0].end_s == pytest.approx(72)
    assert small.hosts["sender"].policy.scan_interval_s == pytest.approx(3)
    assert small.hosts["sender"].policy.scan_slack_s == 1.0  # a property of Postfix, not scaled
    trace, _ = run_both(small)
    assert trace.outcomes[0][0] == "delivered"


def test_timeline_next_attempt_matches_enumerated_scans():
    scn = make(one_message_at(100) + "outages:\n  - {host: sender, from: 1000, to: 1234.5}\n"
               "  - {host: sender, from: 5000, to: 6000}\n", duration="3h")
    tl = Timeline(scn)
    scans = sorted({0.0 + k * 300 for k in range(0, 4) if k * 300 < 1000} | {1234.5 + k * 300 for k in range(13) if 1234.5 + k * 300 < 5000}
                   | {6000.0 + k * 300 for k in range(20)})
    for after in (0, 50, 300, 999, 1000, 1234.5, 4999, 5500, 7000):
        for eligible in (after, after + 1, after + 299, after + 300, after + 301, after + 4000):
            want = min(s for s in scans if s > after and s + 1 >= eligible)
            assert tl.next_attempt("sender", after, eligible, 300, 1) == want, (after, eligible)
    assert tl.first_up_at_or_after("sender", 1100) == 1234.5
    down_forever = make(one_message_at(100) + "outages:\n  - {host: sender, from: 1000}\n", duration="3h")
    assert Timeline(down_forever).next_attempt("sender", 900, 1200, 300, 1) == math.inf


def test_message_ids_are_per_stream():
    scn = make("traffic:\n  - {from: sender, to: lab.example, messages: 2}\n  - {from: sender, to: lab.example, messages: 1}\n",
               duration="1h")
    trace, _ = run_both(scn)
    assert set(trace.outcomes) == {0, 1, MSG_ID_STRIDE}
