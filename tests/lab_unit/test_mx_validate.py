"""The pure parts of `mx validate`: lab planning (shape checks, whole-second timers shared with the
model, fault schedule), maillog parsing, the lab summary and the model-vs-lab comparison."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.errors import UserError
from hacluster_lab.mx.labcount import compare, lab_summary, parse_maillog
from hacluster_lab.mx.labplan import FaultStep, lab_policy, parse_scale, plan_run, whole_seconds
from hacluster_lab.mx.labrun import block_table, element_commands
from hacluster.mx.scenario import Policy, example_scenarios, load_scenario, parse_scenario
from hacluster_lab.mx.validate import render

MX = [(10, "relay1"), (20, "relay2")]
IPS = {"client": "203.0.113.10", "relay1": "192.0.2.11", "relay2": "192.0.2.12", "fallback": "192.0.2.13",
       "store1": "198.51.100.11"}


def plan(name: str, scale=None):
    return plan_run(load_scenario(example_scenarios()[name]), "lab.example", MX, IPS, scale)


# --------------------------------------------------------------------------- planning


def test_scale_parsing_and_whole_seconds():
    assert parse_scale("1/300") == Fraction(1, 300) and parse_scale(0.01) == Fraction(1, 100) and parse_scale(1) == 1
    for bad in ("0", "-1/300", "2", "x", True):
        with pytest.raises(ValueError):
            parse_scale(bad)
    assert whole_seconds(13.33, 1) == 13 and whole_seconds(0.4, 1) == 1 and whole_seconds(0.4, 0) == 0
    assert whole_seconds(2.5, 1) == 3
    p = lab_policy(Policy(), Fraction(1, 300))  # Postfix defaults
    assert (p.scan_interval_s, p.min_backoff_s, p.max_backoff_s, p.lifetime_s) == (1, 1, 13, 1440)
    assert p.scan_slack_s == 1.0  # the program's 1 s slack is not scaled


def test_model_runs_exactly_the_lab_timers():
    p = plan("lifetime-bounce")
    assert p.scale == pytest.approx(1 / 300) and p.duration_s == pytest.approx(33) and p.outage == "freeze"
    relay = p.params["relay1"]
    assert relay["maximal_queue_lifetime"] == "6s" == relay["bounce_queue_lifetime"]
    assert relay["maximal_backoff_time"] == "13s" and relay["smtp_fallback_relay"] == ""
    assert p.scenario.hosts["relay1"].policy.max_backoff_s == 13.0  # not 13.333: what Postfix runs
    assert p.scenario.hosts["relay1"].policy.lifetime_s == 6.0
    assert p.params["client"]["sender_canonical_maps"] == "static:alice@lab.example"
    assert [(s.count, s.first_s, s.step_s) for s in p.streams] == [(24, 0.25, 0.5), (24, pytest.approx(18.25), pytest.approx(0.5))]
    assert p.faults == (FaultStep(6.0, "store", "down"), FaultStep(24.0, "store", "up"))
    fb = plan("store-down-fallback")
    assert fb.params["relay2"]["smtp_fallback_relay"] == "[192.0.2.13]:25"
    assert plan("relay1-down").outage == "power-off"


def test_fault_schedule_order_and_scale_override():
    p = plan("both-relays-down", scale="1/150")
    assert p.duration_s == pytest.approx(60)
    assert p.params["client"]["queue_run_delay"] == "2s" and "sender" not in p.params
    assert [(f.at_s, f.host, f.action) for f in p.faults] == [
        (12.0, "relay1", "down"), (12.0, "relay2", "down"), (36.0, "relay1", "up"), (36.0, "relay2", "up")]


GOOD = Path(example_scenarios()["relay1-down"]).read_text()


def test_shape_problems_name_file_line_field(tmp_path):
    bad = tmp_path / "bad.yml"
    text = (GOOD.replace('"10 relay1", "20 relay2"', '"10 relay2", "20 relay1"')
            .replace("arrivals: even", "arrivals: poisson")
            .replace("outage: power-off", "outage: unplug, colour: red"))
    bad.write_text(text)
    with pytest.raises(UserError) as ei:
        plan_run(load_scenario(bad), "lab.example", MX, IPS)
    msg = str(ei.value)
    assert f"{bad}:12: domains.lab.example.mx: must match the lab's DNS" in msg
    assert "traffic[0].arrivals: the lab paces submissions evenly" in msg
    assert "lab.outage: must be one of freeze, power-off" in msg and "lab.colour: unknown key" in msg
    bad.write_text(GOOD.replace('relay2:   {mta: postfix, route: "[store]", smtp_fallback_relay: [fallback]}',
                                'relay2:   {mta: sendmail, route: mx}'))
    with pytest.raises(UserError) as ei:
        plan_run(load_scenario(bad), "lab.example", MX, IPS)
    assert "hosts.relay2.mta: the lab runs Postfix everywhere" in str(ei.value)
    assert 'hosts.relay2.route: must be "[store]" in the lab' in str(ei.value)
    with pytest.raises(UserError, match="--scale: must be > 0"):
        plan_run(load_scenario(example_scenarios()["relay1-down"]), "lab.example", MX, IPS, scale="0")


def test_too_fast_traffic_and_foreign_hosts_refused():
    s = parse_scenario(GOOD.replace("messages: 33", "messages: 3000"), "x.yml")
    with pytest.raises(UserError, match=r"traffic\[0\]: .* messages/s at scale 1/300"):
        plan_run(s, "lab.example", MX, IPS)
    s = parse_scenario(GOOD.replace("  store:    {route: local}", "  store:    {route: local}\n  other: {route: local}"), "x.yml")
    with pytest.raises(UserError, match="hosts: the lab runs exactly sender, relay1"):
        plan_run(s, "lab.example", MX, IPS)


def test_cli_input_errors_exit_2_before_any_lab(capsys, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(GOOD.replace("arrivals: even", "arrivals: poisson"))
    rc = main(["mx", "validate", "--scenario", str(bad), "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert rc == 2 and "traffic[0].arrivals" in err and "Traceback" not in err
    assert not (tmp_path / "state").exists()


def test_block_table_and_element_commands():
    text = block_table()
    assert text.startswith("table inet hm_mxv\ndelete table inet hm_mxv\n")
    assert "set down4 { type ipv4_addr; }" in text and "set down6 { type ipv6_addr; }" in text
    assert "ip daddr @down4 meta l4proto tcp reject with tcp reset" in text
    assert "ip6 daddr @down6 reject with icmpx type host-unreachable" in text
    assert "ip saddr @down4 tcp dport 25 reject with tcp reset" in text
    cmds = element_commands("add", ["192.0.2.11", "fd00:2::11", "198.51.100.20"])
    assert cmds == ("add element inet hm_mxv down4 { 192.0.2.11, 198.51.100.20 }\n"
                    "add element inet hm_mxv down6 { fd00:2::11 }\n")
    assert element_commands("delete", []) == ""


def test_plan_scales_the_qmgr_wakeup():
    assert plan("relay1-down").master["relay1"] == {"qmgr/unix/wakeup": "1"}
    assert plan("relay1-down", scale="1/100").master["client"] == {"qmgr/unix/wakeup": "3"}


# --------------------------------------------------------------------------- counting


LOG = """\
Nov 27 03:52:48 relay1 postfix/smtpd[1]: 31A78FDF4B4: client=unknown[203.0.113.10]
Nov 27 03:52:48 relay1 postfix/cleanup[2]: 31A78FDF4B4: message-id=<a@x>
Nov 27 03:52:48 relay1 postfix/qmgr[3]: 31A78FDF4B4: from=<alice@lab.example>, size=2365, nrcpt=1 (queue active)
Nov 27 03:52:49 relay1 postfix/smtp[4]: 31A78FDF4B4: to=<user@lab.example>, relay=none, delay=1, status=deferred (connect to 198.51.100.20[198.51.100.20]:25: Connection refused)
Nov 27 03:52:55 relay1 postfix/qmgr[3]: 31A78FDF4B4: from=<alice@lab.example>, status=expired, returned to sender
Nov 27 03:52:55 relay1 postfix/cleanup[2]: 99999999999: message-id=<ndr@relay1>
Nov 27 03:52:55 relay1 postfix/bounce[5]: 31A78FDF4B4: sender non-delivery notification: 99999999999
Nov 27 03:52:55 relay1 postfix/qmgr[3]: 31A78FDF4B4: removed
Nov 27 03:52:56 relay1 postfix/pickup[6]: 31A78FDF4B4: uid=0 from=<root>
Nov 27 03:52:56 relay1 postfix/cleanup[2]: 31A78FDF4B4: message-id=<b@x>
Nov 27 03:52:56 relay1 postfix/smtpd[1]: 0000000000A: client=unknown[203.0.113.10]
Nov 27 03:52:56 relay1 postfix/cleanup[2]: 0000000000A: message-id=<c@x>
Nov 27 03:52:57 relay1 postfix/smtp[4]: 0000000000A: to=<user@lab.example>, status=bounced (host said 550)
Nov 27 03:52:57 relay1 postfix/smtpd[1]: 0000000000B: client=unknown[203.0.113.10]
Nov 27 03:52:57 relay1 postfix/cleanup[2]: 0000000000B: message-id=<other@y>
garbage line
"""


def test_parse_maillog_follows_queue_ids_and_their_reuse():
    f = parse_maillog(LOG.splitlines(), {"<a@x>", "<b@x>", "<c@x>"})
    assert f.accepted == {"<a@x>", "<c@x>"}  # b@x came by pickup (queue id reused after `removed`)
    assert f.bounced == {"<a@x>", "<c@x>"} and f.deferred_attempts == 1


def test_lab_summary_counts():
    r = lab_summary(5, {"<a>": 0.0, "<b>": 2.0, "<c>": 4.0}, {"<d>", "<a>"}, 1,
                    {"relay1": 5, "sender": 0}, {"sender": 3})
    assert r["delivered"] == 3 and r["bounced"] == 1 and r["in_queue_at_end"] == 1  # <a> delivered wins
    assert r["delay_s"] == {"p50": 2.0, "p95": 4.0, "max": 4.0}
    assert list(r) == ["messages", "delivered", "bounced", "in_queue_at_end", "delay_s", "accepted_by", "queue_peak"]
    assert lab_summary(0, {}, set(), 0, {}, {})["delay_s"] == {"p50": None, "p95": None, "max": None}


def _res(delivered=40, bounced=0, acc=None, messages=40):
    return {"messages": messages, "delivered": delivered, "bounced": bounced, "in_queue_at_end": messages - delivered - bounced,
            "delay_s": {"p50": 0.0, "p95": 1.0, "max": 2.0},
            "accepted_by": acc or {"relay1": 20, "relay2": 20, "fallback": 0, "store": 40, "sender": 0},
            "queue_peak": {"sender": 1}}


def test_compare_targets_and_tolerance():
    model = _res()
    ok = compare(model, _res(acc={"relay1": 21, "relay2": 19, "fallback": 0, "store": 40, "sender": 0}))
    assert ok["ok"] and ok["failures"] == [] and all(ok["targets"].values())
    assert ok["difference"]["accepted_by"]["relay1"] == {"model": 20, "lab": 21, "diff": 1, "allowed": 1.0, "ok": True}
    off = compare(model, _res(acc={"relay1": 22, "relay2": 18, "fallback": 0, "store": 40, "sender": 0}))
    assert not off["ok"] and not off["targets"]["accepted_by_within_5pct"]
    assert "accepted_by.relay1: lab 22 vs model 20 (allowed +-1)" in off["failures"]
    zero = compare(model, _res(acc={"relay1": 20, "relay2": 20, "fallback": 1, "store": 40, "sender": 0}))
    assert zero["failures"] == ["accepted_by.fallback: lab 1 vs model 0 (allowed +-0)"]  # 5 % of 0 is 0
    counts = compare(_res(delivered=30, bounced=10), _res(delivered=31, bounced=9))
    assert counts["failures"][:2] == ["delivered: lab 31 != model 30", "bounced: lab 9 != model 10"]
    assert counts["difference"]["delivered"] == 1 and counts["difference"]["in_queue_at_end"] == 0
    short = compare(model, _res(messages=39, delivered=39))
    assert not short["targets"]["all_submitted"] and short["failures"][0].startswith("messages: lab submitted 39")
    none = dict(_res(), delay_s={"p50": None, "p95": None, "max": None})
    assert compare(model, none)["difference"]["delay_s"] == {"p50": None, "p95": None, "max": None}


def test_render_table():
    model = _res()
    r = {"scenario": "s", "source": "s.yml", "scale_text": "1/300", "lab_seconds": 30.0, "model": model,
         "lab": _res(delivered=39), **compare(model, _res(delivered=39)),
         "lab_detail": {"ndr_received": 0, "faults": [{"late_s": 0.01}], "arrival_lag_s": {"min": 0, "max": 0.01},
                        "wall_s": 40.0}}
    text = render(r)
    assert "delivered                40       39     -1" in text and "delivered_equal MISSED" in text
    assert "relay1                 20       20     +0  yes" in text
