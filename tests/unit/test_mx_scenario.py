"""Scenario files: FILE:LINE: field errors (never a traceback), the shipped examples, and the
`mx simulate` / `bench mx` commands."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.mx.scenario import (ScenarioError, example_scenarios, load_scenario, parse_duration, parse_rate,
                                   parse_scenario)

GOOD = """\
name: t
duration: 6h
domains:
  lab.example:
    mx: ["10 relay1", "20 relay2"]
hosts:
  sender: {mta: postfix, route: mx}
  relay1: {route: "[store]", smtp_fallback_relay: [fallback]}
  relay2: {mta: sendmail, route: "[store]", queue_interval: 10m, FallbackMXhost: fallback}
  fallback: {route: "[store]", maximal_queue_lifetime: 1d}
  store: {route: local}
traffic:
  - {from: sender, to: lab.example, rate: 600/h, start: 0, end: 2h}
outages:
  - {host: relay1, from: 1h, to: 1h30m}
  - {host: store, from: 5h}
"""


def test_good_scenario_parses():
    scn = parse_scenario(GOOD, "good.yml")
    assert scn.messages == 1200
    assert scn.hosts["relay1"].policy.fallback == ("fallback",)
    assert scn.hosts["relay2"].policy.mta == "sendmail" and scn.hosts["relay2"].policy.scan_interval_s == 600
    assert scn.hosts["fallback"].policy.lifetime_s == 86400
    assert scn.hosts["relay1"].relay_to == "store" and scn.hosts["store"].final
    assert scn.outages[1].end_s == math.inf and scn.outages[0].end_s == 5400


@pytest.mark.parametrize("old, new, line, message", [
    ("duration: 6h", "duration: six hours", 2, "duration: must be a duration"),
    ("duration: 6h", "durtion: 6h", 2, "durtion: unknown key"),
    ('"10 relay1"', '"10 relay9"', 4, "domains.lab.example.mx: MX target 'relay9' is not a host"),
    ('"20 relay2"', '"twenty relay2"', 5, 'domains.lab.example.mx[1]: must be "PREFERENCE HOST"'),
    ('"20 relay2"', '"0 ."', 5, "a null MX (\"0 .\") must be the only MX record"),
    ("mta: postfix, route: mx", "mta: exim, route: mx", 7, "hosts.sender.mta: unknown MTA 'exim'"),
    ("route: mx}", "route: smarthost}", 7, 'hosts.sender.route: must be mx, local or "[HOST]"'),
    ('{route: "[store]", smtp', '{route: "[nowhere]", smtp', 8, "hosts.relay1.route: next hop 'nowhere' is not a host"),
    ("[fallback]}", "[fallbak]}", 8, "hosts.relay1.smtp_fallback_relay: fallback 'fallbak' is not a host"),
    ("queue_interval: 10m", "queue_run_delay: 10m", 9, "hosts.relay2.queue_run_delay: unknown key"),
    ("maximal_queue_lifetime: 1d", "maximal_queue_lifetime: forever", 10, "must be a duration"),
    ("from: sender, to", "from: nobody, to", 13, "traffic[0].from: 'nobody' is not a host"),
    ("to: lab.example", "to: elsewhere.example", 13, "traffic[0].to: 'elsewhere.example' is neither a domain nor a host"),
    ("rate: 600/h", "rate: lots", 13, "traffic[0].rate: must be a rate"),
    ("rate: 600/h", "messages: 5, rate: 600/h", 13, "give exactly one of messages"),
    ("end: 2h", "end: 7h", 13, "traffic[0].end: must be <= duration"),
    ("{host: relay1, from: 1h, to: 1h30m}", "{host: relay1, from: 2h, to: 1h}", 15, "outages[0].to: must be after from"),
    ("{host: store, from: 5h}", "{host: stor, from: 5h}", 16, "outages[1].host: 'stor' is not a host"),
    ("  - {host: store, from: 5h}", "  - {host: store}", 16, "outages[1].from: is required"),
    ("  - {host: store, from: 5h}\n", "  - {host: store, from: 5h}\nlab: [1, 2]\n", 17, "lab: must be a mapping"),
])
def test_field_errors_name_file_line_and_field(old, new, line, message):
    assert old in GOOD
    with pytest.raises(ScenarioError) as err:
        parse_scenario(GOOD.replace(old, new, 1), "bad.yml")
    text = str(err.value)
    assert f"bad.yml:{line}: " in text and message in text, text


def test_all_problems_are_reported_at_once():
    text = GOOD.replace("duration: 6h", "duration: x").replace('"10 relay1"', '"10 relay9"')
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "bad.yml")
    assert len(err.value.problems) == 2


@pytest.mark.parametrize("text, message", [
    ("duration: [1\n", "bad.yml:2: (yaml):"),
    ("- a\n- b\n", "bad.yml:1: (top): must be a mapping"),
    ("duration: 1h\nhosts: {a: {}}\ntraffic: [{from: a, to: a, messages: 1}]\n", "bad.yml:1: domains: give exactly one of"),
    ("duration: 1h\ndomains: {}\nhosts: {a: {}}\n", "bad.yml:1: traffic: is required"),
])
def test_structural_errors(text, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "bad.yml")
    assert message in str(err.value)


def test_spec_provides_the_mx_records(tmp_path):
    text = GOOD.replace('domains:\n  lab.example:\n    mx: ["10 relay1", "20 relay2"]\n', "spec: default\n")
    scn = parse_scenario(text, str(tmp_path / "s.yml"))
    assert [(r.preference, r.host) for r in scn.domains["lab.example"].mx] == [(10, "relay1"), (20, "relay2")]
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text.replace("spec: default", "spec: missing.yml"), str(tmp_path / "s.yml"))
    assert "s.yml:3: spec: cannot use cluster spec 'missing.yml'" in str(err.value)
    assert len(err.value.problems) == 1


def test_durations_and_rates():
    assert parse_duration("4h30m") == 16200 and parse_duration(90) == 90 and parse_duration("1w") == 604800
    assert parse_rate("600/h") == pytest.approx(600 / 3600) and parse_rate(2) == 2
    for bad in ("3x", "-1", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_shipped_scenarios_load_and_behave_as_described():
    shipped = {name: load_scenario(p) for name, p in example_scenarios().items()}
    assert set(shipped) == {"relay1-down", "both-relays-down", "store-down-fallback", "lifetime-bounce"}
    from hacluster.mx.fast import run_fast
    from hacluster.mx.model import summarize

    r = {name: summarize(run_fast(s)) for name, s in shipped.items()}
    assert r["relay1-down"]["accepted_by"]["relay2"] == 24 and r["relay1-down"]["delay_s"]["max"] == 0
    assert r["both-relays-down"]["queue_peak"]["sender"] == 12 and r["both-relays-down"]["bounced"] == 0
    assert r["store-down-fallback"]["accepted_by"]["fallback"] == 27 and r["store-down-fallback"]["queue_peak"]["relay1"] == 7
    assert r["lifetime-bounce"]["bounced"] == 12 and r["lifetime-bounce"]["delivered"] == 36
    for res in r.values():
        assert res["delivered"] + res["bounced"] + res["in_queue_at_end"] == res["messages"]


# --------------------------------------------------------------------------- the CLI


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


KEYS = ["messages", "delivered", "bounced", "in_queue_at_end", "delay_s", "accepted_by", "queue_peak"]


def test_simulate_json_keys_and_plot(capsys, tmp_path):
    png = tmp_path / "q.png"
    rc, out, err = run(capsys, "mx", "simulate", "--scenario", "store-down-fallback", "--json", "--plot", str(png))
    assert rc == 0, err
    data = json.loads(out)
    assert list(data) == KEYS and list(data["delay_s"]) == ["p50", "p95", "max"]
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width >= 800 and height >= 500


def test_simulate_engines_seed_and_scale(capsys):
    results = []
    for extra in (["--engine", "des"], ["--engine", "fast"]):
        rc, out, _ = run(capsys, "mx", "simulate", "--scenario", "both-relays-down", "--json", "--seed", "5", *extra)
        results.append(json.loads(out))
    assert results[0] == results[1]
    rc, out, _ = run(capsys, "mx", "simulate", "--scenario", "both-relays-down", "--json", "--scale", "0.01")
    assert rc == 0 and json.loads(out)["delay_s"]["max"] < 100
    rc, out, _ = run(capsys, "mx", "simulate", "--scenario", "relay1-down")
    assert rc == 0 and "delivered 33" in out and "relay2" in out


def test_simulate_errors_exit_2_without_traceback(capsys, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(GOOD.replace("duration: 6h", "duration: soon"))
    rc, out, err = run(capsys, "mx", "simulate", "--scenario", str(bad))
    assert rc == 2 and err.startswith(f"{bad}:2: duration: must be a duration") and "Traceback" not in err
    rc, _, err = run(capsys, "mx", "simulate", "--scenario", str(tmp_path / "none.yml"))
    assert rc == 2 and "none.yml: cannot read" in err
    rc, _, err = run(capsys, "mx", "simulate", "--scenario", "relay1-down", "--plot", str(tmp_path / "no/such/dir/p.png"))
    assert rc == 2 and "cannot write plot" in err
    rc, _, err = run(capsys, "mx", "simulate", "--scenario", "relay1-down", "--scale", "0")
    assert rc == 2 and "scale factor must be > 0" in err


def test_docs_list_every_lint_code_and_scenario_key():
    from hacluster.mx.lint import CODES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "mx.md").read_text()
    for code in CODES:
        assert f"`{code}`" in doc, code
    for key in ("queue_run_delay", "minimal_backoff_time", "maximal_backoff_time", "maximal_queue_lifetime",
                "smtp_fallback_relay", "queue_interval", "Timeout.queuereturn", "FallbackMXhost", "arrivals"):
        assert key in doc, key
