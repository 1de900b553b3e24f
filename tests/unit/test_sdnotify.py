"""sd_notify without libsystemd: datagrams to a real unix socket (path and abstract name), the
watchdog variables as sd_watchdog_enabled() reads them, and never an exception into the agent.
The agent sending them for real: tests/integration/test_agent_sdnotify.py."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster.agent.sdnotify import SdNotify, socket_address, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    s.bind(path)
    s.settimeout(2)
    yield s, path
    s.close()


def test_path_socket_gets_each_message_as_one_datagram(listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "KEEP": "1"}
    sd = SdNotify.from_environ(env, pid=123)
    assert sd.enabled and sd.watchdog_s == 4.0
    assert env == {"KEEP": "1"}  # children (Postfix, scripts) must not report in our name
    sd.ready("up")
    sd.ready("again")  # once only
    sd.status("holder of store", watchdog=True)
    sd.status("holder of store", watchdog=True)  # unchanged status: only the ping
    sd.stopping("bye")
    got = [s.recv(4096).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=up", "WATCHDOG=1\nSTATUS=holder of store", "WATCHDOG=1", "STOPPING=1\nSTATUS=bye"]
    s.settimeout(0.2)
    with pytest.raises(socket.timeout):
        s.recv(4096)


def test_abstract_namespace_socket() -> None:
    name = f"hacluster-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2)
    try:
        sd = SdNotify.from_environ({"NOTIFY_SOCKET": "@" + name})
        sd.watchdog()  # no watchdog configured: nothing sent
        sd.ready()
        assert s.recv(4096) == b"READY=1"
    finally:
        s.close()


def test_addresses() -> None:
    assert socket_address("@x") == b"\0x" and socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("relative") is None and socket_address("@") is None and socket_address("vsock:2:1") is None


@pytest.mark.parametrize("env,want", [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None), ({"WATCHDOG_USEC": "x"}, None), ({}, None),
    ({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "x"}, None),
])
def test_watchdog_interval(env: dict[str, str], want: float | None) -> None:
    assert watchdog_interval(env, 42) == want


def test_without_socket_or_with_a_dead_one_nothing_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    off = SdNotify.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not off.enabled and off.watchdog_s is None and off.send("READY=1") is False
    dead = SdNotify.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone"), "WATCHDOG_USEC": "1000000"})
    assert dead.send("WATCHDOG=1") is False and dead.send("WATCHDOG=1") is False
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1  # logged once
    assert SdNotify.from_environ({"NOTIFY_SOCKET": "relative/path"}).enabled is False
