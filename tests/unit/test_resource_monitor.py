"""resource_monitor.py: the on_fail decision, the schedule, restart limits and escalation."""

from __future__ import annotations

import threading

import pytest

from hacluster.agent.resource_monitor import MAX_RESTARTS, MonitorPlan, ResourceMonitor, judge, plans
from hacluster.resources.base import OCF, Resource
from hacluster.spec import SpecError, parse_spec


class Fake(Resource):
    def __init__(self, name: str, states: list[OCF], start_rc: OCF = OCF.SUCCESS) -> None:
        self.name, self.states, self.start_rc, self.calls = name, states, start_rc, []

    def start(self) -> OCF:
        self.calls.append("start")
        return self.start_rc

    def stop(self) -> OCF:
        self.calls.append("stop")
        return OCF.SUCCESS

    def monitor(self) -> OCF:
        self.calls.append("monitor")
        return self.states.pop(0) if self.states else OCF.SUCCESS


@pytest.mark.parametrize("rc, on_fail, recent, want", [
    (OCF.SUCCESS, "restart", 0, "ok"),
    (OCF.NOT_RUNNING, "restart", 0, "restart"),
    (OCF.ERR_GENERIC, "restart", MAX_RESTARTS - 1, "restart"),
    (OCF.ERR_GENERIC, "restart", MAX_RESTARTS, "demote"),
    (OCF.NOT_RUNNING, "demote", 0, "demote"),
])
def test_judge(rc: OCF, on_fail: str, recent: int, want: str) -> None:
    assert judge(rc, MonitorPlan("r", 1.0, on_fail), recent) == want


def run(res: Fake, on_fail: str, ticks: list[float]) -> list[str]:
    said: list[str] = []
    m = ResourceMonitor("store", [res], {res.name: MonitorPlan(res.name, 1.0, on_fail)}, threading.RLock(), said.append)
    m.next_at = {res.name: 0.0}
    for t in ticks:
        m.tick(t)
    return said


def test_restart_in_place_then_escalate() -> None:
    r = Fake("d", [OCF.NOT_RUNNING] * 10)
    said = run(r, "restart", [float(i) for i in range(MAX_RESTARTS + 1)])
    assert r.calls.count("start") == MAX_RESTARTS and said and "3 restarts" in said[0]


def test_not_before_the_interval() -> None:
    r = Fake("d", [OCF.NOT_RUNNING])
    assert run(r, "demote", [0.0, 0.5]) and r.calls == ["monitor"]


def test_a_failed_restart_demotes() -> None:
    r = Fake("d", [OCF.NOT_RUNNING], start_rc=OCF.ERR_GENERIC)
    assert run(r, "restart", [0.0]) == ["resource d failed its monitor and did not restart"]


def test_plans_from_params_and_spec_errors() -> None:
    assert plans([("a", {"monitor_interval_s": 2}), ("b", {})]) == {"a": MonitorPlan("a", 2.0, "restart")}
    base = ("cluster: c\nzookeeper: {hosts: [127.0.0.1:2181]}\nroles:\n  store:\n    tier: store\n    resources:\n"
            "      - {type: command, name: d, start: 'true', stop: 'true', %s}\n"
            "nodes:\n  - {name: s1, tier: store, interface: lo, addresses: [127.0.0.11/8]}\n")
    parse_spec(base % "monitor_interval_s: 5, on_fail: demote")
    for extra, needle in [("on_fail: demote", "c.yml:7: roles.store.resources[0].on_fail: needs monitor_interval_s"),
                          ("monitor_interval_s: 5, on_fail: fence", "on_fail: must be restart or demote"),
                          ("monitor_interval_s: 0", "monitor_interval_s: must be > 0")]:
        with pytest.raises(SpecError) as err:
            parse_spec(base % extra, "c.yml")
        assert needle in str(err.value), str(err.value)
