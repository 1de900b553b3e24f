"""MTA repair on the holder: restart only after the MTA ran under this holding, one attempt per
fresh probe, never on a standby; a restart in flight keeps the MTA "restartable"."""

from __future__ import annotations

import time
from types import SimpleNamespace

from hacluster.health.checks import result
from hacluster.health.mta import RestartBudget
from hacluster.node_health import MtaRepair


class FakeRepair(MtaRepair):
    def __init__(self, budget: RestartBudget) -> None:
        self.runner = SimpleNamespace(raw=None, last_run=None)
        super().__init__("n1", self.runner, SimpleNamespace(config_dir="/x", restarts=budget))
        self.restarts = 0

    def _restart(self) -> None:  # no Postfix here: count, and finish at once
        self.restarts += 1
        self.last_done = time.monotonic()
        self.probe.restarts.end()

    def probe_says(self, running: bool, restartable: bool = True) -> None:
        self.runner.raw = result("mta", "ok" if running else "crit", "", 0.0, running=running, restartable=restartable)
        self.runner.last_run = time.monotonic()


def test_budget_busy_keeps_restartable_until_end() -> None:
    b = RestartBudget(1, 60)
    b.begin()
    assert b.busy and b.exhausted()
    b.end()
    assert not b.busy and b.attempts() == 1


def test_repair_only_after_seen_running_under_this_holding() -> None:
    r = FakeRepair(RestartBudget(3, 60))
    r.update(False)
    r.probe_says(False)
    r.update(False)  # a standby never restarts
    r.update(True)
    r.probe_says(False)  # the role's own start has not brought it up yet: not ours to fix
    r.update(True)
    assert r.restarts == 0
    r.probe_says(True)
    r.update(True)
    r.probe_says(False)
    r.update(True)
    assert r.restarts == 1
    r.thread.join(1)
    r.update(True)  # same probe result again: no second attempt
    assert r.restarts == 1
    r.probe_says(False)
    r.update(True)  # a fresh probe after the restart ended still says dead: try again
    assert r.restarts == 2
    r.thread.join(1)
    r.probe_says(False, restartable=False)
    r.update(True)  # budget spent: the policy demotes, no restart
    assert r.restarts == 2


def test_new_holding_resets_seen_up() -> None:
    r = FakeRepair(RestartBudget(3, 60))
    r.update(True)
    r.probe_says(True)
    r.update(True)
    r.update(False)
    r.update(True)
    r.probe_says(False)
    r.update(True)
    assert r.restarts == 0
