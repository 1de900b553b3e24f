"""Operator commands through the real CLI (subprocesses, real ZooKeeper): --json everywhere,
and errors that say what to check next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hacluster_lab.localcluster import spec_text


def hacluster(*args: str, config: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=timeout)


def test_zookeeper_unreachable_names_hosts_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yml"
    cfg.write_text(spec_text("127.0.0.1:26999,127.0.0.1:26998", n=2, cluster="honozk"))  # nothing listens there
    for args in (("status",), ("maintenance", "status", "--json")):  # 5 s each: the connect timeout
        out = hacluster(*args, config=cfg)
        assert out.returncode == 1 and out.stdout == "", (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert lines[0].startswith("hacluster: cannot reach ZooKeeper within 5s: tried 127.0.0.1:26999,127.0.0.1:26998 "
                                   f"(zookeeper.hosts in {cfg};"), lines[0]
        assert "echo ruok" in lines[0]


@pytest.mark.zk
def test_maintenance_and_status_json(zk_single, tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yml"
    cfg.write_text(spec_text(zk_single.hosts, n=2, cluster=f"hoop{os.getpid()}"))
    try:
        on = hacluster("maintenance", "on", "--json", config=cfg)
        assert on.returncode == 0, on.stderr
        assert json.loads(on.stdout) == {"cluster": f"hoop{os.getpid()}", "maintenance": True, "changed": True}
        st = json.loads(hacluster("status", "--json", config=cfg).stdout)
        assert st["maintenance"] is True and st["members"] == {"node1": None, "node2": None}
        # no queue check in this spec: no queues, and the text form says how to get them
        assert st["queues"] == {} and st["fallback_queue"]["reporting"] is False
        text = hacluster("status", config=cfg).stdout
        assert "MAINTENANCE" in text and "MTA queues: not reported (add `- {check: queue" in text
        assert json.loads(hacluster("status", "--qshape", "--json", config=cfg).stdout)["queues"] == {}
        assert "no MTA reports its queue" in hacluster("status", "--qshape", config=cfg).stdout
        off = hacluster("maintenance", "off", "--json", config=cfg)
        assert json.loads(off.stdout)["maintenance"] is False
        assert json.loads(hacluster("maintenance", "status", "--json", config=cfg).stdout) == {
            "cluster": f"hoop{os.getpid()}", "maintenance": False, "changed": False}
        assert hacluster("maintenance", "status", config=cfg).stdout == "maintenance off\n"
    finally:
        hacluster("maintenance", "off", config=cfg)


@pytest.mark.zk
def test_spec_from_flag_else_environment(zk_single, tmp_path: Path) -> None:
    """`-c` beats $HACLUSTER_CONFIG, which is used without -c; a missing one is exit 2, one line."""
    cfg = tmp_path / "cluster.yml"
    cfg.write_text(spec_text(zk_single.hosts, n=2, cluster=f"hoenv{os.getpid()}"))
    base = [sys.executable, "-m", "hacluster", "maintenance", "status", "--json"]

    def run(*extra: str, env_spec: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "HACLUSTER_CONFIG": str(env_spec)}
        return subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60, env=env)

    by_env = run(env_spec=cfg)
    assert by_env.returncode == 0 and json.loads(by_env.stdout)["cluster"] == f"hoenv{os.getpid()}", by_env.stderr
    by_flag = run("-c", str(cfg), env_spec=tmp_path / "gone.yml")
    assert by_flag.returncode == 0 and json.loads(by_flag.stdout)["cluster"] == f"hoenv{os.getpid()}", by_flag.stderr
    missing = run(env_spec=tmp_path / "gone.yml")
    assert missing.returncode == 2 and missing.stdout == "" and missing.stderr.count("\n") == 1
    assert f"{tmp_path / 'gone.yml'} (from $HACLUSTER_CONFIG) does not exist" in missing.stderr
    assert "-c/--config FILE, else $HACLUSTER_CONFIG, else /etc/hacluster/cluster.yml" in missing.stderr
