"""OCF runner pieces that need no running service: agent names, environment, meta-data, params,
and the meta-data of our own agents (validated against resource-agents' ra-api-1.dtd)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hacluster.errors import UserError
from hacluster.resources import ocf_cli
from hacluster.resources.base import OCF
from hacluster.resources.ocf import (AgentRef, OcfResource, build, check_params, ocf_env, parse_meta_data,
                                     resolve_agent)
from hacluster.spec import RESOURCE_PARAMS

ROOT = Path(__file__).resolve().parents[2]
DTD = Path("/usr/share/resource-agents/ra-api-1.dtd")


@pytest.fixture(autouse=True)
def _our_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """agents/ocf/* exec $HACLUSTER_PYTHON: the interpreter running the tests (a venv in CI)."""
    monkeypatch.setenv("HACLUSTER_PYTHON", sys.executable)


def test_resolve_agent_names() -> None:
    assert resolve_agent("ocf:heartbeat:postfix") == AgentRef(Path("/usr/lib/ocf/resource.d/heartbeat/postfix"),
                                                              "heartbeat", "postfix")
    assert resolve_agent("heartbeat:Dummy", Path("/x")).path == Path("/x/resource.d/heartbeat/Dummy")
    assert resolve_agent("/usr/lib/ocf/resource.d/pacemaker/Stateful").provider == "pacemaker"
    ours = resolve_agent(str(ROOT / "agents/ocf/hacluster-spool"))
    assert (ours.provider, ours.type, ours.standard_name) == ("local", "hacluster-spool", "ocf:local:hacluster-spool")
    for bad in ("postfix", "ocf:heartbeat", "ocf:a:b:c", "ocf::postfix", "..:x"):
        with pytest.raises(ValueError):
            resolve_agent(bad)


def test_environment_is_what_pacemaker_gives() -> None:
    ref = resolve_agent("ocf:heartbeat:postfix")
    env = ocf_env(ref, "mta1", {"config_dir": "/etc/pf1", "flag": True, "n": 3, "empty": None},
                  timeout_s=30, interval_ms=0, node="store1", token=9,
                  base={"PATH": "/bin", "OCF_RESKEY_leak": "x", "HA_debug": "1", "__OCF_ACTION": "old"})
    assert env == {
        "PATH": "/bin",
        "OCF_ROOT": "/usr/lib/ocf", "OCF_FUNCTIONS_DIR": "/usr/lib/ocf/lib/heartbeat",
        "OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1",
        "OCF_RESOURCE_INSTANCE": "mta1", "OCF_RESOURCE_TYPE": "postfix", "OCF_RESOURCE_PROVIDER": "heartbeat",
        "OCF_RESKEY_CRM_meta_timeout": "30000", "OCF_RESKEY_CRM_meta_interval": "0",
        "OCF_RESKEY_CRM_meta_on_node": "store1", "HA_NODENAME": "store1",
        "HA_LOGFACILITY": "none", "HA_LOGFILE": "/dev/stderr", "HACLUSTER_TOKEN": "9",
        "OCF_RESKEY_config_dir": "/etc/pf1", "OCF_RESKEY_flag": "true", "OCF_RESKEY_n": "3", "OCF_RESKEY_empty": "",
    }


def test_probe_then_recurring_monitor_interval(tmp_path: Path) -> None:
    r = OcfResource("d", "ocf:heartbeat:Dummy", {"state": str(tmp_path / "s")})
    assert r.env("monitor")["OCF_RESKEY_CRM_meta_interval"] == "0"  # probe: nothing started by us yet
    assert r.start() == OCF.SUCCESS
    assert r.env("monitor")["OCF_RESKEY_CRM_meta_interval"] == "10000"
    assert r.stop() == OCF.SUCCESS


GOOD = """<?xml version="1.0"?><resource-agent name="x" version="1.0"><version>1.0</version>
<parameters><parameter name="a" required="1"><content type="string"/></parameter>
<parameter name="b"><content type="integer" default="3"/></parameter></parameters>
<actions><action name="start" timeout="20s"/><action name="stop" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s"/><action name="meta-data" timeout="5s"/></actions>
</resource-agent>"""


def test_parse_meta_data_and_check_params() -> None:
    meta = parse_meta_data(GOOD)
    assert meta.name == "x" and meta.param("b").default == "3" and meta.param("a").required
    assert check_params(meta, {"a": 1}) == []
    assert check_params(meta, {"b": 1, "c": 2}) == ["c: not a parameter of x (known: a, b)", "a: required by x"]


@pytest.mark.parametrize("xml, why", [
    ("not xml", "not well-formed"),
    ("<agent/>", "root element is <agent>"),
    ('<resource-agent name="x"><actions/></resource-agent>', "no <parameters>"),
    (GOOD.replace('<action name="stop" timeout="20s"/>', ""), "required actions missing: stop"),
])
def test_parse_meta_data_rejects(xml: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_meta_data(xml)


def ctx() -> SimpleNamespace:
    return SimpleNamespace(spec=SimpleNamespace(source="c.yml"), role=SimpleNamespace(name="store"),
                           node=SimpleNamespace(name="store1", address="198.51.100.11"), state_dir=Path("/tmp"))


def test_build_names_the_field(tmp_path: Path) -> None:
    res = SimpleNamespace(name="dummy")
    r = build(res, {"agent": "ocf:heartbeat:Dummy", "params": {"state": str(tmp_path / "s")}}, ctx())
    assert r.node == "store1" and r.timeout_s == 20
    cases = [({}, "resources[dummy].agent: required"),
             ({"agent": "ocf:heartbeat:NoSuchAgent"}, "resources[dummy].agent: /usr/lib/ocf/resource.d/heartbeat/NoSuchAgent not found"),
             ({"agent": "Dummy"}, "resources[dummy].agent: agent 'Dummy': expected"),
             ({"agent": "ocf:heartbeat:Dummy", "params": {"sate": "x"}}, "resources[dummy].params.sate: not a parameter of Dummy"),
             ({"agent": "ocf:heartbeat:postfix", "params": ["x"]}, "resources[dummy].params: must be a mapping"),
             ({"agent": "ocf:heartbeat:Dummy", "timeout_s": 0}, "resources[dummy].timeout_s: must be > 0")]
    for params, msg in cases:
        with pytest.raises(UserError) as err:
            build(res, params, ctx())
        assert str(err.value).startswith(f"c.yml: roles.store.{msg}"), str(err.value)


# --------------------------------------------------------------------------- our agents


@pytest.mark.parametrize("rtype", sorted(ocf_cli.TYPES))
def test_our_agent_meta_data_is_valid_ra_api_xml(rtype: str, tmp_path: Path) -> None:
    script = ROOT / "agents" / "ocf" / f"hacluster-{rtype}"
    meta = OcfResource("m", str(script), timeout_s=20).meta_data()  # through our own runner
    assert meta.name == f"hacluster-{rtype}"
    assert [p.name for p in meta.parameters] == [p.name for p in ocf_cli.TYPES[rtype][1]]
    (tmp_path / "m.xml").write_text(ocf_cli.meta_data_xml(rtype))
    out = subprocess.run(["xmllint", "--noout", "--dtdvalid", str(DTD), str(tmp_path / "m.xml")],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr


def test_spool_agent_params_are_spool_resource_params() -> None:
    ocf_only = {"token", "state_dir"}
    names = {p.name for p in ocf_cli.TYPES["spool"][1]} - ocf_only
    assert names <= RESOURCE_PARAMS["spool"]
    assert {p.name for p in ocf_cli.TYPES["mta"][1]} - ocf_only <= RESOURCE_PARAMS["mta"]


def test_param_coercion() -> None:
    assert ocf_cli.typed_params("spool", {"mode": "shared", "path": "/s", "subdirs": "mail, queue",
                                          "umount_wait_s": "2.5", "require_catchup": "yes", "replicate_port": "7000"}) \
        == {"mode": "shared", "path": "/s", "subdirs": ["mail", "queue"], "umount_wait_s": 2.5,
            "require_catchup": True, "replicate_port": 7000}
    for raw, msg in [({"path": "/s"}, "mode: required"), ({"mode": "shared", "path": "/s", "x": "1"}, "x: not a parameter"),
                     ({"mode": "m", "path": "/s", "replicate_port": "p"}, "replicate_port: not an integer")]:
        with pytest.raises(ValueError, match=msg):
            ocf_cli.typed_params("spool", raw)
    assert ocf_cli.params_from_env({"OCF_RESKEY_a": "1", "OCF_RESKEY_b": "", "OCF_RESKEY_CRM_meta_timeout": "1",
                                    "PATH": "/bin"}) == {"a": "1"}


def test_agent_usage_and_bad_config_exit_codes(tmp_path: Path) -> None:
    script = ROOT / "agents" / "ocf" / "hacluster-spool"
    assert subprocess.run([str(script)], capture_output=True, timeout=20).returncode == OCF.ERR_ARGS
    r = OcfResource("s", str(script), {"mode": "shared", "path": str(tmp_path), "bogus": "1"}, timeout_s=20)
    assert r.validate_all() == OCF.ERR_CONFIGURED and "bogus: not a parameter" in r.last.reason()
    r = OcfResource("s", str(script), {"mode": "shared", "path": "relative", "device": "/dev/null"}, timeout_s=20)
    assert r.validate_all() == OCF.ERR_CONFIGURED and "path: required, an absolute path" in r.last.reason()


def test_resource_run_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    run = CliRunner()
    r = run.invoke(ocf_cli.resource, ["run", "spool", "validate-all", "-p", "mode=shared", "-p", f"path={tmp_path}",
                                      "-p", "device=/dev/null"])
    assert r.exit_code == OCF.SUCCESS, r.output
    r = run.invoke(ocf_cli.resource, ["run", "spool", "monitor", "-p", "mode=shared", "-p", f"path={tmp_path}/m",
                                      "-p", f"device={tmp_path}", "-p", f"state_dir={tmp_path}/st"])
    assert r.exit_code == OCF.NOT_RUNNING
    r = run.invoke(ocf_cli.resource, ["run", "spool", "validate-all", "-p", "mode"])
    assert isinstance(r.exception, UserError) and "expected KEY=VALUE" in str(r.exception)
    r = run.invoke(ocf_cli.resource, ["meta-data", "mta"])
    assert r.exit_code == 0 and 'name="hacluster-mta"' in r.output
