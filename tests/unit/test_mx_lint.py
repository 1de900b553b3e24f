"""`mx lint`: one zone snippet per finding code, the spec checks, and the CLI's exit codes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.errors import UserError
from hacluster.mx.lint import CODES, compare_zone_spec, lint_spec, lint_zone, parse_zone, zone_fragment
from hacluster.spec import default_spec_path, load_spec, parse_spec

HEAD = "$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n"
GOOD = "@ IN MX 10 mx1\n@ IN MX 20 mx2\nmx1 IN A 192.0.2.11\nmx2 IN AAAA fd00:2::12\n"


def codes(text: str, origin: str = "example.org") -> list[tuple[str, str, str]]:
    return [(f.severity, f.code, f.owner) for f in lint_zone(parse_zone(HEAD + text, origin))]


@pytest.mark.parametrize(
    "zone, expected",
    [
        (GOOD, []),
        # RFC 2181 §10.3: MX to an alias
        (GOOD + "@ IN MX 30 alias\nalias IN CNAME mx1\n", [("error", "MX_TARGET_CNAME", "example.org.")]),
        # in-zone target without A/AAAA
        (GOOD + "@ IN MX 30 ghost\n", [("error", "MX_TARGET_NO_ADDRESS", "example.org.")]),
        (GOOD + "@ IN MX 30 txtonly\ntxtonly IN TXT hi\n", [("error", "MX_TARGET_NO_ADDRESS", "example.org.")]),
        # IP literals: with a trailing dot, without (made relative), in brackets, IPv6
        (GOOD + "@ IN MX 30 192.0.2.13.\n", [("error", "MX_TARGET_IP_LITERAL", "example.org.")]),
        (GOOD + "@ IN MX 30 192.0.2.13\n", [("error", "MX_TARGET_IP_LITERAL", "example.org.")]),
        (GOOD + "@ IN MX 30 [192.0.2.13]\n", [("error", "MX_TARGET_IP_LITERAL", "example.org.")]),
        (GOOD + "@ IN MX 30 2001:db8::1\n", [("error", "MX_TARGET_IP_LITERAL", "example.org.")]),
        # wildcard MX (with two targets so SINGLE_MX stays quiet)
        (GOOD + "* IN MX 10 mx1\n* IN MX 20 mx2\n", [("warning", "WILDCARD_MX", "*.example.org.")]),
        # a single MX
        ("@ IN MX 10 mx1\nmx1 IN A 192.0.2.11\n", [("warning", "SINGLE_MX", "example.org.")]),
        # RFC 7505: null MX must stand alone, with preference 0
        ("@ IN MX 0 .\n@ IN MX 10 mx1\nmx1 IN A 192.0.2.11\n", [("error", "NULL_MX_MIXED", "example.org.")]),
        ("@ IN MX 0 .\n", []),
        ("@ IN MX 5 .\n", [("warning", "NULL_MX_PREFERENCE", "example.org.")]),
        # out of zone target: the MX answer cannot carry its address
        ("@ IN MX 10 mx1\n@ IN MX 20 mx.other.net.\nmx1 IN A 192.0.2.11\n",
         [("warning", "MX_TARGET_OUT_OF_ZONE_NO_GLUE", "example.org.")]),
        # delegated child zone: without glue a warning, with glue fine
        (GOOD + "@ IN MX 30 mx.sub\nsub IN NS ns.sub\nns.sub IN A 192.0.2.99\n",
         [("warning", "MX_TARGET_OUT_OF_ZONE_NO_GLUE", "example.org.")]),
        (GOOD + "@ IN MX 30 mx.sub\nsub IN NS ns.sub\nns.sub IN A 192.0.2.99\nmx.sub IN A 192.0.2.98\n", []),
        # equal preferences: load spreading, not failover
        ("@ IN MX 10 mx1\n@ IN MX 10 mx2\nmx1 IN A 192.0.2.11\nmx2 IN A 192.0.2.12\n",
         [("info", "EQUAL_PREFERENCE", "example.org.")]),
        # no MX at the mail domain: implicit MX when it has an address, else no route at all
        ("@ IN A 192.0.2.10\n", [("info", "IMPLICIT_MX", "example.org.")]),
        ("www IN A 192.0.2.10\n", [("warning", "NO_MAIL_ROUTE", "example.org.")]),
        # a wildcard A answers for a target that has no node of its own
        (GOOD + "@ IN MX 30 anything\n* IN A 192.0.2.77\n", []),
    ],
)
def test_lint_codes(zone, expected):
    assert codes(zone) == expected


def test_every_code_has_a_severity_and_a_test_table_entry():
    table = Path(__file__).read_text()
    for code, (severity, meaning) in CODES.items():
        assert severity in ("error", "warning", "info") and meaning
        assert code in table, f"{code} has no test"


def test_findings_sorted_errors_first_and_messages_explain():
    found = lint_zone(parse_zone(HEAD + "@ IN MX 10 mx1\n@ IN MX 10 alias\nalias IN CNAME mx1\nmx1 IN A 192.0.2.1\n", "example.org"))
    assert [f.code for f in found] == ["MX_TARGET_CNAME", "EQUAL_PREFERENCE"]
    assert "RFC 2181" in found[0].message and "alias.example.org." in found[0].message


def test_zone_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.zone"
    p.write_text(HEAD + "@ IN MX 10\n")
    with pytest.raises(UserError) as err:
        from hacluster.mx.lint import load_zone

        load_zone(p, "example.org")
    assert str(err.value).startswith(f"{p}:5: ")


# --------------------------------------------------------------------------- the spec

SPEC = """
cluster: c1
mail: {{domain: mail.example}}
zookeeper: {{hosts: ["127.0.0.1:2181"]}}
roles:
  store: {{tier: store}}
