"""Recurring monitor of a holder's resources (Pacemaker's `op monitor interval=... on-fail=...`).

A resource with `monitor_interval_s` in the spec has its `monitor()` polled that often while
this node holds the role and its resources are up:

    resources:
      - {type: command, name: dovecot, start: ..., stop: ..., monitor: "doveadm service status",
         monitor_interval_s: 5, on_fail: restart}

A result other than SUCCESS is a failure. `on_fail: restart` (the default) stops and starts that
resource in place; a restart whose start fails, or more than `MAX_RESTARTS` in `RESTART_WINDOW_S`,
escalates to demote. `on_fail: demote` hands the role over: the loop releases it (the same path
as a failed start) and the node stays out of candidacy for a while (node_health's backoff).

The decision is pure (`judge`); `ResourceMonitor` holds the schedule and calls the resources; the
agent runs it on a thread of its own, so a slow monitor never delays a lease renewal.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

from hacluster.resources.base import OCF, Resource

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
RESTART_WINDOW_S = 600.0
ON_FAIL = ("restart", "demote")


@dataclass(frozen=True)
class MonitorPlan:
    resource: str
    interval_s: float
    on_fail: str = "restart"


def plans(role_resources: list[tuple[str, dict]]) -> dict[str, MonitorPlan]:
    """name -> plan for the resources whose spec params ask for a recurring monitor."""
    out = {}
    for name, params in role_resources:
        if params.get("monitor_interval_s") is not None:
            out[name] = MonitorPlan(name, float(params["monitor_interval_s"]), str(params.get("on_fail", "restart")))
    return out


Judgement = Literal["ok", "restart", "demote"]


def judge(rc: OCF, plan: MonitorPlan, recent_restarts: int) -> Judgement:
    """What to do with one monitor result."""
    if rc == OCF.SUCCESS:
        return "ok"
    if plan.on_fail == "restart" and recent_restarts < MAX_RESTARTS:
        return "restart"
    return "demote"


@dataclass
class ResourceMonitor:
    """The schedule for one role's resources; `tick` runs what is due (call it while holding)."""

    role: str
    resources: list[Resource]
    plans: dict[str, MonitorPlan]
    lock: threading.RLock  # the role's start/stop lock: a monitor never races a start or a stop
    on_demote: Callable[[str], None]  # the reason; the agent releases the role
    next_at: dict[str, float] = field(default_factory=dict)
    restarts: dict[str, list[float]] = field(default_factory=dict)
    restarts_total: int = 0

    def reset(self) -> None:
        """A new holding: first monitors one interval after the start, restart history kept."""
        now = time.monotonic()
        self.next_at = {n: now + p.interval_s for n, p in self.plans.items()}

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for r in self.resources:
            plan = self.plans.get(r.name)
            if plan is None or now < self.next_at.get(r.name, 0.0):
                continue
            self.next_at[r.name] = now + plan.interval_s
            with self.lock:
                rc = OCF.of(int(r.monitor()))
                recent = [t for t in self.restarts.get(r.name, []) if now - t < RESTART_WINDOW_S]
                what = judge(rc, plan, len(recent))
                if what == "ok":
                    continue
                log.warning("%s: resource %s monitor returned %s (%s)", self.role, r.name, rc.name, what)
                if what == "restart":
                    recent.append(now)
                    self.restarts[r.name] = recent
                    self.restarts_total += 1
                    r.stop()
                    if OCF.of(int(r.start())) == OCF.SUCCESS:
                        log.warning("%s: resource %s restarted in place (%d in %gs)", self.role, r.name, len(recent),
                                    RESTART_WINDOW_S)
                        continue
                    self.on_demote(f"resource {r.name} failed its monitor and did not restart")
                    return
            self.on_demote(f"resource {r.name} failed its monitor ({rc.name}, on_fail {plan.on_fail}"
                           + (f", {MAX_RESTARTS} restarts in {RESTART_WINDOW_S:g}s" if plan.on_fail == "restart" else "")
                           + ")")
            return


__all__ = ["MAX_RESTARTS", "ON_FAIL", "MonitorPlan", "ResourceMonitor", "judge", "plans"]
