"""The spool builder: params checked with the field named, peers derived from the tier."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hacluster.errors import UserError
from hacluster.resources.spool import MirroredSpool, SharedSpool, build


def node(name: str, addr: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, address=addr)


NODES = [node("store1", "198.51.100.11"), node("store2", "198.51.100.12"), node("store3", "198.51.100.13")]


def ctx(me: str = "store1") -> SimpleNamespace:
    spec = SimpleNamespace(source="cluster.yml", candidates=lambda role: tuple(NODES))
    return SimpleNamespace(spec=spec, role=SimpleNamespace(name="store"), node=next(n for n in NODES if n.name == me),
                           state_dir=Path("/run/hacluster/x"))


RES = SimpleNamespace(name="spool")


def test_shared() -> None:
    s = build(RES, {"mode": "shared", "device": "/dev/vdb", "path": "/srv/spool", "fstype": "ext4",
                    "subdirs": ["mail", "postfix"], "umount_wait_s": 2}, ctx())
    assert isinstance(s, SharedSpool) and (s.device, s.node, s.subdirs, s.umount_wait_s) == \
        ("/dev/vdb", "store1", ("mail", "postfix"), 2.0)


def test_mirrored_peers_default_to_the_rest_of_the_tier() -> None:
    s = build(RES, {"mode": "mirrored", "path": "/var/mail", "listen": False, "replicate_port": 7000}, ctx("store2"))
    assert isinstance(s, MirroredSpool) and s.receiver is None
    assert s.peers == [("198.51.100.11", 7000), ("198.51.100.13", 7000)]
    m = build(RES, {"mode": "mirrored", "path": "/var/mail", "listen": False,
                    "peer": {"store1": "10.0.0.1:1", "store2": "[fd00::2]:2"}}, ctx("store1"))
    assert m.peers == [("fd00::2", 2)]


def test_mirrored_starts_its_receiver(tmp_path: Path) -> None:
    s = build(RES, {"mode": "mirrored", "path": str(tmp_path), "listen": "127.0.0.1:0"}, ctx())
    try:
        assert s.receiver is not None and s.receiver.port > 0
    finally:
        s.close()


@pytest.mark.parametrize("params, msg", [
    ({"mode": "nfs", "path": "/s"}, "mode: must be one of shared, mirrored, got 'nfs'"),
    ({"mode": "shared", "path": "rel", "device": "/d"}, "path: required, an absolute path"),
    ({"mode": "shared", "path": "/s"}, "device: required in shared mode"),
    ({"mode": "shared", "path": "/s", "device": "/d", "subdirs": ["../etc"]}, "subdirs: must be a list of relative"),
    ({"mode": "shared", "path": "/s", "device": "/d", "umount_wait_s": "x"}, "umount_wait_s: must be a number"),
    ({"mode": "mirrored", "path": "/s", "replicate_port": 70000}, "replicate_port: must be a TCP port"),
    ({"mode": "mirrored", "path": "/s", "peer": 5}, "peer: must be host[:port]"),
    ({"mode": "mirrored", "path": "/s", "peer": "h:x", "listen": False}, "peer: peer 'h:x': bad port"),
    ({"mode": "mirrored", "path": "/s", "require_catchup": "yes", "listen": False}, "require_catchup: must be true or false"),
])
def test_bad_params_name_the_field(params: dict, msg: str) -> None:
    with pytest.raises(UserError) as err:
        build(RES, params, ctx())
    assert str(err.value).startswith(f"cluster.yml: roles.store.resources[spool].{msg}"), str(err.value)


def test_from_a_cluster_spec_through_the_factory(tmp_path: Path) -> None:
    """The spec accepts the spool params (spec.RESOURCE_PARAMS) and the factory builds both modes."""
    from importlib.resources import files

    from hacluster.resources.factory import ResourceContext, build_resources
    from hacluster.spec import load_spec

    text = files("hacluster.examples").joinpath("lab.yml").read_text()
    # the store role's mta line, whatever its comment or extra params
    old = next(line + "\n" for line in text.splitlines()
               if line.strip().startswith('- {type: mta, name: postfix, config_dir: "{state_dir}/postfix"'))
    assert old in text
    new = ('      - {type: spool, name: spool, mode: mirrored, path: "{state_dir}/mail", listen: false,\n'
           '         replicate_port: 7925, catchup_timeout_s: 5, require_catchup: false, drain_timeout_s: 1,\n'
           '         scan_interval_s: 2, replicate_deletes: false}\n'
           '      - {type: ocf, name: dummy, agent: "ocf:heartbeat:Dummy", params: {state: "{state_dir}/d.state"},\n'
           '         timeout_s: 10}\n' + old)
    spec_file = tmp_path / "c.yml"
    spec_file.write_text(text.replace(old, new))
    spec = load_spec(str(spec_file))
    store1 = spec.node("store1")
    res = build_resources(ResourceContext(spec, spec.roles["store"], store1, tmp_path / "st"))
    assert [r.name for r in res][:2] == ["spool", "dummy"]
    spool, dummy = res[0], res[1]
    assert isinstance(spool, MirroredSpool) and spool.path == tmp_path / "st" / "mail"
    assert spool.peers == [("198.51.100.12", 7925)]
    assert dummy.params == {"state": f"{tmp_path}/st/d.state"}
    assert spool.drain is not None and spool.drain.relay == "[198.51.100.20]:25"
    assert spool.drain.config_dir == tmp_path / "st" / "postfix"
    spool.close()
    bad = text.replace(old, '      - {type: spool, name: spool, mode: shared, path: /s, device: /d, bogus: 1}\n' + old)
    spec_file.write_text(bad)
    with pytest.raises(UserError, match="bogus"):
        load_spec(str(spec_file))
