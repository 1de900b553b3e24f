"""Timing and role digests in the heartbeat (hacluster/config_digest.py): equal specs give equal
digests, a change of timing or of a role changes exactly that digest, and `hacluster status`
names the node that differs from the majority or from the operator's spec (text and --json)."""

from __future__ import annotations

import json

import pytest

from hacluster.config_digest import ConfigDigest, decode, describe, digest_of, majority, mismatches
from hacluster.coord.model import Cluster, Member, decode_member, encode_member
from hacluster.operator.client import _print_status, cluster_status
from hacluster.spec import parse_spec

SPEC = """\
cluster: t
zookeeper: {{hosts: ["127.0.0.1:2181"]}}
timing: {{profile: {profile}}}
roles:
  store:
    tier: store
    resources:
      - {{type: command, name: a, start: "true", stop: "true"}}
      - {{type: command, name: b, start: "true", stop: "{stop}"}}
    run_on_standby: [{standby}]
nodes:
  - {{name: n1, tier: store, interface: lo, addresses: [127.0.0.11/8], priority: {prio}}}
  - {{name: n2, tier: store, interface: lo, addresses: [127.0.0.12/8]}}
  - {{name: n3, tier: store, interface: lo, addresses: [127.0.0.13/8]}}
"""


def spec(profile: str = "default", stop: str = "true", standby: str = "a, b", prio: int = 100):
    return parse_spec(SPEC.format(profile=profile, stop=stop, standby=standby, prio=prio), "c.yml")


DEFAULT, FAST = digest_of(spec()), digest_of(spec("fast"))


def test_same_spec_same_digest_and_each_part_changes_alone() -> None:
    assert digest_of(spec()) == DEFAULT
    assert digest_of(spec(standby="b, a")) == DEFAULT  # a set's order is no change
    assert digest_of(spec(prio=5)) == DEFAULT  # node entries are per node, not shared config
    assert (FAST.timing != DEFAULT.timing, FAST.roles) == (True, DEFAULT.roles)
    assert (FAST.lease_s, FAST.margin_s) == (0.3, 0.1)
    other = digest_of(spec(stop="false"))
    assert (other.timing, other.roles != DEFAULT.roles) == (DEFAULT.timing, True)
    explicit = parse_spec(SPEC.format(profile="default, margin_s: 0.35", stop="true", standby="a", prio=1), "c.yml")
    assert digest_of(explicit).timing != DEFAULT.timing  # an explicit value counts, not just the profile name


def test_heartbeat_period_counts_only_when_set_to_another_value() -> None:
    """A spec without heartbeat_s keeps the digest older agents published (the rolling upgrade that
    brings the setting must not look like a timing change); another period is a difference."""
    import hashlib
    from dataclasses import asdict

    old = {k: v for k, v in asdict(spec().timing).items() if k != "heartbeat_s"}
    assert DEFAULT.timing == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:12]
    slower = parse_spec(SPEC.format(profile="default, heartbeat_s: 5", stop="true", standby="a, b", prio=1), "c.yml")
    assert (digest_of(slower).timing != DEFAULT.timing, digest_of(slower).roles) == (True, DEFAULT.roles)


def test_majority_and_mismatches() -> None:
    assert majority({"n1": DEFAULT, "n2": DEFAULT, "n3": FAST}) == DEFAULT
    assert majority({"n1": DEFAULT, "n2": FAST}) is None  # a tie has no majority
    assert majority({"n1": None}) is None
    assert mismatches({"n1": DEFAULT, "n2": FAST, "n3": None}, DEFAULT) == {"n2": ["timing"], "n3": ["unknown"]}
    assert mismatches({"n1": DEFAULT}, None) == {}
    line = describe("n2", ["timing"], FAST, DEFAULT, "the majority")
    assert line.startswith(f"n2: timing differs from the majority (lease_s 0.3, margin_s 0.1 vs {DEFAULT.lease_s:g}, 0.3")


def test_heartbeat_carries_the_digest_and_older_heartbeats_still_decode() -> None:
    m = Member("n1", "store", 100, True, False, config=FAST)
    back = decode_member("n1", encode_member(m))
    assert back is not None and back.config == FAST
    old = decode_member("n1", b'{"tier": "store", "priority": 100, "healthy": true, "demote": false}')
    assert old is not None and old.config is None
    for bad in ([], {"timing": 1, "roles": "x", "lease_s": 1, "margin_s": 0.3},
                {"timing": "a", "roles": "b", "lease_s": "1", "margin_s": 0.3},
                {"timing": "a", "roles": "b", "lease_s": float("nan"), "margin_s": 0.3}, {"timing": "a"}):
        assert decode(bad) is None, bad


