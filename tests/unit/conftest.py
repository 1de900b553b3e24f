"""Fixtures of the unit tests: a hand-driven clock, and an Agent built with fakes passed in
(constructor injection: no test patches an agent's collaborators after building it)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from hacluster.agent.loop import Agent, production_parts
from hacluster.examples import loopback_spec
from hacluster.spec import parse_spec


class FakeClock:
    """`now()` stands still until a test (or a `sleep`) moves it."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


class MakeAgent(Protocol):
    def __call__(self, nodes: int = ..., profile: str = ..., name: str = ..., text: str | None = ...,
                 claims_log: str | None = ..., **parts: Any) -> Agent: ...


@pytest.fixture
def make_agent(tmp_path: Path) -> MakeAgent:
    """node1's agent of a LocalCluster spec (ZooKeeper at an unused address: nothing connects),
    its production collaborators with the given ones (coord=, clock=, resources= ...) in place."""

    def make(nodes: int = 2, profile: str = "default", name: str = "unit", text: str | None = None,
             claims_log: str | None = None, **parts: Any) -> Agent:
        spec = parse_spec(text or loopback_spec("127.0.0.1:1", nodes, profile, name), "c.yml")
        state = tmp_path / "state"
        return Agent(spec, "node1", state, replace(production_parts(spec, "node1", state, claims_log), **parts))

    return make
