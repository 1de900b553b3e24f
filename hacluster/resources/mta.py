"""The `mta` resource: one Postfix instance (its own config directory) started, stopped, reloaded
and monitored with OCF exit codes.

Params (spec `type: mta`): `config_dir` (the instance's main.cf/master.cf directory; default: the
system instance), `restart_attempts` (extra `postfix start` tries before start reports failure,
default 1), `kind` (only `postfix`), `cgroup` (a cgroup v2 directory the instance is started in,
so the role's guard can kill it whole at the lease deadline; default: its process group). Placeholders {node}/{role}/{cluster}/{state_dir} are expanded
by the factory, so one spec line serves every node.

Listed in the role's `run_on_standby`, the instance runs on every candidate (listening on all
addresses) and only the VIP moves: the agent starts it at agent start and never stops it on
losing the role, and start() on the takeover path is a pid-file read (docs/vip.md). Such an
instance is also kept *warm*: Postfix forks smtpd only when a connection arrives (30-180 ms on a
busy host), so a thread opens an SMTP session to `warm_address` (default 127.0.0.1:25; "" = off)
every WARM_INTERVAL_S, below smtpd's max_idle (100 s), and once more at prepare() just before a
takeover: the first client through the VIP meets an idle smtpd that answers at once.

Stop does what `postfix stop` does (SIGTERM to the master, which takes its children down) but
polls every 20 ms instead of `postfix-script`'s 1 s sleeps, and ends with SIGKILL to the master's
process group, so a stop returns within `stop_timeout_s` whatever state Postfix is in.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from ..agent.priority import normal_argv
from ..errors import UserError
from .base import OCF, Resource

log = logging.getLogger(__name__)

KINDS = ("postfix",)
POLL_S = 0.02
WARM_INTERVAL_S = 30.0  # below Postfix's max_idle (100 s): an smtpd stays idle, ready to accept
DEFAULT_WARM_ADDRESS = "127.0.0.1:25"


class MtaResource(Resource):
    """A Postfix instance. `wrap` prefixes every command (e.g. `ip netns exec NS` in the lab)."""

    def __init__(self, name: str, config_dir: str | Path | None = None, restart_attempts: int = 1,
                 kind: str = "postfix", start_timeout_s: float = 20.0, stop_timeout_s: float = 5.0,
                 wrap: Sequence[str] = (), standby_running: bool = False,
                 warm_address: str = DEFAULT_WARM_ADDRESS, cgroup: str | Path | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unsupported MTA kind {kind!r} (supported: {', '.join(KINDS)})")
        self.name = name
        self.config_dir = Path(config_dir) if config_dir else None
        self.restart_attempts = max(0, int(restart_attempts))
        self.kind = kind
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.wrap = list(wrap)
        #: runs on the standby too (the role's run_on_standby; the agent sets it)
        self.standby_running = standby_running
        self.warm_address = _host_port(warm_address) if warm_address else None
        self._warm_wake = threading.Event()
        self._warm_thread: threading.Thread | None = None
        self.warmed = 0  # SMTP sessions the warm-keeper completed
        self._queue_dir: Path | None = None
        #: a cgroup v2 directory the instance runs in (its master is moved there at start): the
        #: guard kills it whole with cgroup.kill; None = process group and descendants
        self.cgroup = Path(cgroup) if cgroup else None

    # ------------------------------------------------------------------ helpers

    def _cmd(self, *args: str) -> list[str]:
        conf = ["-c", str(self.config_dir)] if self.config_dir else []
        if args[:1] == ("start",) and self.cgroup is not None:
            # the master and everything it forks run in the instance's cgroup (created here)
            enter = 'mkdir -p "$1" && echo $$ > "$1/cgroup.procs" && shift && exec "$@"'
            return [*self.wrap, "sh", "-c", enter, "sh", str(self.cgroup), "postfix", *conf, *args]
        return [*self.wrap, "postfix", *conf, *args]

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str] | None:
        try:
            # Postfix runs at the priority the agent started with, not at the agent's raised one
            cmd = normal_argv(self._cmd(*args)) if args[:1] == ("start",) else self._cmd(*args)
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            log.error("mta %s: postfix %s timed out after %gs", self.name, " ".join(args), timeout)
            return None
        except OSError as err:
            log.error("mta %s: cannot run postfix: %s", self.name, err)
            return None

    def _problem(self) -> OCF | None:
        """ERR_INSTALLED / ERR_CONFIGURED when Postfix or the instance config is missing."""
        if shutil.which("postfix") is None:
            return OCF.ERR_INSTALLED
        if self.config_dir is not None and not (self.config_dir / "main.cf").is_file():
            log.error("mta %s: %s/main.cf not found", self.name, self.config_dir)
            return OCF.ERR_CONFIGURED
        return None

    def queue_dir(self) -> Path | None:
        if self._queue_dir is None:
            conf = ["-c", str(self.config_dir)] if self.config_dir else []
            try:
                out = subprocess.run(["postconf", *conf, "-h", "queue_directory"], capture_output=True,
                                     text=True, timeout=10, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                return None
            if out.returncode == 0 and out.stdout.strip():
                self._queue_dir = Path(out.stdout.strip())
        return self._queue_dir

    def master_pid(self) -> int | None:
        """The master's pid from its pid file if that process is alive (not a reused pid check:
        Postfix itself trusts the same file, and `status` confirms with the file lock)."""
        q = self.queue_dir()
        if q is None:
            return None
        try:
            pid = int((q / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return None if _gone(pid) else pid

    def self_fence_steps(self) -> list[tuple[str, str]]:
        """A holder-only instance is killed by the role's guard at the deadline: its cgroup if it
        has one, else the master's process group and descendants (from the pid file, read when
        the guard acts). An instance that runs on the standby too is left alone."""
        if self.standby_running:
            return []
        if self.cgroup is not None:
            return [("kill-cgroup", str(self.cgroup))]
        q = self.queue_dir()
        if q is None:
            log.error("mta %s: queue_directory unknown: the guard cannot kill this instance at the deadline", self.name)
            return []
        return [("kill-pidfile", str(q / "pid" / "master.pid"))]

    # ------------------------------------------------------------------ OCF actions

    def monitor(self) -> OCF:
        problem = self._problem()
        if problem is not None:
            return problem
        proc = self._run("status", timeout=10)
        if proc is None:
            return OCF.ERR_GENERIC
        if proc.returncode == 0:
            return OCF.SUCCESS
        # "not running" goes to the instance's maillog, not to us: the exit code says it
        text = (proc.stdout + proc.stderr).strip()
        if "fatal" in text and "not running" not in text:
            log.warning("mta %s: postfix status: %s", self.name, text[-300:])
            return OCF.ERR_GENERIC
        return OCF.NOT_RUNNING

    def start(self) -> OCF:
        problem = self._problem()
        if problem is not None:
            return problem
        if self.standby_running and self.master_pid() is not None:
            self._keep_warm()
            return OCF.SUCCESS  # on the takeover path: a pid-file read, not `postfix status` (~0.1 s)
        if self.monitor() == OCF.SUCCESS:
            self._keep_warm()
            return OCF.SUCCESS
        for attempt in range(1 + self.restart_attempts):
            proc = self._run("start", timeout=self.start_timeout_s)
            deadline = time.monotonic() + self.start_timeout_s
            while time.monotonic() < deadline:
                rc = self.monitor()
                if rc == OCF.SUCCESS:
                    self._keep_warm()
                    return OCF.SUCCESS
                if proc is not None and proc.returncode != 0:
                    break  # postfix-script said why; no point waiting
                time.sleep(POLL_S * 5)
            detail = (proc.stderr or proc.stdout).strip()[-300:] if proc is not None else "timed out"
            log.warning("mta %s: start attempt %d failed: %s", self.name, attempt + 1, detail)
        return OCF.ERR_GENERIC

    def stop(self) -> OCF:
        problem = self._problem()
        if problem == OCF.ERR_INSTALLED:
            return OCF.SUCCESS  # nothing installed, nothing running (OCF: stop of a stopped resource)
        pid = self.master_pid()
        if pid is None:
            return OCF.SUCCESS if self.monitor() != OCF.SUCCESS else self._stop_by_script()
        deadline = time.monotonic() + self.stop_timeout_s
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        # done when the master is gone *and* `postfix status` agrees (a child that was between
        # fork and exec can hold the master lock for a moment after the master exits)
        if self._wait_gone(pid, self.stop_timeout_s) and self._wait_status_down(deadline):
            return OCF.SUCCESS
        log.warning("mta %s: master %d ignored SIGTERM for %gs: SIGKILL to its group", self.name, pid, self.stop_timeout_s)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        ok = self._wait_gone(pid, 2.0) and self._wait_status_down(time.monotonic() + 2.0)
        return OCF.SUCCESS if ok else OCF.ERR_GENERIC

    def _wait_status_down(self, deadline: float) -> bool:
        while True:
            if self.monitor() == OCF.NOT_RUNNING:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)

    def _stop_by_script(self) -> OCF:
        self._run("stop", timeout=self.stop_timeout_s + 10)
        return OCF.SUCCESS if self.monitor() == OCF.NOT_RUNNING else OCF.ERR_GENERIC

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _gone(pid):
                return True
            time.sleep(POLL_S)
        return False

    # ------------------------------------------------------------------ warm standby

    def prepare(self) -> None:
        """A takeover is near (the agent's probe_at): make sure an smtpd is idle right now."""
        if self.standby_running and self.warm_address is not None:
            self._warm_wake.set()

    def _keep_warm(self) -> None:
        if not self.standby_running or self.warm_address is None:
            return
        if self._warm_thread is None or not self._warm_thread.is_alive():
            self._warm_thread = threading.Thread(target=self._warm_loop, name=f"mta-warm-{self.name}", daemon=True)
            self._warm_thread.start()

    def _warm_loop(self) -> None:
        """One SMTP session now, then every WARM_INTERVAL_S or on prepare(); ends with the
        process (daemon thread) or when the instance is gone."""
        while True:
            if self.master_pid() is None:
                return  # stopped (or crashed): start() runs the keeper again
            if self.warm_once():
                self.warmed += 1
            self._warm_wake.wait(WARM_INTERVAL_S)
            self._warm_wake.clear()

    def warm_once(self, timeout: float = 2.0) -> bool:
        """Connect, read the 220 banner, QUIT: afterwards an smtpd process waits idle."""
        assert self.warm_address is not None
        try:
            with socket.create_connection(self.warm_address, timeout=timeout) as s:
                s.settimeout(timeout)
                banner = s.recv(512)
                s.sendall(b"QUIT\r\n")
                s.recv(512)
                return banner.startswith(b"220")
        except OSError:
            return False

    def reload(self) -> OCF:
        """Re-read main.cf/master.cf (`postfix reload`): NOT_RUNNING if the instance is down."""
        problem = self._problem()
        if problem is not None:
            return problem
        if self.monitor() != OCF.SUCCESS:
            return OCF.NOT_RUNNING
        proc = self._run("reload", timeout=20)
        return OCF.SUCCESS if proc is not None and proc.returncode == 0 else OCF.ERR_GENERIC


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"warm_address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _gone(pid: int) -> bool:
    """True if pid is no process or a zombie (dead, waiting for a parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def build(res: Any, params: dict[str, Any], ctx: Any) -> MtaResource:
    """Factory entry (hacluster.resources.factory): validate params, name the field on error."""
    where = f"{ctx.spec.source}: roles.{ctx.role.name}.resources[{res.name}]"
    kind = params.get("kind", "postfix")
    if kind not in KINDS:
        raise UserError(f"{where}.kind: unsupported MTA kind {kind!r} (supported: {', '.join(KINDS)})")
    try:
        attempts = int(params.get("restart_attempts", 1))
    except (TypeError, ValueError):
        raise UserError(f"{where}.restart_attempts: must be an integer, got {params.get('restart_attempts')!r}") from None
    if attempts < 0:
        raise UserError(f"{where}.restart_attempts: must be >= 0")
    config_dir = params.get("config_dir")
    if config_dir is not None and not isinstance(config_dir, str):
        raise UserError(f"{where}.config_dir: must be a path string")
    warm = params.get("warm_address", DEFAULT_WARM_ADDRESS)
    if not isinstance(warm, str):
        raise UserError(f"{where}.warm_address: must be HOST:PORT or \"\", got {warm!r}")
    cgroup = params.get("cgroup")
    if cgroup is not None and (not isinstance(cgroup, str) or not cgroup.startswith("/sys/fs/cgroup/")):
        raise UserError(f"{where}.cgroup: must be a directory under /sys/fs/cgroup/ (cgroup v2), got {cgroup!r}")
    try:
        return MtaResource(res.name, config_dir, attempts, kind, warm_address=warm, cgroup=cgroup)
    except ValueError as err:
        raise UserError(f"{where}.warm_address: {err}") from None
