"""`check: command` and `check: link` probes (keepalived's track_script, track_interface):
exit codes by the monitoring-plugin convention, a hung command killed with its children, the
operator's words as the detail; the link state from sysfs."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from hacluster.health.command import CommandProbe
from hacluster.health.link import LinkProbe
from hacluster.agent.node_health import build_probe
from hacluster.spec import CheckSpec


@pytest.mark.parametrize("cmd,severity,ok,detail", [
    ("echo all good", "ok", True, "all good"),
    ("echo slow >&2; exit 1", "warn", True, "exit 1: slow"),
    ("echo ldap down; exit 2", "crit", False, "exit 2: ldap down"),
    ("exit 3", "crit", False, "exit 3"),
    ("kill -9 $$", "crit", False, "killed by signal 9"),
])
def test_exit_codes(cmd: str, severity: str, ok: bool, detail: str) -> None:
    r = CommandProbe(cmd, on_fail="unhealthy")(5.0)
    assert (r.severity, r.ok, r.detail) == (severity, ok, detail)
    assert r.data["on_fail"] == "unhealthy"


def test_argv_list_is_not_a_shell() -> None:
    assert CommandProbe(("/bin/echo", "$HOME; exit 2"))(5.0).detail == "$HOME; exit 2"
    r = CommandProbe(("/nonexistent/check",))(5.0)
    assert r.severity == "crit" and "cannot run" in r.detail


def test_a_hung_command_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    t0 = time.monotonic()
    r = CommandProbe(f"sleep 60 & echo $! > {pidfile}; wait")(0.5)
    assert r.severity == "crit" and r.data["timed_out"] is True and "no answer in 0.5s" in r.detail
    assert time.monotonic() - t0 < 5
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the command's child outlived the check"
        time.sleep(0.05)


def test_bad_on_fail_is_refused() -> None:
    with pytest.raises(ValueError):
        CommandProbe("true", on_fail="reboot")


def test_names_filled_in_but_shell_braces_kept(tmp_path: Path) -> None:
    cs = CheckSpec("command", params={"exec": "echo {node} ${HOME:+x} | awk '{print $1}'"})
    probe = build_probe(cs, {"node": "store1", "state_dir": str(tmp_path), "cluster": "c"})
    assert probe.command == "echo store1 ${HOME:+x} | awk '{print $1}'"
    assert probe(5.0).detail == "store1"


def _sysfs(tmp_path: Path, name: str, oper: str, carrier: str | None) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "operstate").write_text(oper + "\n")
    if carrier is not None:
        (d / "carrier").write_text(carrier + "\n")
    return tmp_path


@pytest.mark.parametrize("oper,carrier,up", [("up", "1", True), ("down", "0", False), ("down", None, False),
                                             ("unknown", "1", True), ("unknown", "0", False),
                                             ("lowerlayerdown", "0", False)])
def test_interface_states(tmp_path: Path, oper: str, carrier: str | None, up: bool) -> None:
    r = LinkProbe("eth0", sys_net=_sysfs(tmp_path, "eth0", oper, carrier))(1.0)
    assert r.ok is up and r.severity == ("ok" if up else "crit") and r.data["operstate"] == oper


def test_missing_interface(tmp_path: Path) -> None:
    for name in ("eth9", "../eth0"):
        r = LinkProbe(name, sys_net=tmp_path)(1.0)
        assert r.severity == "crit" and "no such interface" in r.detail
