"""MTA process check: is the Postfix `master` of *this* instance alive?

An instance is named by its config directory. `postconf -c DIR -h queue_directory
data_directory` gives the directories; master writes its pid to `queue_directory/pid/master.pid`
(and to `data_directory/master.lock`). The pid is trusted only if psutil finds a live process
named `master` whose `MAIL_CONFIG` (set by `postfix -c DIR start`) is DIR -- a stale pid file or
a recycled pid must not read as a running MTA, and the default instance's master must not be
mistaken for another instance's.

"Restartable" is what the policy needs to decide between "restart it" and "demote": the agent
records each restart attempt in the check's `RestartBudget`; once `max_restarts` attempts
within `window_s` have not kept the master alive (or the config directory is gone), the MTA is
dead and not restartable, and the policy demotes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .checks import MTA, CheckResult, result

DEFAULT_CONFIG_DIR = "/etc/postfix"
POSTCONF_TIMEOUT_S = 10.0


class RestartBudget:
    """Counts restart attempts in a sliding window (thread-safe; the agent writes, the check reads)."""

    def __init__(self, max_restarts: int = 3, window_s: float = 300.0) -> None:
        self.max_restarts, self.window_s = max_restarts, window_s
        self._attempts: deque[float] = deque()
        self._lock = threading.Lock()
        self._busy = 0

    def note_attempt(self, now: float | None = None) -> None:
        with self._lock:
            self._attempts.append(time.monotonic() if now is None else now)

    def attempts(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._attempts and now - self._attempts[0] > self.window_s:
                self._attempts.popleft()
            return len(self._attempts)

    def exhausted(self, now: float | None = None) -> bool:
        return self.attempts(now) >= self.max_restarts

    def begin(self, now: float | None = None) -> None:
        """A restart starts now: counts as an attempt, and the MTA stays "restartable" until
        end(), so a probe that runs while the restart is in flight does not demote."""
        with self._lock:
            self._busy += 1
        self.note_attempt(now)

    def end(self) -> None:
        with self._lock:
            self._busy = max(0, self._busy - 1)

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy > 0


def postconf_dirs(config_dir: str, timeout_s: float, postconf: str = "postconf") -> tuple[str, str]:
    """(queue_directory, data_directory) of the instance; raises OSError/ValueError/TimeoutExpired."""
    out = subprocess.run([postconf, "-c", config_dir, "-h", "queue_directory", "data_directory"],
                         capture_output=True, text=True, timeout=timeout_s, check=False)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != 2:
        raise ValueError(f"postconf -c {config_dir} failed: {out.stderr.strip() or out.returncode}")
    return lines[0].strip(), lines[1].strip()


def read_pid(path: Path) -> int | None:
    """The pid in a Postfix pid/lock file (space-padded decimal), or None."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isascii() and text.isdigit() else None


def _same_dir(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def find_master(config_dir: str, queue_dir: str, data_dir: str) -> tuple[psutil.Process | None, str]:
    """The live master process of this instance, or (None, why not)."""
    why = "no pid file"
    for pid_file in (Path(queue_dir) / "pid" / "master.pid", Path(data_dir) / "master.lock"):
        pid = read_pid(pid_file)
        if pid is None:
            continue
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                why = f"pid {pid} from {pid_file} is a zombie"
                continue
            if proc.name() != "master":
                why = f"pid {pid} from {pid_file} is {proc.name()!r}, not master (stale pid file)"
                continue
            try:
                mail_config = proc.environ().get("MAIL_CONFIG", DEFAULT_CONFIG_DIR)
            except (psutil.AccessDenied, psutil.ZombieProcess):
                mail_config = config_dir  # cannot tell; the pid file is this instance's own
            if not _same_dir(mail_config, config_dir):
                why = f"pid {pid} from {pid_file} is the master of {mail_config}"
                continue
            return proc, ""
        except psutil.NoSuchProcess:
            why = f"pid {pid} from {pid_file} is not running"
    return None, why


@dataclass
class MtaProcessCheck:
    """crit when the instance's master is not running; data says whether a restart may still help."""

    config_dir: str = DEFAULT_CONFIG_DIR
    restarts: RestartBudget = field(default_factory=RestartBudget)
    postconf: str = "postconf"
    name: str = MTA
    _dirs: tuple[str, str] | None = field(default=None, init=False, repr=False)

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        data: dict = {"config_dir": self.config_dir}
        if not (Path(self.config_dir) / "main.cf").is_file():
            return result(self.name, "crit", f"no main.cf in {self.config_dir}", time.monotonic() - t0,
                          **data, running=False, restartable=False, pid=None)
        try:
            if self._dirs is None:
                # postconf's first run on a config dir took 1.5-1.8 s here; give it longer than the
                # probe (the runner reports one timeout) so the cached answer serves later probes.
                self._dirs = postconf_dirs(self.config_dir, max(timeout_s, POSTCONF_TIMEOUT_S), self.postconf)
            queue_dir, data_dir = self._dirs
        except (OSError, ValueError, subprocess.TimeoutExpired) as err:
            return result(self.name, "crit", f"cannot resolve directories: {err}", time.monotonic() - t0,
                          **data, running=False, restartable=not self.restarts.exhausted(), pid=None)
        data.update(queue_directory=queue_dir, data_directory=data_dir)
        proc, why = find_master(self.config_dir, queue_dir, data_dir)
        if proc is None:
            self._dirs = None  # re-read the config next time: it may have changed
            attempts = self.restarts.attempts()
            busy = self.restarts.busy
            restartable = busy or attempts < self.restarts.max_restarts
            note = "; restart in progress" if busy else (
                "" if restartable else f"; {attempts} restarts in {self.restarts.window_s:g}s did not help")
            return result(self.name, "crit", f"postfix master ({self.config_dir}) not running: {why}{note}",
                          time.monotonic() - t0, **data, running=False, restartable=restartable, pid=None,
                          restart_attempts=attempts)
        try:
            uptime = max(0.0, time.time() - proc.create_time())
        except psutil.Error:
            uptime = None
        return result(self.name, "ok", f"postfix master pid {proc.pid} ({self.config_dir})", time.monotonic() - t0,
                      **data, running=True, restartable=True, pid=proc.pid, uptime_s=uptime)
