"""The `command` resource: shell scripts for start/stop/monitor, like an LSB/OCF script inline.

Operators use it for anything we have no native resource for (a firewall rule, a milter, a
notification). Exit codes are taken as OCF codes, so `exit 7` from monitor means "not running".
"""

from __future__ import annotations

import logging
import os
import subprocess

from .base import OCF, Resource

log = logging.getLogger(__name__)


class CommandResource(Resource):
    def __init__(self, name: str, start: str, stop: str, monitor: str | None = None,
                 promote: str | None = None, demote: str | None = None,
                 timeout_s: float = 20.0, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.scripts = {"start": start, "stop": stop, "monitor": monitor, "promote": promote, "demote": demote}
        self.timeout_s = timeout_s
        self.env = {k: str(v) for k, v in (env or {}).items()}
        self.token = 0
        self._started = False

    def set_fencing_token(self, token: int) -> None:
        self.token = token

    def _run(self, action: str) -> OCF:
        script = self.scripts.get(action)
        if not script:
            return OCF.SUCCESS
        env = {**os.environ, **self.env, "HACLUSTER_RESOURCE": self.name, "HACLUSTER_ACTION": action,
               "HACLUSTER_TOKEN": str(self.token)}
        try:
            proc = subprocess.run(["/bin/sh", "-c", script], env=env, timeout=self.timeout_s,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            log.error("resource %s: %s timed out after %gs", self.name, action, self.timeout_s)
            return OCF.ERR_GENERIC
        if proc.returncode != 0 and not (action == "monitor" and proc.returncode == OCF.NOT_RUNNING):
            log.warning("resource %s: %s exited %d: %s", self.name, action, proc.returncode,
                        (proc.stderr or proc.stdout).strip()[-300:])
        return OCF.of(proc.returncode)

    def start(self) -> OCF:
        rc = self._run("start")
        self._started = rc == OCF.SUCCESS
        return rc

    def stop(self) -> OCF:
        rc = self._run("stop")
        if rc == OCF.SUCCESS:
            self._started = False
        return rc

    def monitor(self) -> OCF:
        if self.scripts["monitor"]:
            return self._run("monitor")
        return OCF.SUCCESS if self._started else OCF.NOT_RUNNING

    def promote(self) -> OCF:
        return self._run("promote")

    def demote(self) -> OCF:
        return self._run("demote")
