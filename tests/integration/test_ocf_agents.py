"""Real OCF agents from Debian's resource-agents, run unchanged through OcfResource:
ocf:heartbeat:Dummy (state file) and ocf:heartbeat:postfix managing a private Postfix instance
(own config/queue/data directory, smtpd on 127.0.0.1:<free port>, nothing ever relayed).

The postfix agent insists that a non-default config_dir is listed in the default instance's
`alternate_config_directories`. /etc/postfix/main.cf is shared with the lab helper, so we only ever
add our one directory to the list and remove exactly that directory afterwards, under
/run/hacluster-postfix-main-cf.lock *and* an flock on main.cf itself (what the lab takes).
"""

from __future__ import annotations

import fcntl
import os
import re
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

from hacluster.resources.base import OCF
from hacluster.resources.ocf import OcfResource
from .postfix_conf import MASTER_CF, main_cf

pytestmark = pytest.mark.timeout(120)

SYSTEM_MAIN_CF = Path("/etc/postfix/main.cf")
LOCK_FILE = Path("/run/hacluster-postfix-main-cf.lock")
KEY = "alternate_config_directories"




# --------------------------------------------------------------------------- shared main.cf


@contextmanager
def _main_cf_locked() -> Iterator[object]:
    with open(LOCK_FILE, "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        with open(SYSTEM_MAIN_CF, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _assignments(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) physical line of every `alternate_config_directories =` logical line."""
    out, i = [], 0
    while i < len(lines):
        if re.match(rf"{KEY}\s*=", lines[i]):
            j = i
            while j + 1 < len(lines) and lines[j + 1][:1] in (" ", "\t") and lines[j + 1].strip():
                j += 1
            out.append((i, j))
            i = j
        i += 1
    return out


def add_alternate(text: str, d: str) -> tuple[str, bool]:
    """Append `d` to the effective (last) assignment, or add one; (new text, created a line)."""
    lines = text.splitlines(keepends=True)
    found = _assignments(lines)
    if not found:
        sep = "" if not text or text.endswith("\n") else "\n"
        return f"{text}{sep}{KEY} = {d}\n", True
    first, last = found[-1]
    value = "".join(lines[first:last + 1]).split("=", 1)[1]
    if d in re.split(r"[,\s]+", value):
        return text, False
    lines[last] = lines[last].rstrip("\n") + f", {d}\n"
    return "".join(lines), False


def remove_alternate(text: str, d: str, drop_if_empty: bool) -> str:
    """Remove exactly `d` from every assignment (other entries keep their order)."""
    lines = text.splitlines(keepends=True)
    for first, last in reversed(_assignments(lines)):
        value = "".join(lines[first:last + 1]).split("=", 1)[1]
        items = [v for v in re.split(r"[,\s]+", value) if v]
        if d not in items:
            continue
        rest = [v for v in items if v != d]
        lines[first:last + 1] = [] if not rest and drop_if_empty else [f"{KEY} = {', '.join(rest)}\n"]
    return "".join(lines)


def test_main_cf_edits_touch_only_our_dir() -> None:
    lab = "# x\nalternate_config_directories = /a, /b\n"
    new, created = add_alternate(lab, "/mine")
    assert (new, created) == ("# x\nalternate_config_directories = /a, /b, /mine\n", False)
    assert remove_alternate(new, "/mine", created) == lab
    new, created = add_alternate("k = v", "/mine")
    assert created and remove_alternate(new, "/mine", created) == "k = v\n"


@contextmanager
def registered(d: Path) -> Iterator[None]:
    with _main_cf_locked() as f:
        text = f.read()
        new, created = add_alternate(text, str(d))
        f.seek(0), f.write(new), f.truncate()
    try:
        yield
    finally:
        with _main_cf_locked() as f:
            text = f.read()
            new = remove_alternate(text, str(d), created)
            f.seek(0), f.write(new), f.truncate()


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
        assert str(base / "etc") not in SYSTEM_MAIN_CF.read_text()
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
