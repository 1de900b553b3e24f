"""Start and stop real ZooKeeper servers (Debian's `zookeeper` package) for tests, the loopback
demo, benchmarks and the netns lab.

Why a module of its own: everything above it (leases, failover drills, benchmarks) is only as
honest as the ZooKeeper it runs against, so we run the real server, not a fake, and make cleanup
total: every server is its own session/process group, killed as a group, with a pid file (pid and
start time, so a reused pid is never killed) in `base_dir` for `cleanup_stale` after a crashed run.

Classpath: Debian's zookeeper.jar names its dependencies in its manifest `Class-Path`
(slf4j-api, netty, jute, jetty, ...) but ships no slf4j binding on it, so the server would log
nothing (slf4j NOP). We add slf4j-log4j12 + log4j-1.2 (both dependencies of libzookeeper-java)
and point log4j at our own `log4j.properties`, so each server logs to `DIR/zookeeper.log`.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil

from .errors import EXIT_FAILED, UserError
from .zkconfig import (AUTOPURGE_INTERVAL_H, AUTOPURGE_SNAP_RETAIN, JAVA_DIR, JVM_OPTS, LOG4J_PROPERTIES,  # noqa: F401
                       LOG_JARS, MAIN_CLASS, ZK_JAR, ZkServerSpec, host_port, render_config)  # re-exported

SERVING_MODES = frozenset({"leader", "follower", "standalone"})
PROBE_TIMEOUT = 1.0  # one 4lw exchange; loopback answers in milliseconds
POLL_INTERVAL = 0.05
_EXCEPTION_LINE = re.compile(r"^[\w.$]+(Exception|Error)\b")  # "java.net.BindException: ..."
TERM_GRACE = 10.0  # seconds a SIGTERMed server gets before SIGKILL


class ZkServerError(UserError):
    """A ZooKeeper server would not start or serve; the message names the server and its log."""

    exit_code = EXIT_FAILED


def four_letter(address: str, port: int, cmd: str = "srvr", timeout: float = PROBE_TIMEOUT) -> str:
    """Send a four-letter word and return the whole answer ("" if the server closed at once)."""
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(cmd.encode())
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def parse_mode(srvr_answer: str) -> str | None:
    """The `Mode:` of a `srvr` answer: leader/follower/standalone/observer, None if not serving."""
    for line in srvr_answer.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


def _port_in_use(address: str, port: int) -> bool:
    """True if something listens on address:port (TIME_WAIT leftovers don't count)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


def _log_tail(path: Path, lines: int = 3) -> str:
    """The last ERROR lines and exception headlines of a log (else its last lines), on one line."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [ln for ln in text if " ERROR " in ln or _EXCEPTION_LINE.match(ln)]
    return " | ".join(ln.strip() for ln in (errors or text)[-lines:]) or "(empty)"


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ZooKeeperEnsemble:
    """N real ZooKeeper servers under `base_dir/zk<id>/` (config, data, log, pid file).

    `wrap(spec)` is a command prefix, e.g. `["ip", "netns", "exec", "zk1"]` for the lab; then
    the 4lw probes run through the same prefix, so they reach the server from its namespace.
    """

    def __init__(
        self,
        base_dir: Path,
        servers: list[ZkServerSpec],
        tick_ms: int = 200,
        wrap: Callable[[ZkServerSpec], list[str]] | None = None,
    ) -> None:
        if not servers:
            raise ValueError("a ZooKeeper ensemble needs at least one server")
        ids = [s.id for s in servers]
        if len(set(ids)) != len(ids) or min(ids) < 1 or max(ids) > 255:
            raise ValueError(f"server ids must be distinct and in 1..255, got {ids}")
        if tick_ms < 1:
            raise ValueError(f"tick_ms must be positive, got {tick_ms}")
        self.base_dir = Path(base_dir)
        self.servers = list(servers)
        self.tick_ms = tick_ms
        self.wrap = wrap
        self._by_id = {s.id: s for s in servers}
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._atexit = False

    @classmethod
    def local(cls, base_dir: Path, n: int = 1, base_port: int = 21810, tick_ms: int = 200) -> "ZooKeeperEnsemble":
        """n servers on 127.0.0.1; server k+1 uses ports base_port+k*10 + 0 (client), 1, 2."""
        servers = [
            ZkServerSpec(k + 1, "127.0.0.1", base_port + k * 10, base_port + k * 10 + 1, base_port + k * 10 + 2)
            for k in range(n)
        ]
        return cls(base_dir, servers, tick_ms=tick_ms)

    @property
    def hosts(self) -> str:
        """kazoo connection string for every server."""
        return ",".join(host_port(s.address, s.client_port) for s in self.servers)

    def server_dir(self, sid: int) -> Path:
        return self.base_dir / f"zk{sid}"

    def log_path(self, sid: int) -> Path:
        return self.server_dir(sid) / "zookeeper.log"

    def running_ids(self) -> list[int]:
        """Ids of servers we started whose process is still alive."""
        return [sid for sid, p in sorted(self._procs.items()) if p.poll() is None]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Start every server and wait until all of them serve (a quorum with one leader)."""
        if not self.running_ids():  # pid files under base_dir then belong to a crashed run
            self.cleanup_stale(self.base_dir)
        for spec in self.servers:
            self.start_server(spec.id)
        self.wait_serving(timeout)

    def start_server(self, sid: int) -> None:
        """Start one server (no-op if ours is running); its data dir survives restarts."""
        spec = self._by_id[sid]
        proc = self._procs.get(sid)
        if proc is not None and proc.poll() is None:
            return
        self._check_java()
        if self.wrap is None:  # in a namespace the address isn't ours to probe from here
            for port in (spec.client_port, spec.peer_port, spec.election_port):
                if _port_in_use(spec.address, port):
                    raise ZkServerError(
                        f"zk{sid}: {host_port(spec.address, port)} is already in use "
                        f"(a stale server? ZooKeeperEnsemble.cleanup_stale(base_dir) kills ours)"
                    )
        d = self.server_dir(sid)
        data = d / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{sid}\n")
        cfg = d / "zoo.cfg"
        cfg.write_text(render_config(spec, self.servers, data, self.tick_ms))
        (d / "log4j.properties").write_text(LOG4J_PROPERTIES)
        cmd = [*(self.wrap(spec) if self.wrap else []), *self.java_command(d, cfg)]
        with open(d / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._procs[sid] = proc
        create_time = psutil.Process(proc.pid).create_time()
        (d / "zk.pid").write_text(f"{proc.pid} {create_time!r}\n")
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True

    def stop_server(self, sid: int, kill: bool = True) -> None:
        """Stop one server: SIGKILL to its process group by default (a crash), else SIGTERM."""
        proc = self._procs.pop(sid, None)
        if proc is None:
            return
        if not kill and proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(TERM_GRACE)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(proc.pid, signal.SIGKILL)  # also any child a wrapper left in the group
        try:
            proc.wait(TERM_GRACE)
        except subprocess.TimeoutExpired:  # unkillable (D state): nothing more we can do
            pass
        (self.server_dir(sid) / "zk.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        """Kill every server (idempotent)."""
        for sid in list(self._procs):
            self.stop_server(sid, kill=True)
        if self._atexit:
            atexit.unregister(self.stop)
            self._atexit = False

    def __enter__(self) -> "ZooKeeperEnsemble":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def cleanup_stale(base_dir: Path) -> list[int]:
        """Kill servers a crashed run left under base_dir (pid files); return the pids killed.

        A pid file holds pid and start time, so a pid the kernel has since reused is left alone.
        """
        killed = []
        for pidfile in sorted(Path(base_dir).glob("zk*/zk.pid")):
            try:
                pid_s, ctime_s = pidfile.read_text().split()
                pid, ctime = int(pid_s), float(ctime_s)
                alive = abs(psutil.Process(pid).create_time() - ctime) < 0.01
            except (ValueError, OSError, psutil.Error):
                alive = False
            if alive and pid != os.getpgrp():
                _kill_group(pid, signal.SIGKILL)
                try:
                    psutil.Process(pid).wait(TERM_GRACE)
                except (psutil.Error, psutil.TimeoutExpired):
                    pass
                killed.append(pid)
            pidfile.unlink(missing_ok=True)
        return killed

    # -- observation -----------------------------------------------------------------------

    def java_command(self, server_dir: Path, cfg: Path) -> list[str]:
        classpath = ":".join([str(server_dir), str(ZK_JAR), *(str(j) for j in LOG_JARS if j.exists())])
        return [
            "java",
            *JVM_OPTS,
            "-cp",
            classpath,
            f"-Dzookeeper.log.dir={server_dir}",
            f"-Dlog4j.configuration=file:{server_dir / 'log4j.properties'}",
            MAIN_CLASS,
            str(cfg),
        ]

    def srvr(self, sid: int) -> str | None:
        """The server's `srvr` answer, or None if it can't be reached."""
        spec = self._by_id[sid]
        try:
            if self.wrap is None:
                return four_letter(spec.address, spec.client_port)
            res = subprocess.run(
                [*self.wrap(spec), sys.executable, "-m", "hacluster.zkserver", spec.address, str(spec.client_port)],
                capture_output=True,
                timeout=PROBE_TIMEOUT + 5,
            )
            return res.stdout.decode(errors="replace") if res.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    def modes(self) -> dict[int, str | None]:
        """Mode of every server we have started (None: not running or not serving)."""
        out: dict[int, str | None] = {}
        for sid in sorted(self._procs):
            answer = self.srvr(sid) if self._procs[sid].poll() is None else None
            out[sid] = parse_mode(answer) if answer else None
        return out

    def leader_id(self) -> int | None:
        """The id of the server answering `Mode: leader` (or the standalone one), else None."""
        for sid, mode in self.modes().items():
            if mode in ("leader", "standalone"):
                return sid
        return None

    def wait_serving(self, timeout: float) -> None:
        """Wait until every running server serves and exactly one leads; raise with log tails."""
        deadline = time.monotonic() + timeout
        while True:
            dead = {sid: p.returncode for sid, p in self._procs.items() if p.poll() is not None}
            if dead:
                sid, rc = next(iter(dead.items()))
                out = self.server_dir(sid) / "stdout.log"
                jvm = f"; {out}: {_log_tail(out)}" if out.exists() and out.stat().st_size else ""
                log = self.log_path(sid)
                raise ZkServerError(f"zk{sid} exited with code {rc}; {log}: {_log_tail(log)}{jvm}")
            modes = self.modes()
            leaders = [m for m in modes.values() if m in ("leader", "standalone")]
            if modes and all(m in SERVING_MODES for m in modes.values()) and len(leaders) == 1:
                return
            if time.monotonic() >= deadline:
                waiting = sorted(sid for sid, m in modes.items() if m not in SERVING_MODES)
                detail = "; ".join(f"{self.log_path(s)}: {_log_tail(self.log_path(s), 2)}" for s in waiting)
                raise ZkServerError(
                    f"ZooKeeper not serving after {timeout:g}s (modes {modes}); {detail or 'no single leader'}"
                )
            time.sleep(POLL_INTERVAL)

    def _check_java(self) -> None:
        if shutil.which("java") is None:
            raise ZkServerError("java not found on PATH: install a JRE (Debian: default-jre-headless)")
        if not ZK_JAR.exists():
            raise ZkServerError(f"{ZK_JAR} not found: install Debian's zookeeper package (apt-get install zookeeper)")


def _main(argv: list[str]) -> int:
    """`python -m hacluster.zkserver ADDR PORT [CMD]`: print a 4lw answer (probe inside a netns)."""
    try:
        print(four_letter(argv[0], int(argv[1]), argv[2] if len(argv) > 2 else "srvr"), end="")
    except (OSError, IndexError, ValueError) as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
