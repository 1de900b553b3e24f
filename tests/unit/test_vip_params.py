"""VIP resource params and the factory builder (`vip cleanup`: test_vip_record.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacluster.errors import UserError
from hacluster.resources.factory import ResourceContext, build_resources
from hacluster.resources.vip import VipParams, VipResource, build, parse_params
from hacluster.spec import parse_spec

WHERE = "c.yml: roles.store.resources.store-vip"


def test_defaults() -> None:
    p = parse_params({}, WHERE)
    assert p == VipParams(garp_count=3, garp_interval_s=1.05, refresh_s=30.0, dad_timeout_s=0.075, guard=True)


def test_overrides_and_int_seconds() -> None:
    p = parse_params({"garp_count": 5, "garp_interval_s": 2, "refresh_s": 0, "dad_timeout_s": 0, "guard": False}, WHERE)
    assert p == VipParams(5, 2.0, 0.0, 0.0, False)


@pytest.mark.parametrize("params,field", [
    ({"garp_count": 0}, "garp_count"),
    ({"garp_count": 1.5}, "garp_count"),
    ({"garp_count": True}, "garp_count"),
    ({"garp_interval_s": 0}, "garp_interval_s"),
    ({"garp_interval_s": "1s"}, "garp_interval_s"),
    ({"dad_timeout_s": -0.1}, "dad_timeout_s"),
    ({"refresh_s": -1}, "refresh_s"),
    ({"guard": "yes"}, "guard"),
    ({"garp": 3}, "garp"),
])
def test_bad_params_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(UserError) as err:
        parse_params(params, WHERE)
    assert str(err.value).startswith(f"{WHERE}.{field}: ")


SPEC = """\
cluster: t
zookeeper: {hosts: [127.0.0.1:2181]}
roles:
  store:
    tier: store
    vip:
      - {address: 198.51.100.20/24, interface: hcv-none0}
      - {address: "fd00:51::20/64", interface: hcv-none0}
    resources:
      - {type: vip, name: store-vip%s}
nodes:
  - {name: store1, tier: store, interface: hcv-none0, addresses: [198.51.100.11/24, "fd00:51::11/64"]}
  - {name: store2, tier: store, interface: hcv-none0, addresses: [198.51.100.12/24, "fd00:51::12/64"]}
"""


def _spec(params: str = "") -> object:
    # an interface name that exists nowhere: building must not need it (the agent may start
    # before the interface is up), and nothing on this host is touched
    return parse_spec(SPEC % params, "lab.yml")


def test_factory_builds_one_resource_for_all_role_vips(tmp_path: Path) -> None:
    spec = _spec(", garp_count: 4, dad_timeout_s: 0.2")
    role = spec.roles["store"]
    res = next(r for r in role.resources if r.type == "vip")
    vip = build(res, dict(res.params), ResourceContext(spec, role, spec.node("store1"), tmp_path))
    try:
        assert isinstance(vip, VipResource) and vip.name == "store-vip"
        assert [t.text for t in vip.targets] == ["198.51.100.20/24@hcv-none0", "fd00:51::20/64@hcv-none0"]
        assert (vip.params.garp_count, vip.params.dad_timeout_s, vip.params.garp_interval_s) == (4, 0.2, 1.05)
        assert vip.status()["holding"] is False
        assert vip.record is not None and vip.record.path == tmp_path / "vips" / "store.json"  # where cleanup looks
    finally:
        vip.close()


def test_factory_reports_bad_param_with_source(tmp_path: Path) -> None:
    spec = _spec(", garp_count: 0")
    role = spec.roles["store"]
    with pytest.raises(UserError, match=r"^lab\.yml: roles\.store\.resources\.store-vip\.garp_count: "):
        build_resources(ResourceContext(spec, role, spec.node("store1"), tmp_path))
