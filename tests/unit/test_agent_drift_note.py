"""Agent._note_drift (agent/loop.py): the tier peers whose config_digest differs from ours, as a
metric and a warning when that set changes; our own digests are computed once per loop."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from hacluster.agent.loop import Agent
from hacluster.health.checks import CONFIG_DIGEST


def health(**digests: str) -> dict[str, Any]:
    return {CONFIG_DIGEST: {"ok": True, "data": {"digests": digests}}, "smtp": {"ok": True}}


def member(name: str, tier: str, h: dict[str, Any]) -> Any:
    return SimpleNamespace(name=name, tier=tier, health=h)


def test_drift_names_the_tier_peers_that_differ(caplog: pytest.LogCaptureFixture) -> None:
    gauge: list[int] = []
    me = member("s1", "store", health(myhostname="a", virtual_mailbox_maps="x"))
    members = {"s1": me, "s2": member("s2", "store", health(myhostname="a", virtual_mailbox_maps="y")),
               "s3": member("s3", "store", health(myhostname="a", virtual_mailbox_maps="x")),
               "s4": member("s4", "store", {"smtp": {"ok": True}}),  # no digest check: not compared
               "r1": member("r1", "relay", health(myhostname="b"))}  # another tier
    agent: Any = SimpleNamespace(cluster=SimpleNamespace(connected=True, members=members), me=me, _drift={},
                                 node=SimpleNamespace(name="s1", tier="store"),
                                 metrics=SimpleNamespace(config_drift=SimpleNamespace(set=gauge.append)))
    with caplog.at_level(logging.INFO, logger="hacluster.agent"):
        Agent._note_drift(agent)
        Agent._note_drift(agent)  # the same set: no second warning
    assert agent._drift == {"s2": ["virtual_mailbox_maps"]} and gauge == [1, 1]
    assert [r.getMessage() for r in caplog.records] == ["s1: mail config drift: s2 differs from us: virtual_mailbox_maps"]
    members["s2"] = member("s2", "store", health(myhostname="a", virtual_mailbox_maps="x"))
    with caplog.at_level(logging.INFO, logger="hacluster.agent"):
        Agent._note_drift(agent)
    assert agent._drift == {} and gauge[-1] == 0 and "equal on every node of tier store" in caplog.records[-1].getMessage()
    agent.me = member("s1", "store", {"smtp": {"ok": True}})  # we publish no digests: nothing to compare
    Agent._note_drift(agent)
    assert agent._drift == {} and gauge[-1] == 0
