"""drift.py (who differs from whom, by item) and the config_digest probe's pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacluster.drift import cluster_drift, differing, digests_of, tier_drift
from hacluster.health.config_digest import ConfigDigestProbe, parse_postconf
from hacluster.spec import SpecError, parse_spec


def H(**digests: str) -> dict:
    return {"config_digest": {"ok": True, "severity": "ok", "data": {"digests": digests}}}


def test_differing_names_items_parameters_first() -> None:
    assert differing({"a": "1", "/f": "x", "b": "2"}, {"a": "1", "/f": "y", "c": "3"}) == ["b", "c", "/f"]
    assert differing({"a": "1"}, {"a": "1"}) == []


def test_against_the_holder_else_the_majority() -> None:
    d = {"s1": {"maps": "1"}, "s2": {"maps": "2"}, "s3": {"maps": "2"}}
    assert tier_drift(d, "s1") == {"s2": {"against": "s1", "items": ["maps"]}, "s3": {"against": "s1", "items": ["maps"]}}
    assert tier_drift(d, None) == {"s1": {"against": "the majority", "items": ["maps"]}}
    assert tier_drift({"s1": {"maps": "1"}}, None) == {}  # one node: nothing to compare


def test_cluster_drift_per_tier_and_only_with_the_check() -> None:
    tiers = {"store1": "store", "store2": "store", "relay1": "relay", "relay2": "relay"}
    health = {"store1": H(virtual_mailbox_maps="a"), "store2": H(virtual_mailbox_maps="b"),
              "relay1": H(x="1"), "relay2": {}}  # relay2 runs no config_digest check: not compared
    out = cluster_drift(tiers, health, {"store": "store1"}, {"store": "store"})
    assert list(out) == ["store2"]
    assert out["store2"]["text"] == "store2 differs from store1: virtual_mailbox_maps"


def test_parse_postconf() -> None:
    text = "alias_maps =\nmydestination = a,\n    b\nvirtual_mailbox_maps = hash:/etc/postfix/virtual\n"
    assert parse_postconf(text) == {"alias_maps": "", "mydestination": "a, b",
                                    "virtual_mailbox_maps": "hash:/etc/postfix/virtual"}


def test_probe_files_keyed_by_label_and_unreadable_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "v").write_text("anna ok\n")
    ok = ConfigDigestProbe(files=(str(tmp_path / "v"),), labels=("{state_dir}/v",))(1.0)
    assert ok.severity == "ok" and list(ok.data["digests"]) == ["{state_dir}/v"]
    bad = ConfigDigestProbe(files=(str(tmp_path / "nope"),))(1.0)
    assert bad.ok and bad.severity == "warn" and bad.data["digests"][str(tmp_path / "nope")] == "unreadable"


SPEC = """\
cluster: c
zookeeper: {hosts: [127.0.0.1:2181]}
roles: {store: {tier: store}}
nodes:
  - {name: s1, tier: store, interface: lo, addresses: [127.0.0.11/8]}
health:
  store:
"""


@pytest.mark.parametrize("check, needle", [
    ("{check: config_digest}", "health.store[0]: config_digest needs postconf"),
    ("{check: config_digest, postconf: yes-please}", "health.store[0].postconf: must be true, false or a list"),
    ("{check: config_digest, files: [relative/path]}", "health.store[0].files: 'relative/path' must be an absolute path"),
    ("{check: config_digest, files: /etc/x}", "health.store[0].files: must be list"),
])
def test_config_digest_spec_errors(check: str, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(SPEC + f"    - {check}\n", "c.yml")
    assert any(line.startswith("c.yml:8: ") and needle in line for line in str(err.value).splitlines()), str(err.value)


def test_config_digest_spec_ok() -> None:
    spec = parse_spec(SPEC + "    - {check: config_digest, postconf: [virtual_mailbox_maps], files: [/etc/postfix/virtual]}\n")
    assert spec.health["store"][0].params["postconf"] == ["virtual_mailbox_maps"]


def test_a_failed_postconf_publishes_no_digests(tmp_path) -> None:
    """A postconf that fails (or times out on a busy host) makes this node's configuration unknown,
    not different: no digests, so no peer reports a drift in every parameter."""
    r = ConfigDigestProbe(postconf=True, config_dir=str(tmp_path / "no-such-dir"))(5.0)
    assert r.severity == "warn" and "postconf" in r.detail
    assert digests_of({"config_digest": {"data": r.data}}) is None
