"""Real OCF agents from Debian's resource-agents, run unchanged through OcfResource:
ocf:heartbeat:Dummy (state file) and ocf:heartbeat:postfix managing a private Postfix instance
(own config/queue/data directory, smtpd on 127.0.0.1:<free port>, nothing ever relayed).

The postfix agent insists that a non-default config_dir is listed in the default instance's
`alternate_config_directories`. The tests add their one directory through the lab's own editor
(a marked block, under an flock on main.cf) and remove exactly that block afterwards; with no
main.cf (Debian's "No configuration"), the file is created for the test and removed again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from hacluster_lab.lab.postfix import SYSTEM_MAIN_CF, register_config_dirs, unregister_config_dirs
from hacluster.resources.base import OCF
from hacluster.resources.ocf import OcfResource
from .postfix_conf import MASTER_CF, main_cf

pytestmark = pytest.mark.timeout(120)


@contextmanager
def registered(d: Path) -> Iterator[None]:
    """`d` listed in the system main.cf for the test's duration, through the lab's own editor
    (one block marked with `d`; an absent main.cf is created and removed again)."""
    register_config_dirs([d], d)
    try:
        yield
    finally:
        unregister_config_dirs(d)


# --------------------------------------------------------------------------- fixtures


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_instance(base: Path) -> None:
    subprocess.run(["postfix", "-c", str(base / "etc"), "abort"], capture_output=True, timeout=20)
    try:
        pid = int((base / "queue" / "pid" / "master.pid").read_text().split()[0])
        if Path(f"/proc/{pid}/comm").read_text().strip() == "master":
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


@pytest.fixture
def instance() -> Iterator[tuple[Path, int]]:
    base = Path(tempfile.mkdtemp(prefix="hcs-ocf-pf-", dir="/var/tmp"))
    base.chmod(0o755)  # the postfix user must traverse it (the agent checks data_directory as postfix)
    port = free_port()
    try:
        for sub in ("etc", "queue", "data"):
            (base / sub).mkdir()
        shutil.chown(base / "data", "postfix")
        (base / "etc" / "main.cf").write_text(main_cf(base, "ocf-test.example"))
        (base / "etc" / "master.cf").write_text(MASTER_CF.format(port=port))
        with registered(base / "etc"):
            try:
                yield base, port
            finally:
                _kill_instance(base)
        assert not SYSTEM_MAIN_CF.exists() or str(base / "etc") not in SYSTEM_MAIN_CF.read_text()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def banner(port: int, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                data = s.recv(512)
                s.sendall(b"QUIT\r\n")
                return data
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --------------------------------------------------------------------------- tests


def test_postfix_agent_runs_a_private_instance(instance: tuple[Path, int]) -> None:
    base, port = instance
    r = OcfResource("mta", "ocf:heartbeat:postfix", {"config_dir": str(base / "etc")}, timeout_s=40)
    assert r.ref.path == Path("/usr/lib/ocf/resource.d/heartbeat/postfix")
    assert r.validate_all() == OCF.SUCCESS, r.last and r.last.stderr
    assert r.monitor() == OCF.NOT_RUNNING  # the probe before start
    assert r.start() == OCF.SUCCESS, r.last and r.last.stderr
    assert r.monitor() == OCF.SUCCESS
    assert banner(port).startswith(b"220 ocf-test.example ESMTP Postfix")
    assert r.start() == OCF.SUCCESS  # idempotent
    assert r.stop() == OCF.SUCCESS
    assert r.monitor() == OCF.NOT_RUNNING
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert r.stop() == OCF.SUCCESS  # stop of a stopped resource


def test_postfix_agent_refuses_an_unlisted_config_dir(tmp_path: Path) -> None:
    """The agent's own validation passes through as its OCF code (ERR_INSTALLED) and reason."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n")
    r = OcfResource("mta", "ocf:heartbeat:postfix", {"config_dir": str(etc)}, timeout_s=20)
    assert r.start() == OCF.ERR_INSTALLED
    assert "alternate_config_directories" in r.last.reason()


def test_dummy_agent_lifecycle_and_environment(tmp_path: Path) -> None:
    state = tmp_path / "dummy.state"
    r = OcfResource("d", "ocf:heartbeat:Dummy", {"state": str(state)}, timeout_s=10, node="store1")
    r.set_fencing_token(7)
    assert r.monitor() == OCF.NOT_RUNNING
    assert r.start() == OCF.SUCCESS and state.exists()
    assert r.monitor() == OCF.SUCCESS
    assert r.stop() == OCF.SUCCESS and not state.exists()
    assert r.monitor() == OCF.NOT_RUNNING
    meta = r.meta_data()
    assert meta.name == "Dummy" and {"state", "fake"} <= {p.name for p in meta.parameters}


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    agent = tmp_path / "slow"
    pidfile = tmp_path / "child.pid"
    agent.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    agent.chmod(0o755)
    r = OcfResource("slow", str(agent), timeout_s=0.5)
    t0 = time.monotonic()
    assert r.start() == OCF.ERR_GENERIC
    assert time.monotonic() - t0 < 5
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_our_mta_agent_runs_the_same_instance(instance: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """agents/ocf/hacluster-mta (our mta resource behind an OCF script) on the same private Postfix."""
    monkeypatch.setenv("HACLUSTER_PYTHON", sys.executable)
    base, port = instance
    script = Path(__file__).resolve().parents[2] / "agents" / "ocf" / "hacluster-mta"
    r = OcfResource("mta", str(script), {"config_dir": str(base / "etc"), "state_dir": str(base / "st")}, timeout_s=40)
    assert r.validate_all() == OCF.SUCCESS, r.last.stderr
    assert r.monitor() == OCF.NOT_RUNNING
    assert r.start() == OCF.SUCCESS, r.last.stderr
    assert r.monitor() == OCF.SUCCESS
    assert banner(port).startswith(b"220 ocf-test.example ESMTP Postfix")
    assert r.stop() == OCF.SUCCESS and r.monitor() == OCF.NOT_RUNNING
