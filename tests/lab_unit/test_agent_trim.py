"""The agent schedules the history trim (Coordinator.trim_history, zookeeper.history_keep): right
after it starts, then every TRIM_HISTORY_EVERY_S, on a thread of its own and never two at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hacluster.agent import loop as agent_mod
from hacluster.agent.loop import TRIM_HISTORY_EVERY_S, Agent
from hacluster_lab.localcluster import spec_text
from hacluster.spec import parse_spec


def test_history_trim_runs_at_start_then_once_a_period(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = spec_text("127.0.0.1:1", 1, "default", "trim").replace(
        "  session_timeout_s: 4.0\n", "  session_timeout_s: 4.0\n  history_keep: 77\n")
    a = Agent(parse_spec(text, "c.yml"), "node1", tmp_path / "state")
    calls: list[int] = []
    release = threading.Event()

    def trim(keep: int) -> int:
        calls.append(keep)
        release.wait(5)
        return 0

    now = [1000.0]
    monkeypatch.setattr(a.coord, "trim_history", trim)
    monkeypatch.setattr(agent_mod.clock, "now", lambda: now[0])
    a._trim_history()
    assert a._trimmer is not None and a._trimmer.name == "history-trim"
    now[0] += TRIM_HISTORY_EVERY_S + 1
    a._trim_history()  # the first is still running (a long history): no second one beside it
    release.set()
    a._trimmer.join(5)
    assert calls == [77]
    a._trim_history()  # due (the skipped call did not push it back), and the first one is done
    a._trimmer.join(5)
    now[0] += TRIM_HISTORY_EVERY_S / 2
    a._trim_history()
    assert calls == [77, 77]
    now[0] += TRIM_HISTORY_EVERY_S
    a._trim_history()
    a._trimmer.join(5)
    assert calls == [77, 77, 77]
