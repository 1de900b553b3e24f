"""Self-fencing of every resource of a role: one guard process per held role that, at the lease
deadline (or when the agent dies), removes the role's VIPs, kills its MTA's process tree and
lazily unmounts its shared spool -- in that order, within `stop_timeout_s` (inequality (S),
docs/safety.md "Every resource of the role").

Why a second guard next to the VIP's own: the VIP resource releases its guard as soon as the VIP
is down, but an MTA stop (SIGTERM, up to its stop timeout) and a spool unmount (waiting for busy
files) come after it and are not bounded by anything the agent can promise while it is frozen.
This guard is started before the role's first resource and released only after the last one
stopped cleanly; a failed stop closes it without a release, so it acts at once.

It is the same program as the VIP guard (`vip_guard.py`: standard library only, its own session)
with the steps each resource contributes through `self_fence_steps()`; a role whose resources
contribute no step beyond the VIP gets no extra process.
"""

from __future__ import annotations

import logging
from typing import Sequence

from .base import OCF, Resource
from .vip_guard import GuardClient, Target

log = logging.getLogger(__name__)


def collect_steps(resources: Sequence[Resource]) -> tuple[list[Target], list[tuple[str, str]]]:
    """(VIP targets, other steps) the role's resources ask the guard to take on their behalf."""
    targets: list[Target] = []
    steps: list[tuple[str, str]] = []
    for r in resources:
        for kind, arg in r.self_fence_steps():
            if kind == "vip":
                targets.append(Target.parse(arg))
            else:
                steps.append((kind, arg))
    return targets, steps


class RoleGuard(Resource):
    """A pseudo-resource placed first in the role's start order (so stopped last): start spawns
    the guard with the lease deadline, every renewal extends it, stop releases it."""

    def __init__(self, role: str, targets: list[Target], steps: list[tuple[str, str]]) -> None:
        self.name = f"{role}-guard"
        self.role = role
        self.targets = targets
        self.steps = steps
        self.until: float | None = None
        self.client: GuardClient | None = None

    def lease_extended(self, until: float) -> None:
        self.until = until
        if self.client is not None:
            self.client.extend(until)

    def start(self) -> OCF:
        if self.client is not None and self.client.alive():
            return OCF.SUCCESS
        if self.client is not None:
            self.client.close()
        try:
            self.client = GuardClient.spawn(self.targets, self.until, self.name, self.steps)
        except OSError as err:
            log.error("role %s: cannot start the self-fencing guard: %s", self.role, err)
            self.client = None
            return OCF.ERR_GENERIC
        return OCF.SUCCESS

    def stop(self) -> OCF:
        """Every other resource of the role is down (the agent stops us last): let it go."""
        if self.client is not None:
            self.client.release()
            self.client = None
        return OCF.SUCCESS

    def fire(self) -> None:
        """A resource of the role failed to stop: close without a release, so the guard fences now."""
        if self.client is not None:
            log.error("role %s: a resource failed to stop: the guard fences the role now", self.role)
            self.client.close()
            self.client = None

    def monitor(self) -> OCF:
        return OCF.SUCCESS if self.client is not None and self.client.alive() else OCF.NOT_RUNNING


def with_role_guard(role: str, resources: list[Resource]) -> list[Resource]:
    """The role's resources with a RoleGuard first when any resource asks for a step beyond its VIP."""
    targets, steps = collect_steps(resources)
    if not steps:
        return resources
    return [RoleGuard(role, targets, steps), *resources]
