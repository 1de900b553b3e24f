"""This node's health verdict, as published in its heartbeat and used by `decide`.

Sources, in order: the operator's standby flag (`<state_dir>/standby`, like `crm node standby`),
recent resource start failures (a node that just failed to start a role waits before trying
again, so a broken host doesn't grab the lease in a loop), and the health checks with their
policy (hacluster.health.policy) once configured.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .coord.model import Member
from .spec import ClusterSpec, NodeSpec

log = logging.getLogger(__name__)

FAILURE_BACKOFF_S = 30.0


class NodeHealth:
    def __init__(self, spec: ClusterSpec, node: NodeSpec, state_dir: Path) -> None:
        self.spec = spec
        self.node = node
        self.standby_file = state_dir / "standby"
        self.failures: dict[str, float] = {}
        self.checks: Any = None  # a hacluster.health runner, when checks are configured

    def note_failure(self, role: str) -> None:
        self.failures[role] = time.monotonic()

    def evaluate(self) -> Member:
        reasons: list[str] = []
        healthy, demote, penalty = True, False, 0
        details: dict[str, Any] = {}
        if self.standby_file.exists():
            healthy, demote = False, True
            reasons.append("standby")
        recent = [r for r, t in self.failures.items() if time.monotonic() - t < FAILURE_BACKOFF_S]
        if recent:
            healthy = False
            reasons.append("resource start failed: " + ",".join(sorted(recent)))
        if self.checks is not None:
            verdict = self.checks.verdict()
            details = self.checks.summary()
            healthy = healthy and verdict.healthy
            demote = demote or verdict.demote
            penalty += verdict.score_penalty
            reasons.extend(verdict.reasons)
        return Member(self.node.name, self.node.tier, self.node.priority, healthy, demote, penalty,
                      tuple(reasons), details, None, None)
