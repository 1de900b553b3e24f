"""The optional resource hooks live on the Resource ABC (prepare, unprepare, standby_running), so
the agent calls them like any method: a resource that does not need them inherits no-ops."""

from __future__ import annotations

import logging
from typing import Callable

import pytest

from hacluster.agent.loop import Agent
from hacluster.resources.base import OCF, Resource
from hacluster.resources.mta import MtaResource
from hacluster.resources.vip import VipResource


class Plain(Resource):
    """Implements only what the ABC requires."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def start(self) -> OCF:
        self.log.append(f"start {self.name}")
        return OCF.SUCCESS

    def stop(self) -> OCF:
        self.log.append(f"stop {self.name}")
        return OCF.SUCCESS

    def monitor(self) -> OCF:
        return OCF.SUCCESS


class Probing(Plain):
    def prepare(self) -> None:
        self.log.append(f"prepare {self.name}")

    def unprepare(self) -> None:
        self.log.append(f"unprepare {self.name}")


class Broken(Plain):
    def prepare(self) -> None:
        raise RuntimeError("probe socket gone")


def test_the_abc_declares_the_optional_hooks_as_no_ops() -> None:
    r = Plain("p", [])
    assert r.standby_running is False
    assert r.prepare() is None and r.unprepare() is None
    # the real resources that need them override them
    for cls in (VipResource, MtaResource):
        assert cls.prepare is not Resource.prepare, cls
    assert VipResource.unprepare is not Resource.unprepare


@pytest.fixture
def agent_with(make_agent) -> Callable[..., Agent]:
    """An agent whose role runs exactly these resources (passed in, not patched in)."""
    return lambda *resources: make_agent(name="hooks", resources=lambda ctx: list(resources))


def test_prepare_reaches_every_resource_and_survives_a_broken_one(agent_with, caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    agent = agent_with(Plain("a", log), Broken("b", log), Probing("c", log))
    rt = agent.roles["store"]
    with caplog.at_level(logging.ERROR, "hacluster.agent"):
        agent._prepare(rt)
        agent._unprepare(rt)
    assert log == ["prepare c", "unprepare c"]
    assert "resource b prepare raised" in caplog.text


def test_standby_resources_are_started_with_the_agent_and_kept_on_losing_the_role(agent_with) -> None:
    log: list[str] = []
    mta, vip = Plain("mta", log), Plain("vip", log)
    mta.standby_running = True
    agent = agent_with(mta, vip)
    rt = agent.roles["store"]
    assert agent._has_standby()
    rt.running = True
    agent._stop_resources(rt, "test")
    assert log == ["stop vip"]  # the standby MTA keeps running
    mta.standby_running = False
    assert not agent._has_standby()
