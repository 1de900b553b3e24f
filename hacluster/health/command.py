"""`check: command`: an operator's own check command (keepalived's track_script, a Nagios plugin).

Exit status as the monitoring-plugin convention has it: 0 ok, 1 warning (works, lower the
candidacy), 2 or anything else critical; a command that outlives the check's timeout is killed
with its whole process group and is critical. What a failure does is the check's `on_fail`
(demote: the holder releases, as keepalived's FAULT state; unhealthy: no longer a candidate,
a holder keeps its role; alert: report and lower the candidacy only). The first line of the
command's output is the detail, so `hacluster status` shows the operator's own words.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Sequence

from .checks import COMMAND, CheckResult, result

ON_FAIL = ("demote", "unhealthy", "alert")


def _argv(command: str | Sequence[str]) -> list[str]:
    """A list is the argv as given; a string goes to /bin/sh -c (pipes, tests, $VARS work)."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return [str(a) for a in command]


def _first_line(out: bytes) -> str:
    for line in out.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


@dataclass(frozen=True)
class CommandProbe:
    command: str | tuple[str, ...]
    on_fail: str = "demote"
    name: str = COMMAND

    def __post_init__(self) -> None:
        if self.on_fail not in ON_FAIL:
            raise ValueError(f"on_fail must be one of {', '.join(ON_FAIL)}, not {self.on_fail!r}")

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        shown = self.command if isinstance(self.command, str) else shlex.join(self.command)
        try:
            proc = subprocess.Popen(_argv(self.command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as err:
            return result(self.name, "crit", f"cannot run {shown}: {err.strerror or err}", time.monotonic() - t0,
                          on_fail=self.on_fail, exit=None)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the command and whatever it started
            except ProcessLookupError:
                pass
            proc.communicate()
            return result(self.name, "crit", f"{shown}: no answer in {timeout_s:g}s (killed)", time.monotonic() - t0,
                          on_fail=self.on_fail, exit=None, timed_out=True)
        took = time.monotonic() - t0
        rc = proc.returncode
        said = _first_line(out)
        if rc == 0:
            return result(self.name, "ok", said or "exit 0", took, on_fail=self.on_fail, exit=0)
        what = f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"
        detail = f"{what}: {said}" if said else what
        if rc == 1:
            return result(self.name, "warn", detail, took, ok=True, on_fail=self.on_fail, exit=rc)
        return result(self.name, "crit", detail, took, on_fail=self.on_fail, exit=rc)
