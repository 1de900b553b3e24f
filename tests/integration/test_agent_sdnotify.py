"""The agent under systemd's notification protocol (Type=notify, WatchdogSec=), without systemd:
a real unix datagram socket plays PID 1's $NOTIFY_SOCKET and a real agent process talks to it,
around a real ZooKeeper (Debian's package).

What systemd relies on: READY=1 once the loop runs, STATUS= saying what the node holds,
WATCHDOG=1 more often than the watchdog interval while the loop runs -- and none while the loop
is frozen (SIGSTOP), which is what makes systemd restart a stuck agent -- STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from hacluster import clock
from hacluster_lab.localcluster import LocalCluster
from hacluster.zkserver import ZooKeeperEnsemble
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

WATCHDOG_S = 1.0


class FakeSystemd:
    """Receives the datagrams on a socket path, each with its CLOCK_BOOTTIME arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.got.append((clock.now(), fields))

    def times(self, key: str, after: float = 0.0) -> list[float]:
        return [t for t, f in list(self.got) if key in f and t >= after]

    def statuses(self) -> list[str]:
        return [f["STATUS"] for _, f in list(self.got) if "STATUS" in f]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_ready_status_watchdog_from_the_loop_and_a_frozen_loop_stops_the_pings(
        zk_single: ZooKeeperEnsemble, tmp_path: Path) -> None:
    lc = LocalCluster(zk_single.hosts, tmp_path / "agents", n=1)
    sd = FakeSystemd(tmp_path / "notify")
    try:
        lc.start("node1", env={"NOTIFY_SOCKET": str(sd.path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))})
        wait_for(lambda: sd.times("READY"), 30, "READY=1")
        wait_for(lambda: any("holder of store" in s for s in sd.statuses()), 20, "STATUS: holder of store")
        assert any(s.startswith("node1: holder of store, ZooKeeper connected, healthy") for s in sd.statuses())

        t0 = clock.now()
        time.sleep(3 * WATCHDOG_S)
        pings = sd.times("WATCHDOG", after=t0)
        gaps = [b - a for a, b in zip([t0] + pings, pings + [clock.now()], strict=True)]
        print(f"\n{len(pings)} pings in {3 * WATCHDOG_S:g}s, longest gap {max(gaps) * 1e3:.0f} ms")
        assert len(pings) >= 3 and max(gaps) < WATCHDOG_S, gaps  # never long enough for systemd to act

        lc.signal("node1", signal.SIGSTOP)  # the loop is stuck: no more pings
        t_stop = clock.now()
        try:
            time.sleep(2 * WATCHDOG_S)
            late = sd.times("WATCHDOG", after=t_stop + 0.05)
            assert late == [], f"{len(late)} pings from a frozen agent"
        finally:
            lc.signal("node1", signal.SIGCONT)
        t_cont = clock.now()
        wait_for(lambda: sd.times("WATCHDOG", after=t_cont), 10, "pings again after SIGCONT")

        lc.signal("node1", signal.SIGTERM)
        wait_for(lambda: sd.times("STOPPING"), 10, "STOPPING=1")
        assert lc.procs["node1"].wait(15) == 0
        assert len(sd.times("READY")) == 1
    finally:
        lc.cleanup()
        sd.close()


def test_watchdog_meant_for_another_pid_and_ready_while_zookeeper_is_unreachable(tmp_path: Path) -> None:
    """Ready without ZooKeeper (the standby resources run; a boot must not hang on an outage),
    pinging through the connection backoff; WATCHDOG_PID of another process: no pings at all."""
    lc = LocalCluster("127.0.0.1:1", tmp_path / "agents", n=1, session_timeout=2.0)  # attempts of 2 s
    sd = FakeSystemd(tmp_path / "notify")
    try:
        lc.start("node1", env={"NOTIFY_SOCKET": str(sd.path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))})
        wait_for(lambda: sd.times("READY"), 30, "READY=1 without ZooKeeper")
        assert any("waiting for ZooKeeper (attempt 1)" in s for s in sd.statuses()), sd.statuses()
        t0 = clock.now()
        time.sleep(6.0)  # connection attempts (2 s each, the loop blocked) and backoff pauses between
        pings = sd.times("WATCHDOG", after=t0)
        gaps = [b - a for a, b in zip([t0] + pings, pings + [clock.now()], strict=True)]
        print(f"\n{len(pings)} pings while connecting, longest gap {max(gaps) * 1e3:.0f} ms")
        # the longest gap is one attempt (max(2 s, session_timeout_s)): the unit's WatchdogSec=30s covers it
        assert len(pings) >= 3 and max(gaps) < 3.0, gaps  # without pings between attempts: >= 3 s

        lc.stop_proc("node1")
        sd.got.clear()
        lc.start("node1", env={"NOTIFY_SOCKET": str(sd.path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
                               "WATCHDOG_PID": str(os.getpid())})  # not the agent's pid
        wait_for(lambda: sd.times("READY"), 30, "READY=1")
        time.sleep(2 * WATCHDOG_S)
        assert sd.times("WATCHDOG") == []
    finally:
        lc.cleanup()
        sd.close()
