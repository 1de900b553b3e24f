"""`hacluster config check`: the embedded lab spec is valid; every kind of problem is reported as
`FILE:LINE: field: what is wrong` on the right line, all problems at once, exit 2, no traceback."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.spec import SpecError, default_spec_path, default_spec_text, load_spec, parse_spec
from hacluster.timing import PROFILES, timing_problems

# line numbers matter below: keep this text's layout as it is
BASE = """\
cluster: mail
mail: {domain: example.org}
zookeeper:
  hosts: [127.0.0.1:2181]
  session_timeout_s: 4
timing:
  profile: default
roles:
  store:
    tier: store
    vip: {address: 198.51.100.20/24, interface: eth0}
    resources:
      - {type: command, name: marker, start: "true", stop: "true"}
nodes:
  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.11/24], priority: 100}
  - {name: store2, tier: store, interface: eth0, addresses: [198.51.100.12/24], priority: 90}
"""


def edit(line: int, new: str, text: str = BASE) -> str:
    """Replace 1-based `line` of text with `new` (which may hold several lines)."""
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], name: str = "cluster.yml") -> tuple[int, str, str]:
    f = tmp_path / name
    f.write_text(text)
    rc = main(["config", "check", str(f)])
    out, err = capsys.readouterr()
    return rc, out, err


def problems(err: str, path: Path) -> list[tuple[int, str, str]]:
    """Parse `FILE:LINE: field: message` lines; every line of the report must have that shape."""
    out = []
    for line in err.splitlines():
        m = re.fullmatch(re.escape(str(path)) + r":(\d+): (\S+): (.+)", line)
        assert m, f"not FILE:LINE: field: message: {line!r}"
        out.append((int(m[1]), m[2], m[3]))
    return out


def test_base_text_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = check(tmp_path, BASE, capsys)
    assert (rc, err) == (0, "") and "ok: cluster mail" in out


def test_embedded_lab_spec_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "-c", str(default_spec_path())]) == 0
    assert main(["config", "check", str(default_spec_path())]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: cluster lab") == 2
    spec = load_spec(None)
    assert {"store", "fallback"} <= set(spec.roles) and spec.timing == PROFILES["default"]
    assert [v.ip for v in spec.roles["store"].vips] == ["198.51.100.20", "fd00:51::20"]
    assert spec.nodes["store1"].priority > spec.nodes["store2"].priority


# (what, line to replace, replacement, expected (line, field, message substring))
CASES = [
    ("unknown top-level key", 2, "mail: {domain: example.org}\ncolour: blue", (3, "colour", "unknown key")),
    ("unknown key in a node", 16, "  - {name: store2, tier: store, interface: eth0, addresses: [198.51.100.12/24], prio: 9}",
     (16, "nodes[1].prio", "unknown key")),
    ("unknown key in a role", 10, "    tier: store\n    vips: []", (11, "roles.store.vips", "unknown key")),
    ("unknown key in zookeeper", 5, "  session_timeout: 4", (5, "zookeeper.session_timeout", "unknown key")),
    ("unknown key in a resource", 13, '      - {type: command, name: marker, start: "true", stop: "true", retries: 3}',
     (13, "roles.store.resources[0].retries", "unknown key")),
    ("unknown timing key", 7, "  profile: default\n  lease: 2", (8, "timing.lease", "unknown key")),
    ("wrong type: int", 15, "  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.11/24], priority: high}",
     (15, "nodes[0].priority", "must be int, got str 'high'")),
    ("wrong type: float", 5, "  session_timeout_s: soon", (5, "zookeeper.session_timeout_s", "must be float")),
    ("wrong type: bool for a name", 1, "cluster: true", (1, "cluster", "must be str, got bool")),
    ("wrong type: list for a mapping", 2, "mail: [example.org]", (2, "mail", "must be a mapping, got a list")),
    ("wrong type: addresses", 15, "  - {name: store1, tier: store, interface: eth0, addresses: 198.51.100.11/24}",
     (15, "nodes[0].addresses", "must be list")),
    ("not an address", 15, "  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.311/24]}",
     (15, "nodes[0].addresses[0]", "not an address")),
    ("unknown tier", 10, "    tier: storage", (10, "roles.store.tier", "unknown tier")),
    ("bad zookeeper host", 4, "  hosts: [127.0.0.1]", (4, "zookeeper.hosts[0]", "HOST:PORT")),
    ("duplicate node names", 16, "  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.12/24]}",
     (16, "nodes[1].name", "duplicate node name 'store1'")),
    ("VIP outside its interface's subnet", 11, "    vip: {address: 203.0.113.20/24, interface: eth0}",
     (11, "roles.store.vip[0].address", "outside the subnet of store1's eth0 (198.51.100.0/24)")),
    ("VIP on another interface", 11, "    vip: {address: 198.51.100.20/24, interface: eth1}",
     (11, "roles.store.vip[0].interface", "not the interface of node store1")),
    ("VIP without prefix", 11, "    vip: {address: 198.51.100.20, interface: eth0}",
     (11, "roles.store.vip.address", "needs a prefix length")),
    ("VIP is a node's address", 11, "    vip: {address: 198.51.100.12/24, interface: eth0}",
     (11, "roles.store.vip[0].address", "fixed address of store2")),
    ("unsafe timing: margin too small", 7, "  profile: default\n  margin_s: 0.1",
     (8, "timing.margin_s", "unsafe: margin_s (0.1) must be >= stop_timeout_s + 2*max_drift*lease_s")),
    ("unsafe timing: stop slower than the margin", 7, "  profile: fast\n  stop_timeout_s: 0.5",
     (7, "timing.margin_s", "unsafe")),
    ("unstable timing: loop too long", 7, "  profile: default\n  loop_s: 1.5",
     (8, "timing.loop_s", "unstable: loop_s + 2*request_timeout_s")),
    ("unknown profile", 7, "  profile: turbo", (7, "timing.profile", "unknown profile")),
    ("lease longer than a record may promise", 7, "  profile: relaxed\n  lease_s: 4000\n  margin_s: 1300",
     (8, "timing.lease_s", "lease_s (4000) must be <= 3600")),
    ("negative timing", 7, "  profile: default\n  lease_s: -1", (8, "timing.lease_s", "must be > 0")),
    ("history_keep below one", 5, "  session_timeout_s: 4\n  history_keep: 0",
     (6, "zookeeper.history_keep", "must be >= 1")),
    ("history_keep not a number", 5, "  session_timeout_s: 4\n  history_keep: all", (6, "zookeeper.history_keep", "must be int")),
    ("heartbeat slower than a minute", 7, "  profile: default\n  heartbeat_s: 90",
     (8, "timing.heartbeat_s", "heartbeat_s (90) must be <= 60")),
    ("heartbeat period zero", 7, "  profile: default\n  heartbeat_s: 0", (8, "timing.heartbeat_s", "must be > 0")),
    ("failsafe not a bool", 2, "mail: {domain: example.org}\nfailsafe: yes please",
     (3, "failsafe", "must be bool, got str")),
    ("failsafe without the API", 2, "mail: {domain: example.org}\nfailsafe: true\napi: {port: 0}",
     (3, "failsafe", "needs the agent API")),
    ("yaml: unclosed bracket", 4, "  hosts: [127.0.0.1:2181", (5, "(yaml)", "expected ',' or ']'")),
    ("yaml: tab indentation", 10, "\ttier: store", (10, "(yaml)", "'\\t'")),
    ("yaml: duplicate key", 10, "    tier: store\n    tier: relay", (11, "(yaml)", 'duplicate key "tier"')),
    ("yaml: bad indentation", 10, "    tier: store\n  x: - 1", (11, "(yaml)", "")),
]


@pytest.mark.parametrize("what,line,new,want", CASES, ids=[c[0] for c in CASES])
def test_each_problem_on_its_line(what: str, line: int, new: str, want: tuple[int, str, str],
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = check(tmp_path, edit(line, new), capsys)
    assert rc == 2, (what, out, err)
    assert "Traceback" not in err + out and out == ""
    got = problems(err, tmp_path / "cluster.yml")
    wl, wf, wm = want
    assert any(l == wl and f == wf and wm in m for l, f, m in got), f"{what}: want {want}, got {got}"


def test_config_check_says_when_failsafe_is_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = check(tmp_path, edit(2, "mail: {domain: example.org}\nfailsafe: true"), capsys)
    assert rc == 0 and out.rstrip().endswith(", failsafe on"), out
    rc, out, _ = check(tmp_path, BASE, capsys)
    assert "failsafe" not in out


def test_failsafe_is_off_unless_asked_for() -> None:
    assert parse_spec(BASE).failsafe is False
    assert parse_spec(edit(2, "mail: {domain: example.org}\nfailsafe: true")).failsafe is True
    assert load_spec().failsafe is False  # the lab keeps today's behaviour


def test_all_problems_at_once_in_line_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BASE
    text = edit(16, "  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.12/24], priority: 90}", text)
    text = edit(15, "  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.11/24], priority: high}", text)
    text = edit(11, "    vip: {address: 203.0.113.20/24, interface: eth0}", text)
    text = edit(7, "  profile: default\n  margin_s: 0.05", text)  # shifts everything below by one
    text = edit(5, "  session_timeout_s: soon", text)
    text = edit(1, "cluster: mail\nbogus: 1", text)  # and again
    rc, out, err = check(tmp_path, text, capsys)
    assert rc == 2
    got = problems(err, tmp_path / "cluster.yml")
    assert [(l, f) for l, f, _ in got] == [
        (2, "bogus"),
        (6, "zookeeper.session_timeout_s"),
        (9, "timing.margin_s"),
        (13, "roles.store.vip[0].address"),
        (17, "nodes[0].priority"),
        (18, "nodes[1].name"),
    ], err


def test_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.yml"
    f.write_text(edit(1, "cluster: Mail"))
    assert main(["config", "check", "--json", str(f)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["problems"] == [f"{f}:1: cluster: must match [a-z][a-z0-9-]* (at most 63 characters)"]
    f.write_text(BASE)
    assert main(["config", "check", "--json", str(f)]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "problems": [], "cluster": "mail"}


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "nope.yml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope.yml'} (given on the command line) does not exist" in err and "Traceback" not in err


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "spec.yml"
    f.write_bytes(b"cluster: \xff\n")
    assert main(["config", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}:1: (encoding): not UTF-8" in err and "Traceback" not in err


@pytest.mark.parametrize("text", [
    "", "just a string\n", "- a\n- b\n", "cluster: [\n", "cluster: x\nnodes: {a: 1}\nroles: 5\n",
    "{{{{", "cluster: a\nzookeeper: {hosts: 5}\nroles: {s: 5}\nnodes: [5, {name: 5}]\n",
    "cluster: a\nzookeeper: {hosts: []}\nroles: {s: {tier: store, vip: [5, {}]}}\nnodes: [{}]\ntiming: 3\napi: []\nlab: {}\n",
    "cluster: a\nzookeeper: {hosts: [a:1]}\nroles: {s: {tier: store, resources: {}}}\nnodes: [{name: a, tier: store, addresses: []}]\n",
    "!!python/object:os.system {}\n",
    "a: &x [*x]\n",
    "nodes: 5\n", "nodes: 1.5\nroles: {s: {tier: store}}\n",  # a scalar where the node list goes (found by test_fuzz_spec)
    "nodes: [{name: []}, {name: {a: 1}}]\n",  # a node name that cannot be a dict key (test_fuzz_spec too)
])
def test_garbage_never_gives_a_traceback(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = check(tmp_path, text, capsys)
    assert rc == 2 and out == "", (out, err)
    assert err and "Traceback" not in err
    problems(err, tmp_path / "cluster.yml")


def test_mutated_lab_specs_only_ever_give_located_problems() -> None:
    """Random edits of lab.yml: either valid, or a SpecError whose every line is FILE:LINE: field: msg."""
    base = default_spec_text().splitlines()
    tokens = ["", "5", "-1", "x", "[]", "{}", "null", "true", "1.5", "[1, 2]", "{a: 1}", "'s'", "1e400",
              "!!binary aGk=", "&a x", "*a", "|", "? x", "- y", "\t", ":", "'", '"', "[", "{", "300.0.0.0/8",
              "fd00::1/64", "192.0.2.99/24", "eth9"]
    rng = random.Random(2)
    located = re.compile(r"t\.yml:\d+: .+: .+")
    for _ in range(1500):
        lines = list(base)
        for _ in range(rng.randint(1, 3)):
            j = rng.randrange(len(lines))
            op = rng.random()
            if op < 0.3:
                del lines[j]
            elif op < 0.7 and ":" in lines[j]:
                lines[j] = lines[j].partition(":")[0] + ": " + rng.choice(tokens)
            elif op < 0.85:
                lines.insert(j, " " * rng.randint(0, 6) + rng.choice(["bogus: 1", "name: x", "- 1", "tier: relay"]))
            else:
                s = lines[j]
                p = rng.randrange(len(s) + 1)
                lines[j] = s[:p] + rng.choice(tokens) + s[p:]
        try:
            parse_spec("\n".join(lines), "t.yml")
        except SpecError as err:
            assert err.problems and all(located.fullmatch(p) for p in err.problems), err.problems


def test_through_the_installed_command(tmp_path: Path) -> None:
    """The real process: exit 2, the problem on stderr, nothing else."""
    f = tmp_path / "c.yml"
    f.write_text(edit(16, "  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.12/24]}"))
    res = subprocess.run([sys.executable, "-m", "hacluster", "config", "check", str(f)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"{f}:16: nodes[1].name: duplicate node name 'store1'\n"


@pytest.mark.parametrize("health,want", [
    ("health: {store: [5]}", (17, "health.store[0]", "must be a mapping, got int")),
    ("health: {store: 5}", (17, "health.store", "must be a list of checks, got int")),
    ("health:\n  store:\n    - {check: smtp}\n    - {check: smtp}", (20, "health.store[1].check", "listed twice")),
])
def test_health_problems_through_the_installed_command(health: str, want: tuple[int, str, str], tmp_path: Path) -> None:
    """A check that is not a mapping once crashed `_read_health` (its local `kind` shadowed the
    imported yamlread.kind: UnboundLocalError, a traceback, exit 1) instead of exit 2 and FILE:LINE."""
    f = tmp_path / "c.yml"
    f.write_text(BASE + health + "\n")
    res = subprocess.run([sys.executable, "-m", "hacluster", "config", "check", str(f)], capture_output=True, text=True,
                         timeout=60)
    assert (res.returncode, res.stdout) == (2, ""), res.stderr
    assert "Traceback" not in res.stderr
    wl, wf, wm = want
    assert any(ln == wl and fld == wf and wm in m for ln, fld, m in problems(res.stderr, f)), res.stderr


def test_every_profile_is_safe() -> None:
    for name, t in PROFILES.items():
        assert timing_problems(t) == [], name
        assert t.holder_validity_s > 0 and t.takeover_bound_s() > t.lease_s


def test_timing_inequality_boundaries() -> None:
    t = PROFILES["default"]
    need = t.stop_timeout_s + 2 * t.max_drift * t.lease_s
    assert timing_problems(t.replace(margin_s=need)) == []
    assert [k for k, _ in timing_problems(t.replace(margin_s=need - 0.001))] == ["margin_s"]
    room = t.lease_s - t.margin_s - 2 * t.request_timeout_s
    no_stall = t.replace(stall_s=0.0)  # (L) alone; a loop that long leaves no room for the stall budget
    assert timing_problems(no_stall.replace(loop_s=room)) == []
    assert [k for k, _ in timing_problems(no_stall.replace(loop_s=room + 0.001))] == ["loop_s"]
    assert [k for k, _ in timing_problems(t.replace(loop_s=room + 0.001))] == ["loop_s"]  # not blamed twice
    # timing.stall_s: the renewal every loop at the most, and a stall of stall_s still behind it
    retry_at = max(t.loop_s, t.request_timeout_s)
    fits = t.lease_s - t.margin_s - retry_at - t.loop_s
    assert timing_problems(t.replace(stall_s=fits - 1e-9)) == []
    assert [k for k, _ in timing_problems(t.replace(stall_s=fits + 0.001))] == ["stall_s"]
    assert [k for k, _ in timing_problems(t.replace(lease_s=1.0))] == ["stall_s"]  # the old lease keeps the stall budget out
    assert timing_problems(t.replace(lease_s=1.0, stall_s=0.0)) == []
    assert [k for k, _ in timing_problems(t.replace(max_drift=0.12, margin_s=0.8, loop_s=0.1))] == ["max_drift"]


def test_heartbeat_period_defaults_to_two_seconds_and_sets_the_stale_threshold() -> None:
    from hacluster.operator.client import heartbeat_stale_s

    for t in PROFILES.values():
        assert t.heartbeat_s == 2.0
    spec = parse_spec(edit(7, "  profile: default\n  heartbeat_s: 5"), "c.yml")
    assert spec.timing.heartbeat_s == 5.0
    # two missed refreshes plus a lease: a live agent refreshing every 5 s is never called silent
    assert heartbeat_stale_s(spec) == spec.timing.heartbeat_stale_s == 2 * 5.0 + spec.timing.lease_s
    assert PROFILES["default"].heartbeat_stale_s == 2 * 2.0 + 2.05 > 2 * PROFILES["default"].heartbeat_s
    assert PROFILES["relaxed"].heartbeat_stale_s == 2 * PROFILES["relaxed"].lease_s  # never below two leases
    # a loop slower than the period (valid before heartbeat_s existed) stays valid: then every loop
    slow = PROFILES["relaxed"].replace(lease_s=10.0, margin_s=1.5, stop_timeout_s=1.0, loop_s=6.0)
    assert timing_problems(slow) == [] and slow.heartbeat_stale_s == 2 * 6.0 + 10.0  # two loops, not two periods


def test_history_keep_defaults_to_a_thousand() -> None:
    assert parse_spec(BASE, "c.yml").zookeeper.history_keep == 1000
    assert parse_spec(edit(5, "  session_timeout_s: 4\n  history_keep: 50"), "c.yml").zookeeper.history_keep == 50
