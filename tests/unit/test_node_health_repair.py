"""MTA repair on the holder: restart only after the MTA ran under this holding, one attempt per
fresh probe, never on a standby; a restart in flight keeps the MTA "restartable"."""

from __future__ import annotations

import time
from types import SimpleNamespace

from hacluster.health.checks import result
from hacluster.health.mta import RestartBudget
from hacluster.agent.node_health import MtaRepair


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


def _node_health(tmp_path, spool_path):
    from hacluster.agent.node_health import NodeHealth
    from hacluster.examples import loopback_spec
    from hacluster.spec import parse_spec

    text = loopback_spec("127.0.0.1:1", 2, cluster="t") + (  # this one check alone
        "health:\n  store:\n"
        f"    - {{check: spool, scope: holder, path: \"{spool_path}\", interval_s: 60, rise: 1, fall: 1}}\n")
    spec = parse_spec(text, "t.yml")
    return NodeHealth(spec, spec.node("node1"), tmp_path)


def test_holder_check_counts_only_after_holding_began_and_sticks_after_demotion(tmp_path) -> None:
    spool = tmp_path / "spool"  # missing: the write probe fails -> "unwritable" -> demote
    nh = _node_health(tmp_path, spool)
    nh.monitor.run_all_once()
    m = nh.evaluate(holding=False)
    assert m.healthy and not m.demote  # a standby's holder checks do not count
    m = nh.evaluate(holding=True)  # just acquired: that result is from before the holding
    assert not m.demote and not m.healthy and any("no result yet" in r for r in m.reasons)
    time.sleep(0.01)
    nh.monitor.run_all_once()
    m = nh.evaluate(holding=True)
    assert m.demote and any(r.startswith("spool: unwritable") for r in m.reasons)
    m = nh.evaluate(holding=False)  # demoted: sticky while the spool is still unwritable
    assert m.demote and not m.healthy
    spool.mkdir()
    nh.monitor.run_all_once()
    m = nh.evaluate(holding=False)
    assert m.healthy and not m.demote and m.reasons == ()
    m = nh.evaluate(holding=False)  # and it stays cleared
    assert m.healthy