nodes:
  - {{name: relay1, tier: relay, interface: eth0, addresses: [192.0.2.11/24, "fd00:2::11/64"], mx_preference: 10}}
  - {{name: relay2, tier: relay, interface: eth0, addresses: [192.0.2.12/24]{relay2}}}
  - {{name: store1, tier: store, interface: eth0, addresses: [198.51.100.11/24]{store1}}}
"""


def spec(relay2: str = ", mx_preference: 20", store1: str = ""):
    return parse_spec(SPEC.format(relay2=relay2, store1=store1), "c1.yml")


def test_zone_fragment_from_spec():
    text = zone_fragment(spec())
    lines = [ln.split() for ln in text.splitlines() if not ln.startswith(";")]
    assert lines == [
        ["mail.example.", "IN", "MX", "10", "relay1.mail.example."],
        ["mail.example.", "IN", "MX", "20", "relay2.mail.example."],
        ["relay1.mail.example.", "IN", "A", "192.0.2.11"],
        ["relay1.mail.example.", "IN", "AAAA", "fd00:2::11"],
        ["relay2.mail.example.", "IN", "A", "192.0.2.12"],
    ]
    assert lint_spec(spec()) == []


@pytest.mark.parametrize("relay2, store1, expected", [
    ("", "", [("warning", "SINGLE_MX", "mail.example."), ("warning", "RELAY_NOT_MX", "relay2.mail.example.")]),
    (", mx_preference: 20", ", mx_preference: 30", [("warning", "MX_NOT_RELAY", "store1.mail.example.")]),
    (", mx_preference: 10", "", [("info", "EQUAL_PREFERENCE", "mail.example.")]),
])
def test_spec_lint(relay2, store1, expected):
    assert [(f.severity, f.code, f.owner) for f in lint_spec(spec(relay2, store1))] == expected


def test_spec_without_mx_has_no_mail_route():
    found = lint_spec(dataclasses.replace(spec(), nodes={}))
    assert [f.code for f in found] == ["NO_MAIL_ROUTE"]


def test_zone_must_match_spec():
    zone = parse_zone(HEAD + "@ IN MX 10 relay1\n@ IN MX 30 relay2\nrelay1 IN A 192.0.2.11\nrelay2 IN A 192.0.2.99\n",
                      "mail.example")
    found = compare_zone_spec(zone, spec())
    assert [(f.code, f.owner) for f in found] == [
        ("ZONE_SPEC_MISMATCH", "mail.example."),
        ("ZONE_SPEC_MISMATCH", "relay1.mail.example."),
        ("ZONE_SPEC_MISMATCH", "relay2.mail.example."),
    ]
    assert "missing MX 20 relay2.mail.example." in found[0].message and "unexpected MX 30" in found[0].message
    good = parse_zone(HEAD + zone_fragment(spec()), "mail.example")
    assert compare_zone_spec(good, spec()) == []


# --------------------------------------------------------------------------- the CLI


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def zones(tmp_path):
    def write(name: str, text: str) -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return write


def test_cli_clean_zone_exits_0(capsys, zones):
    rc, out, _ = run(capsys, "mx", "lint", "--zone", zones("ok.zone", HEAD + GOOD), "--origin", "example.org")
    assert rc == 0 and "0 error(s), 0 warning(s), 0 info" in out


def test_cli_warnings_only_exit_0_errors_exit_1(capsys, zones):
    rc, out, _ = run(capsys, "mx", "lint", "--zone", zones("w.zone", HEAD + "@ IN MX 10 mx1\nmx1 IN A 192.0.2.1\n"),
                     "--origin", "example.org")
    assert rc == 0 and "SINGLE_MX" in out
    rc, out, _ = run(capsys, "mx", "lint", "--json", "--zone", zones("e.zone", HEAD + GOOD + "@ IN MX 5 192.0.2.1.\n"),
                     "--origin", "example.org")
    assert rc == 1
    data = json.loads(out)
    assert list(data) == ["findings"]
    assert data["findings"] == [{"severity": "error", "code": "MX_TARGET_IP_LITERAL", "owner": "example.org.",
                                 "message": data["findings"][0]["message"]}]


def test_cli_origin_from_file(capsys, zones):
    rc, out, _ = run(capsys, "mx", "lint", "--zone", zones("o.zone", "$ORIGIN example.org.\n" + HEAD + GOOD))
    assert rc == 0
    rc, _, err = run(capsys, "mx", "lint", "--zone", zones("n.zone", HEAD + GOOD))
    assert rc == 2 and "no $ORIGIN" in err and "--origin" in err
    # a file with no records names no origin either (dnspython then gives a zone whose origin is None)
    rc, out, err = run(capsys, "mx", "lint", "--zone", zones("empty.zone", ""))
    assert (rc, out) == (2, "") and "no $ORIGIN" in err and "--origin" in err


@pytest.mark.parametrize("argv, message", [
    (["mx", "lint"], "give --zone FILE"),
    (["mx", "lint", "--zone", "/nonexistent/z.zone", "--origin", "example.org"], "/nonexistent/z.zone: cannot read"),
    (["mx", "lint", "--spec", "/nonexistent/spec.yml"], "/nonexistent/spec.yml (given on the command line) does not exist"),
    (["mx", "zone"], "the spec is -c/--config FILE, else $HACLUSTER_CONFIG, else"),
])
def test_cli_usage_errors_exit_2(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and message in err and "Traceback" not in err + out


def test_cli_syntax_error_names_file_and_line(capsys, zones):
    path = zones("bad.zone", HEAD + GOOD + "mx3 IN A not-an-address\n")
    rc, _, err = run(capsys, "mx", "lint", "--zone", path, "--origin", "example.org")
    assert rc == 2 and f"{path}:9:" in err and "Traceback" not in err


def test_cli_spec_and_zone(capsys, zones, tmp_path):
    spec_path = tmp_path / "c1.yml"
    spec_path.write_text(SPEC.format(relay2=", mx_preference: 20", store1=""))
    rc, out, _ = run(capsys, "mx", "zone", "--spec", str(spec_path))
    assert rc == 0 and "mail.example.        IN MX   10 relay1.mail.example." in out
    rc, _, _ = run(capsys, "mx", "lint", "--spec", str(spec_path), "--zone", zones("m.zone", HEAD + out))
    assert rc == 0  # origin taken from the spec's mail domain
    rc, out2, _ = run(capsys, "mx", "lint", "--spec", str(spec_path), "--zone", zones("x.zone", HEAD + GOOD),
                      "--origin", "mail.example")
    assert rc == 1 and "ZONE_SPEC_MISMATCH" in out2


def test_cli_spec_from_environment(capsys, monkeypatch):
    monkeypatch.setenv("HACLUSTER_CONFIG", str(default_spec_path()))
    rc, out, _ = run(capsys, "mx", "zone")
    assert rc == 0 and "relay1." + load_spec(None).mail.domain in out
    rc, out, _ = run(capsys, "mx", "lint", "--json")
    assert rc == 0 and json.loads(out) == {"findings": []}
