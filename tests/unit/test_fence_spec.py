"""`fencing:` / `fence:` in the spec, and inequality (S) over every resource of a role
(config check refuses what it must, names the field and the line, warns on `fencing: self-only`)."""

from __future__ import annotations

import json

import pytest

from hacluster.cli import main
from hacluster.guard_bound import GUARD_WAKE_S, STEP_BOUND_S, guard_steps, role_bound_s
from hacluster.spec import SpecError, parse_spec

BASE = """\
cluster: t
zookeeper: {hosts: [127.0.0.1:2181]}
roles:
  store:
    tier: store
    vip: {address: 198.51.100.20/24, interface: eth0}
    resources:
      - {type: spool, name: spool, mode: shared, device: /dev/vdb, path: /srv/spool}
      - {type: mta, name: postfix}
nodes:
  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.11/24]}
  - {name: store2, tier: store, interface: eth0, addresses: [198.51.100.12/24]}
"""
FENCE = """\
fence:
  timeout_s: 20
  secrets_file: /etc/hacluster/fence.secrets
  nodes:
    store1: {agent: fence_ipmilan, params: {ip: 192.0.2.201, username: admin, lanplus: true}}
    store2: {agent: /usr/sbin/fence_virsh, params: {ip: 192.0.2.1, plug: store2}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        parse_spec(text, "c.yml")
    return err.value.problems


def test_shared_block_spool_without_fence_is_refused_naming_the_resource_line() -> None:
    out = problems(BASE)
    assert len(out) == 1, out
    assert out[0].startswith("c.yml:8: roles.store.resources[0]: a shared spool on a block device needs host fencing")
    assert "store1, store2" in out[0] and "fencing: self-only" in out[0]


def test_self_only_is_accepted_with_a_warning_naming_the_risk() -> None:
    spec = parse_spec(BASE + "fencing: self-only\n", "c.yml")
    assert not spec.requires_fencing("store")
    assert len(spec.warnings) == 1 and spec.warnings[0].startswith("c.yml:8: roles.store.resources[0]: fencing: self-only")
    assert "freezes whole" in spec.warnings[0] and "corruption" in spec.warnings[0]


def test_config_check_prints_the_warning_and_exits_0(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yml"
    f.write_text(BASE + "fencing: self-only\n")
    assert main(["config", "check", str(f)]) == 0
    out = capsys.readouterr()
    assert out.err.startswith(f"warning: {f}:8: roles.store.resources[0]: fencing: self-only"), out
    assert main(["config", "check", "--json", str(f)]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"][0].startswith(f"{f}:8:")
    f.write_text(BASE)
    assert main(["config", "check", str(f)]) == 2
    assert "needs host fencing" in capsys.readouterr().err


def test_fence_section_read_and_required_for_the_role() -> None:
    spec = parse_spec(BASE + FENCE, "c.yml")
    assert spec.requires_fencing("store") and spec.warnings == ()
    assert spec.fence is not None and spec.fence.timeout_s == 20
    assert spec.fence.devices["store1"].params == {"ip": "192.0.2.201", "username": "admin", "lanplus": "1"}
    assert spec.fence.devices["store2"].agent == "/usr/sbin/fence_virsh"


def test_a_candidate_without_a_fence_device_is_refused() -> None:
    text = BASE + FENCE.replace("    store2: {agent: /usr/sbin/fence_virsh, params: {ip: 192.0.2.1, plug: store2}}\n", "")
    out = problems(text)
    assert out == ["c.yml:16: fence.nodes: no fence device for store2: role store (a shared spool on a block "
                   "device) is taken over only after its silent holder was fenced"], out


@pytest.mark.parametrize("bad, want", [
    ("fencing: none\n", "c.yml:13: fencing: must be one of required, self-only"),
    (FENCE.replace("fence_ipmilan", "ipmitool"), "fence.nodes.store1.agent: must be a fence agent name"),
    (FENCE.replace("lanplus: true", "action: reboot"), "fence.nodes.store1.params.action: is chosen by the agent"),
    (FENCE.replace("lanplus: true", "Lan-Plus: 1"), "fence.nodes.store1.params.Lan-Plus: parameter names"),
    (FENCE.replace("lanplus: true", "lanplus: [1]"), "fence.nodes.store1.params.lanplus: must be a one-line"),
    (FENCE.replace("store2: {agent", "store3: {agent"), "fence.nodes.store3: no node named 'store3'"),
    (FENCE.replace("timeout_s: 20", "timeout_s: 0"), "fence.timeout_s: must be in (0, 600]"),
    (FENCE.replace("/etc/hacluster/fence.secrets", "fence.secrets"), "fence.secrets_file: must be an absolute path"),
    (FENCE.replace("  secrets_file", "  secret_file"), "fence.secret_file: unknown key"),
])
def test_bad_fence_input_names_the_field(bad: str, want: str) -> None:
    out = problems(BASE + bad)
    assert any(want in p for p in out), out


def test_require_fencing_explicit_on_any_resource_and_off_on_a_spool() -> None:
    off = BASE.replace("path: /srv/spool}", "path: /srv/spool, require_fencing: false}")
    assert not parse_spec(off).requires_fencing("store")
    cmd = BASE.replace("device: /dev/vdb", "device: /srv/spool-dir").replace(
        "- {type: mta, name: postfix}", "- {type: command, name: drbd, start: 'true', stop: 'true', require_fencing: true}")
    assert any("command resource 'drbd' (require_fencing) needs host fencing" in p for p in problems(cmd))
    assert any("require_fencing: must be bool" in p for p in problems(BASE.replace("/srv/spool}", "/srv/spool, require_fencing: 1}")))


def test_a_directory_spool_needs_no_fencing() -> None:
    spec = parse_spec(BASE.replace("device: /dev/vdb", "device: /srv/spool-dir"))
    assert not spec.requires_fencing("store") and spec.warnings == ()


def test_inequality_s_covers_every_resource_and_names_them() -> None:
    role = parse_spec(BASE + FENCE).roles["store"]
    assert [(s.resource, s.kind) for s in guard_steps(role)] == [("spool", "umount"), ("postfix", "kill"), ("store-vip", "vip")]
    assert role_bound_s(role) == pytest.approx(GUARD_WAKE_S + sum(STEP_BOUND_S.values()))
    out = problems(BASE + FENCE + "timing: {profile: fast}\n")
    assert len(out) == 1 and out[0].startswith("c.yml:19: timing.stop_timeout_s: unsafe: stop_timeout_s (0.08) is shorter")
    assert "spool umount 0.08 + postfix kill 0.04 + store-vip vip 0.005 = 0.135 s" in out[0]
    # an MTA that runs on the standby too is not the guard's: fast fits without the spool
    ok = BASE.replace("      - {type: spool, name: spool, mode: shared, device: /dev/vdb, path: /srv/spool}\n", "") \
        .replace("nodes:\n", "    run_on_standby: [postfix]\ntiming: {profile: fast}\nnodes:\n", 1)
    parse_spec(ok)


def test_the_lab_spec_is_unchanged() -> None:
    spec = parse_spec(open("hacluster/examples/lab.yml").read())
    assert spec.fencing == "required" and spec.fence is None and spec.warnings == ()
    assert not any(spec.requires_fencing(r) for r in spec.roles)