class FakeCoord:
    def __init__(self, c: Cluster) -> None:
        self.c = c

    def snapshot(self, roles, timeout=None) -> Cluster:
        return self.c


def members(**configs: ConfigDigest | None) -> dict[str, Member]:
    return {n: Member(n, "store", 100, True, False, heartbeat_age_s=0.1, config=d) for n, d in configs.items()}


def test_status_names_the_node_whose_timing_differs(capsys: pytest.CaptureFixture[str]) -> None:
    s = spec()
    st = cluster_status(s, FakeCoord(Cluster(members(n1=DEFAULT, n2=DEFAULT, n3=FAST), {}, {}, False)))  # type: ignore[arg-type]
    cfg = json.loads(json.dumps(st))["config"]
    assert cfg["majority"] == DEFAULT.to_json() and cfg["own"] == DEFAULT.to_json()
    assert list(cfg["mismatched"]) == ["n3"]
    assert cfg["mismatched"]["n3"]["majority"] == ["timing"] and cfg["mismatched"]["n3"]["own"] == ["timing"]
    assert st["members"]["n3"]["config"]["lease_s"] == 0.3
    _print_status(st)
    out = capsys.readouterr().out
    assert "CONFIG DIFFERS" in out
    assert f"n3: timing differs from the majority (lease_s 0.3, margin_s 0.1 vs {DEFAULT.lease_s:g}, 0.3" in out
    assert "n3: timing differs from this spec (c.yml)" in out
    assert "n1:" not in out.split("CONFIG DIFFERS between")[1]
    row = next(ln for ln in out.splitlines() if ln.startswith("n3 "))
    assert row.endswith("CONFIG DIFFERS (timing)"), row


def test_status_against_the_operators_own_spec_and_without_majority(capsys: pytest.CaptureFixture[str]) -> None:
    # every agent runs fast, the operator's file says default: all differ from "own", none from the majority
    st = cluster_status(spec(), FakeCoord(Cluster(members(n1=FAST, n2=FAST), {}, {}, False)))  # type: ignore[arg-type]
    assert {n: d["own"] for n, d in st["config"]["mismatched"].items()} == {"n1": ["timing"], "n2": ["timing"]}
    assert all(d["majority"] == [] for d in st["config"]["mismatched"].values())
    # a tie, and an older agent without a digest
    st = cluster_status(spec(), FakeCoord(Cluster(members(n1=DEFAULT, n2=FAST, n3=None), {}, {}, False)))  # type: ignore[arg-type]
    assert st["config"]["majority"] is None and set(st["config"]["mismatched"]) == {"n2", "n3"}
    _print_status(st)
    out = capsys.readouterr().out
    assert "no majority" in out and "n3: publishes no config digest" in out
    # all equal: one quiet line
    st = cluster_status(spec(), FakeCoord(Cluster(members(n1=DEFAULT, n2=DEFAULT), {}, {}, False)))  # type: ignore[arg-type]
    assert st["config"]["mismatched"] == {}
    _print_status(st)
    out = capsys.readouterr().out
    assert f"config: all 2 agents run this spec's timing (lease_s {DEFAULT.lease_s:g}, margin_s 0.3), roles and failsafe off" in out
    assert "DIFFERS" not in out


def test_failsafe_is_part_of_the_digest_and_status_names_the_node(capsys: pytest.CaptureFixture[str]) -> None:
    """Half a tier with failsafe on, half off: the holder's peers refuse to confirm, so the mode
    is silently gone -- status must say which node differs, and a record from an agent before
    failsafe existed reads as off (no spurious difference during the upgrade)."""
    on = digest_of(parse_spec(SPEC.format(profile="default", stop="true", standby="a, b", prio=100)
                              + "failsafe: true\napi: {port: 8740}\n", "c.yml"))
    assert (on.timing, on.roles, on.failsafe, DEFAULT.failsafe) == (DEFAULT.timing, DEFAULT.roles, True, False)
    assert decode(on.to_json()) == on
    old = {k: v for k, v in DEFAULT.to_json().items() if k != "failsafe"}
    assert decode(old) == DEFAULT
    assert decode({**on.to_json(), "failsafe": "yes"}) is None
    assert mismatches({"n1": DEFAULT, "n2": on}, DEFAULT) == {"n2": ["failsafe"]}
    st = cluster_status(spec(), FakeCoord(Cluster(members(n1=DEFAULT, n2=DEFAULT, n3=on), {}, {}, False)))  # type: ignore[arg-type]
    assert st["config"]["mismatched"]["n3"]["majority"] == ["failsafe"]
    _print_status(st)
    out = capsys.readouterr().out
    assert "n3: failsafe on, the majority has it off" in out, out
    row = next(ln for ln in out.splitlines() if ln.startswith("n3 "))
    assert row.endswith("CONFIG DIFFERS (failsafe)"), row
