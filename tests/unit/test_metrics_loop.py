"""AgentMetrics.loop (metrics.py) sets only what changed since the last loop: the gauges still
show every change, in the loop that makes it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from hacluster import clock
from hacluster.coord.model import Member
from hacluster.metrics import AgentMetrics


def sample(m: AgentMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_loop_gauges_follow_every_change_and_skip_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    m = AgentMetrics("n1", ["store"])
    labelled: list[str] = []
    real = type(m.role_held).labels
    monkeypatch.setattr(type(m.role_held), "labels", lambda g, *a: labelled.append(g._name) or real(g, *a))
    idle = {"store": SimpleNamespace(held=None, renewed_at=None)}
    ok = Member("n1", "store", 100, True, False, 0, (), {"disk": {"ok": True, "latency_s": 0.002}})
    m.loop(0.001, idle, ok, maintenance=False)
    assert sample(m, "hacluster_role_held", role="store") == 0
    assert sample(m, "hacluster_check_ok", check="disk") == 1
    assert sample(m, "hacluster_node_healthy") == 1
    first = len(labelled)
    m.loop(0.001, idle, ok, maintenance=False)
    assert len(labelled) == first  # nothing changed: no label looked up, nothing set

    now = clock.now()
    held = {"store": SimpleNamespace(held=SimpleNamespace(term=7, until=now + 0.8), renewed_at=now - 0.1)}
    bad = ok._replace(healthy=False, health={"disk": {"ok": False, "latency_s": 0.5}})
    m.loop(0.001, held, bad, maintenance=True)
    assert sample(m, "hacluster_role_held", role="store") == 1
    assert sample(m, "hacluster_lease_term", role="store") == 7
    assert 0 < sample(m, "hacluster_lease_remaining_seconds", role="store") <= 0.8
    assert sample(m, "hacluster_lease_age_seconds", role="store") >= 0.1
    assert sample(m, "hacluster_check_ok", check="disk") == 0
    assert sample(m, "hacluster_check_latency_seconds", check="disk") == 0.5
    assert sample(m, "hacluster_node_healthy") == 0 and sample(m, "hacluster_maintenance") == 1

    m.loop(0.001, idle, ok, maintenance=None)  # no snapshot: maintenance keeps its last value
    assert sample(m, "hacluster_role_held", role="store") == 0 and sample(m, "hacluster_lease_term", role="store") == 0
    assert sample(m, "hacluster_lease_remaining_seconds", role="store") == 0
    assert sample(m, "hacluster_node_healthy") == 1 and sample(m, "hacluster_maintenance") == 1
    nan = ok._replace(health={"disk": {"ok": True, "latency_s": math.nan}})
    m.loop(0.001, idle, nan)
    assert math.isnan(sample(m, "hacluster_check_latency_seconds", check="disk"))
