"""Deploy planning without SSH: facts (the probe script run by a real sh here), the plan (what
changes, what restarts), the rolling guard for stores, the rendered unit/spec, and the
supervisor used on hosts without systemd (run for real)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hacluster.deploy.package import Package
from hacluster.deploy.plan import (Desired, Facts, ManagedFile, facts_script, parse_facts, plan, preflight_problem,
                                   service_kind, store_guard)
from hacluster.deploy.render import AGENT, Layout, render_agent_unit, render_spec, render_supervisor
from hacluster.errors import UserError
from hacluster.deploy.inventory import parse_inventory

ROOT = Path(__file__).resolve().parents[2]
PKG = Package(Path("hacluster-0.1.0-py3-none-any.whl"), "hacluster", "0.1.0", "ab" * 32, ())
INV = "store:\n  vars: {spec: c.yml, prefix: /opt/hc}\n  hosts: {store1: {service: none}, store2: {service: auto}}\n"


def host(name: str = "store1"):
    return parse_inventory(INV, "inv.yml", Path("/tmp")).hosts[name]


def desired(service: str = "none") -> Desired:
    lay = Layout("/opt/hc")
    files = (
        ManagedFile("spec", lay.spec, b"cluster: x\n", 0o600, AGENT),
        ManagedFile("credentials", lay.zk_auth, b"u:p\n", 0o600, AGENT),
        ManagedFile("service", lay.supervisor(AGENT), b"#!/bin/sh\n", 0o755, AGENT),
    )
    return Desired(host(), lay, service, PKG, "deps.tar", files, (AGENT,))


def up_to_date(d: Desired, **kw: object) -> Facts:
    base = dict(uid=0, python="3.11", machine="x86_64", installed=PKG.digest, dist=("deps.tar",),
                files={f.path: (f.sha256, f"{f.mode:o}") for f in d.files}, active={AGENT: True}, enabled={AGENT: True})
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def test_fresh_host_gets_everything_in_order() -> None:
    d = desired()
    changes = plan(d, Facts(uid=0, python="3.11"))
    assert [c.step for c in changes] == ["package", "spec", "credentials", "service", "start"]
    assert changes[0].detail == f"install hacluster 0.1.0 ({PKG.short})"
    assert changes[1].detail == "create /opt/hc/etc/cluster.yml (0600)"


def test_up_to_date_host_plans_nothing() -> None:
    d = desired()
    assert plan(d, up_to_date(d)) == []


def test_changed_spec_restarts_and_says_why() -> None:
    d = desired()
    f = up_to_date(d, files={**up_to_date(d).files, "/opt/hc/etc/cluster.yml": ("0" * 64, "600")})
    changes = plan(d, f)
    assert [(c.step, c.detail) for c in changes] == [
        ("spec", "update /opt/hc/etc/cluster.yml"), ("restart", "restart hacluster-agent (spec changed)")]


def test_mode_drift_is_fixed_without_a_restart() -> None:
    d = desired()
    f = up_to_date(d, files={**up_to_date(d).files, "/opt/hc/etc/zk.auth": (d.files[1].sha256, "644")})
    assert [(c.step, c.detail) for c in plan(d, f)] == [("credentials", "chmod 0600 /opt/hc/etc/zk.auth (was 644)")]


def test_new_package_restarts_a_stopped_agent_is_started() -> None:
    d = desired()
    changes = plan(d, up_to_date(d, installed="cd" * 32, staged=PKG.digest))
    assert [c.step for c in changes] == ["package", "restart"]
    assert changes[0].detail.startswith("activate hacluster 0.1.0") and "(was cdcdcdcdcdcd)" in changes[0].detail
    assert [c.step for c in plan(d, up_to_date(d, active={AGENT: False}))] == ["start"]


def test_systemd_unit_not_enabled_gets_enabled() -> None:
    d = desired("systemd")
    assert [c.step for c in plan(d, up_to_date(d, systemd=True, enabled={AGENT: False}))] == ["enable"]


def test_service_kind_and_preflight() -> None:
    assert service_kind(host("store1"), Facts(systemd=True)) == "none"
    assert service_kind(host("store2"), Facts(systemd=True)) == "systemd"
    assert service_kind(host("store2"), Facts(systemd=False)) == "none"
    d = desired()
    assert preflight_problem(d, up_to_date(d)) is None
    assert "not root" in (preflight_problem(d, up_to_date(d, uid=1000)) or "")
    assert "Python >= 3.11" in (preflight_problem(d, up_to_date(d, python="3.9")) or "")
    assert "was not found" in (preflight_problem(d, up_to_date(d, python="")) or "")
    sd = desired("systemd")
    assert "systemd is not running" in (preflight_problem(sd, up_to_date(sd, systemd=False)) or "")


def test_store_guard_never_both_stores_down() -> None:
    h = host()
    healthy = {"healthy": True, "zookeeper": "connected"}
    assert store_guard(h, False, {"store2": None}) is None  # not running: starting it risks nothing
    assert store_guard(h, True, {"store2": healthy}) is None
    msg = store_guard(h, True, {"store2": None})
    assert msg and "store2 is not running or unreachable" in msg and "would leave no healthy store" in msg
    msg = store_guard(h, True, {"store2": {"healthy": False, "zookeeper": "connected", "reasons": ["raid degraded"]}})
    assert msg and "store2 is not healthy (raid degraded)" in msg


def test_facts_script_runs_in_sh(tmp_path: Path) -> None:
    lay = Layout(str(tmp_path))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "cluster.yml").write_text("cluster: x\n")
    os.chmod(tmp_path / "etc" / "cluster.yml", 0o640)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "deps-1.tar").write_bytes(b"")
    (tmp_path / "venvs" / PKG.short).mkdir(parents=True)
    (tmp_path / "venvs" / PKG.short / ".hacluster-wheel").write_text(PKG.digest + "\n")
    os.symlink(f"venvs/{PKG.short}", tmp_path / "current")
    script = facts_script(lay, "python3", PKG.digest, [lay.spec, lay.zk_auth], [AGENT])
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30).stdout
    f = parse_facts(out)
    assert f.uid == os.getuid() and f.python_ok and f.machine == os.uname().machine
    assert f.installed == PKG.digest == f.staged and f.current == f"venvs/{PKG.short}"
    assert f.dist == ("deps-1.tar",)
    assert f.files == {lay.spec: (hashlib.sha256(b"cluster: x\n").hexdigest(), "640")}
    assert f.active == {AGENT: False}


def test_agent_unit_from_the_shipped_template() -> None:
    template = (ROOT / "agents" / "hacluster-agent.service").read_text()
    lay = Layout("/opt/hc")
    unit = render_agent_unit(template, "agents/hacluster-agent.service", lay, "store1", None)
    assert "Environment=HACLUSTER_CONFIG=/opt/hc/etc/cluster.yml HACLUSTER_NODE=store1\n" in unit
    assert "ExecStart=/opt/hc/current/bin/hacluster agent --node ${HACLUSTER_NODE} $HACLUSTER_AGENT_ARGS\n" in unit
    assert "ExecStopPost=/opt/hc/current/bin/hacluster vip cleanup --node ${HACLUSTER_NODE}\n" in unit
    assert "EnvironmentFile=-/etc/default/hacluster-agent\n" in unit  # the host may still override
    assert "%H" not in unit.split("[Unit]", 1)[1].split("[Install]")[0].replace("# %H", "").replace("(default: %H", "")
    assert "/usr/local/bin" not in unit and "/etc/hacluster/cluster.yml" not in unit.split("[Unit]", 1)[1]
    assert unit.startswith("# Written by `hacluster deploy`")
    # a state dir outside /run/hacluster: agent and cleanup both get it, and it is writable
    unit = render_agent_unit(template, "t", lay, "store1", "/var/lib/hc")
    assert ("HACLUSTER_NODE=store1 HACLUSTER_STATE_DIR=/var/lib/hc\n"
            "ExecStartPre=+/bin/mkdir -p -m 0700 /var/lib/hc\nReadWritePaths=/var/lib/hc\n") in unit
    unit = render_agent_unit(template, "t", lay, "store1", "/run/hacluster/s1")
    assert "HACLUSTER_STATE_DIR=/run/hacluster/s1\n" in unit and "ReadWritePaths=/run" not in unit
    with pytest.raises(UserError, match="must set `Environment=HACLUSTER_CONFIG="):
        render_agent_unit("[Service]\nExecStart=/bin/true\n", "t.service", lay, "store1", None)


def test_spec_points_at_the_deployed_credentials_and_keeps_comments() -> None:
    text = (ROOT / "hacluster" / "examples" / "lab.yml").read_text()
    out, spec = render_spec(text, "lab.yml", "/opt/hc/etc/zk.auth", "/opt/hc/etc/api.token")
    assert spec.zookeeper.auth_file == "/opt/hc/etc/zk.auth" and spec.api.token_file == "/opt/hc/etc/api.token"
    assert "# The embedded default cluster" in out and "# bearer token for POST endpoints" in out
    same, _ = render_spec(text, "lab.yml", None, None)
    assert same == text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def _wait(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_supervisor_restarts_on_failure_cleans_up_and_stops_on_term(tmp_path: Path) -> None:
    lay = Layout(str(tmp_path))
    (tmp_path / "run").mkdir()
    log = tmp_path / "events"
    child = ["sh", "-c", f'echo "start $$" >> {log}; exec sleep 30']
    script = tmp_path / "supervise"
    script.write_text(render_supervisor("demo", lay, child, ["sh", "-c", f"echo cleanup >> {log}"]))
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    proc = subprocess.Popen(["setsid", "sh", str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pidfile = tmp_path / "run" / "demo.pid"
        assert _wait(lambda: pidfile.exists() and log.exists())
        assert int(pidfile.read_text()) == proc.pid
        first = int(log.read_text().split()[1])
        os.kill(first, signal.SIGKILL)  # a crash: cleaned up, restarted after 1 s
        assert _wait(lambda: log.read_text().count("start") == 2), log.read_text()
        assert log.read_text().splitlines()[1] == "cleanup"
        second = int(log.read_text().split("start")[-1].split()[0])
        proc.send_signal(signal.SIGTERM)  # the stop: child first, then cleanup, pid file gone
        assert proc.wait(timeout=10) == 0
        assert not _alive(second)
        assert log.read_text().splitlines()[-1] == "cleanup" and not pidfile.exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
