"""A systemd unit as a resource, like Pacemaker's `systemd:` class: start, stop and monitor
through `systemctl` on a unit that already exists (`postfix@-.service`, `dovecot.service`).

Why not start the daemon ourselves: a process the agent forks lives in the agent's cgroup, so
`systemctl restart hacluster-agent` (every deploy) SIGTERMs it -- the FallbackMX's Postfix with
its retry queue among them. A unit started through systemd lives in its own cgroup, is logged,
restarted and limited by its own unit file, and outlives agent restarts.

OCF mapping (as Pacemaker's systemd class): `systemctl start`/`stop` wait for the job to finish
(bounded by `timeout_s`); monitor reads `systemctl is-active`: active/reloading -> SUCCESS,
inactive/failed -> NOT_RUNNING, activating/deactivating -> ERR_GENERIC (not settled), a unit
systemd has no file for -> ERR_INSTALLED (its stop is SUCCESS: nothing runs). Nothing is enabled or disabled: whether the unit starts at
boot stays the operator's choice (for a `run_on_standby` MTA: enabled, so it takes mail before
the agent runs; for a holder-only one: disabled, the agent starts it).
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any

from ..errors import UserError
from .base import OCF, Resource
from .params import seconds

log = logging.getLogger(__name__)

#: systemctl's answers to is-active (systemd.unit(5), "ActiveState")
ACTIVE = frozenset({"active", "reloading"})
STOPPED = frozenset({"inactive", "failed"})


class SystemdUnit(Resource):
    def __init__(self, name: str, unit: str, timeout_s: float = 90.0, systemctl: str = "systemctl") -> None:
        self.name = name
        self.unit = unit
        self.timeout_s = timeout_s
        self.systemctl = systemctl

    def _ctl(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str] | None:
        """systemctl ARGS, bounded; None when it did not answer in time or is not there."""
        cmd = [self.systemctl, "--no-ask-password", *args]
        try:
            return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout or self.timeout_s, env={**os.environ, "SYSTEMD_PAGER": ""})
        except subprocess.TimeoutExpired:
            log.error("resource %s: systemctl %s %s: no answer within %gs", self.name, args[0], self.unit,
                      timeout or self.timeout_s)
        except OSError as err:
            log.error("resource %s: cannot run %s: %s", self.name, self.systemctl, err.strerror)
        return None

    def state(self) -> str | None:
        """The unit's ActiveState, or None when systemctl gave no answer."""
        res = self._ctl("is-active", self.unit, timeout=min(self.timeout_s, 10.0))
        if res is None:
            return None
        return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "unknown"

    def _known(self) -> bool:
        """Whether systemd has a unit file for it (`is-active` says "inactive" for any name)."""
        res = self._ctl("show", "-p", "LoadState", "--value", self.unit, timeout=min(self.timeout_s, 10.0))
        return res is not None and res.stdout.strip() not in ("not-found", "")

    def _job(self, verb: str) -> OCF:
        res = self._ctl(verb, self.unit)
        if res is None:
            return OCF.ERR_GENERIC
        if res.returncode != 0:
            log.warning("resource %s: systemctl %s %s exited %d: %s", self.name, verb, self.unit, res.returncode,
                        (res.stderr or res.stdout).strip()[-300:])
            return OCF.ERR_INSTALLED if not self._known() else OCF.ERR_GENERIC
        return OCF.SUCCESS

    def start(self) -> OCF:
        rc = self._job("start")
        if rc != OCF.SUCCESS:
            return rc
        state = self.state()  # a unit whose start "succeeded" may already have died (Type=simple)
        if state not in ACTIVE:
            log.error("resource %s: %s is %s after start", self.name, self.unit, state)
            return OCF.ERR_GENERIC
        return OCF.SUCCESS

    def stop(self) -> OCF:
        rc = self._job("stop")
        if rc == OCF.ERR_INSTALLED:
            return OCF.SUCCESS  # a unit that does not exist is stopped (OCF: stop is idempotent)
        if rc != OCF.SUCCESS:
            return rc
        state = self.state()
        return OCF.SUCCESS if state in STOPPED else OCF.ERR_GENERIC

    def monitor(self) -> OCF:
        state = self.state()
        if state in ACTIVE:
            return OCF.SUCCESS
        if state is None:
            return OCF.ERR_GENERIC
        if not self._known():  # is-active says "inactive" for any name at all
            return OCF.ERR_INSTALLED
        return OCF.NOT_RUNNING if state in STOPPED else OCF.ERR_GENERIC  # activating, deactivating: not settled


def build(res: Any, params: dict[str, Any], ctx: Any) -> Resource:
    unit = params.get("unit")
    where = f"{ctx.spec.source}: roles.{ctx.role.name}.resources[{res.name}]"
    if not isinstance(unit, str) or not unit.strip() or "/" in unit:
        raise UserError(f"{where}.unit: must name a systemd unit, e.g. postfix@-.service, got {unit!r}")
    return SystemdUnit(res.name, unit.strip(), seconds(params, where, 90.0))
