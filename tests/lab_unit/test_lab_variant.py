"""Spec variants (hacluster_lab/lab/variant.py): the embedded lab spec with one switch changed,
still a valid spec, comments kept; a bad placement patch fails naming the file before any
agent would restart on it."""

from __future__ import annotations

from typing import Any

import pytest

from hacluster.errors import UserError
from hacluster.spec import default_spec_text, parse_spec
from hacluster_lab.lab.variant import spec_change, with_failsafe, with_overrides, with_placement

BASE = default_spec_text()


@pytest.mark.parametrize("on", [True, False])
def test_failsafe_is_set_and_the_rest_kept(on: bool) -> None:
    text = with_failsafe(BASE, on)
    spec = parse_spec(text, "variant")
    assert spec.failsafe is on
    assert spec.roles == parse_spec(BASE, "base").roles
    assert text.count("#") == BASE.count("#")  # comments survive the round trip


def first_role() -> str:
    return next(iter(parse_spec(BASE, "base").roles))


@pytest.mark.parametrize("keys,check", [
    ({"failback": {"delay_s": 4}}, lambda r: r.placement.failback_s == 4),
    ({"failback": {"delay_s": 0}}, lambda r: r.placement.failback_s == 0),
])
def test_placement_keys_land_under_the_role(keys: dict[str, Any], check: Any) -> None:
    role = first_role()
    spec = parse_spec(with_placement(BASE, role, keys, "cluster.yml"), "variant")
    assert check(spec.roles[role])
    base = parse_spec(BASE, "base")
    assert {n: r for n, r in spec.roles.items() if n != role} == {n: r for n, r in base.roles.items() if n != role}


@pytest.mark.parametrize("role,keys,says", [
    ("nosuchrole", {"failback": {"delay_s": 4}}, "no role 'nosuchrole'"),
    (None, {"failback": {"delay_s": "soon"}}, "cluster.yml"),
    (None, {"no_such_key": 1}, "cluster.yml"),
])
def test_a_bad_patch_fails_naming_the_source(role: str | None, keys: dict[str, Any], says: str) -> None:
    with pytest.raises((UserError, ValueError)) as err:
        with_placement(BASE, role or first_role(), keys, "cluster.yml")
    assert says in str(err.value)


@pytest.mark.parametrize("overrides,says", [
    ({}, "own"),
    ({"failsafe": True}, "failsafe: true"),
    ({"failsafe": False}, "failsafe: false"),
])
def test_the_report_names_the_spec_change(overrides: dict[str, Any], says: str) -> None:
    assert spec_change(overrides) == says


@pytest.mark.parametrize("overrides,failsafe", [({}, False), ({"failsafe": True}, True), ({"failsafe": False}, False)])
def test_a_drills_overrides_apply_as_given(overrides: dict[str, Any], failsafe: bool) -> None:
    text = with_overrides(BASE, overrides)
    assert parse_spec(text, "variant").failsafe is failsafe
    assert (text == BASE) is (not overrides)  # no overrides: the very same text (no restart, no deploy)
