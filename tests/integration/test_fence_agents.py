"""Host fencing through the standard fence-agent interface, on Debian's own agents: fence_dummy
(the fence-agents package's test agent, status kept in a file) for off/status, its `fail` mode for
an agent that cannot power off; small script agents for the cases fence_dummy cannot play (status
still on after off, a hang); `fence_hacluster_lab`'s metadata validated with the interface's own
RelaxNG schema (/usr/share/cluster/relaxng/metadata.rng from fence-agents)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hacluster.errors import UserError
from hacluster.fence import STATUS_OFF, agent_path, fence_off, load_secrets, run_agent, stdin_text
from hacluster.fence_spec import FenceDevice
from hacluster_lab.lab.fence_agent import metadata, parse_options

pytestmark = pytest.mark.timeout(120)
RNG = "/usr/share/cluster/relaxng/metadata.rng"


def test_stdin_is_key_value_lines_with_the_action_first() -> None:
    assert stdin_text({"ip": "192.0.2.1", "password": "s3cret", "action": "reboot"}, "off") == \
        "action=off\nip=192.0.2.1\npassword=s3cret\n"


def test_fence_dummy_off_then_status_confirms_off(tmp_path: Path) -> None:
    status = tmp_path / "power"
    status.write_text("on")
    dev = FenceDevice("store1", "fence_dummy", {"type": "file", "status_file": str(status)})
    assert run_agent(dev.agent, dev.params, "status", 30).rc == 0  # on
    out = fence_off(dev, {}, 30)
    assert out.ok, out
    assert [r.action for r in out.runs] == ["off", "status"] and out.runs[-1].rc == STATUS_OFF
    assert status.read_text() == "off"
    assert "status confirms off" in out.detail


def test_an_agent_that_cannot_power_off_is_a_failed_fence() -> None:
    dev = FenceDevice("store1", "fence_dummy", {"type": "fail", "power_timeout": "1"})
    out = fence_off(dev, {}, 30)
    assert not out.ok and "fence_dummy off: exit 1" in out.detail, out


def script(tmp_path: Path, name: str, body: str) -> str:
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_off_without_status_off_is_not_a_fence(tmp_path: Path) -> None:
    """off says success but status keeps saying on (a BMC that lies, the wrong plug): no takeover."""
    agent = script(tmp_path, "fence_liar", 'grep -q "^action=status" && exit 0; exit 0\n')
    out = fence_off(FenceDevice("store1", agent), {}, 1.5)
    assert not out.ok and "still on" in out.detail, out
    assert [r.action for r in out.runs][:2] == ["off", "status"]


def test_a_hanging_agent_is_cut_at_the_timeout(tmp_path: Path) -> None:
    agent = script(tmp_path, "fence_hang", "exec sleep 60\n")
    out = fence_off(FenceDevice("store1", agent), {}, 0.5)
    assert not out.ok and "timed out" in out.detail and out.seconds < 5, out


def test_a_missing_agent_is_a_failed_fence() -> None:
    out = fence_off(FenceDevice("store1", "fence_no_such_agent"), {}, 5)
    assert not out.ok and "not found" in out.detail
    assert agent_path("fence_dummy") == "/usr/sbin/fence_dummy"


def test_secrets_go_on_stdin_never_on_the_command_line(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    agent = script(tmp_path, "fence_echo", f'echo "argv=$*" >> {seen}; input=$(cat); echo "$input" >> {seen}\n'
                   'case "$input" in action=status*) exit 2;; esac; exit 0\n')
    secrets = tmp_path / "fence.secrets"
    secrets.write_text("store1: {password: 's3cret word', username: root}\n")
    secrets.chmod(0o644)
    with pytest.raises(UserError, match=r"chmod 600\), mode is 0644"):
        load_secrets(str(secrets))
    secrets.chmod(0o600)
    loaded = load_secrets(str(secrets))
    assert loaded == {"store1": {"password": "s3cret word", "username": "root"}}
    out = fence_off(FenceDevice("store1", agent, {"ip": "192.0.2.201", "username": "admin"}), loaded["store1"], 5)
    text = seen.read_text()
    assert "argv=\n" in text and "password=s3cret word\n" in text and "username=root\n" in text, text
    assert "s3cret" not in text.split("argv=")[1].splitlines()[0]
    assert out.ok and "ip=192.0.2.201\n" in text


def test_bad_secrets_name_the_file_and_line(tmp_path: Path) -> None:
    secrets = tmp_path / "s"
    secrets.write_text("store1:\n  password: [1, 2]\n")
    secrets.chmod(0o600)
    with pytest.raises(UserError, match=rf"{secrets}:2: store1.password: must be a parameter name"):
        load_secrets(str(secrets))
    with pytest.raises(UserError, match="No such file"):
        load_secrets(str(tmp_path / "absent"))


def xmllint(xml: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "meta.xml"
    f.write_text(xml)
    return subprocess.run(["xmllint", "--noout", "--relaxng", RNG, str(f)], capture_output=True, text=True, timeout=60)


def test_lab_agent_metadata_passes_the_interfaces_schema(tmp_path: Path) -> None:
    res = xmllint(metadata(), tmp_path)
    assert res.returncode == 0, res.stderr
    # the schema is a real check: Debian's own agent passes it, a broken description does not
    dummy = subprocess.run(["fence_dummy", "-o", "metadata"], capture_output=True, text=True, timeout=60).stdout
    assert xmllint(dummy, tmp_path).returncode == 0
    broken = metadata().replace('<content type="string"', '<content type="text"', 1)
    assert xmllint(broken, tmp_path).returncode != 0
    # and the installed command prints the same on `-o metadata` and on stdin `action=metadata`
    cmd = [str(Path(sys.executable).parent / "fence_hacluster_lab")]  # the venv's console script
    by_argv = subprocess.run([*cmd, "-o", "metadata"], capture_output=True, text=True, timeout=60)
    by_stdin = subprocess.run(cmd, input="action=metadata\n", capture_output=True, text=True, timeout=60)
    assert by_argv.returncode == by_stdin.returncode == 0 and by_argv.stdout == by_stdin.stdout == metadata() + "\n"


def test_lab_agent_options_as_the_fencing_library_reads_them() -> None:
    assert parse_options("action=off\nport=store1\n# comment\nlab_state=/run/x\n", []) == \
        {"action": "off", "plug": "store1", "lab_state": "/run/x"}
    assert parse_options("action=off\n", ["-o", "status", "-n", "store2", "--lab-state=/run/y"]) == \
        {"action": "status", "plug": "store2", "lab_state": "/run/y"}
    with pytest.raises(ValueError):
        parse_options("", ["store1"])
