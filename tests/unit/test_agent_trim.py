"""The agent schedules the history trim (Coordinator.trim_history, zookeeper.history_keep): right
after it starts, then every TRIM_HISTORY_EVERY_S, on a thread of its own and never two at once."""

from __future__ import annotations

import threading

from hacluster.agent.loop import TRIM_HISTORY_EVERY_S
from hacluster.examples import loopback_spec


class TrimCoord:
    """The coordinator's trim, held until the test lets it finish (a long history)."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()

    def trim_history(self, keep: int) -> int:
        self.calls.append(keep)
        self.release.wait(5)
        return 0


def test_history_trim_runs_at_start_then_once_a_period(make_agent, fake_clock) -> None:
    text = loopback_spec("127.0.0.1:1", 1, "default", "trim").replace(
        "  session_timeout_s: 4.0\n", "  session_timeout_s: 4.0\n  history_keep: 77\n")
    coord = TrimCoord()
    a = make_agent(text=text, coord=coord, clock=fake_clock)
    calls, release = coord.calls, coord.release
    fake_clock.t = 1000.0
    a._trim_history()
    assert a._trimmer is not None and a._trimmer.name == "history-trim"
    fake_clock.t += TRIM_HISTORY_EVERY_S + 1
    a._trim_history()  # the first is still running (a long history): no second one beside it
    release.set()
    a._trimmer.join(5)
    assert calls == [77]
    a._trim_history()  # due (the skipped call did not push it back), and the first one is done
    a._trimmer.join(5)
    fake_clock.t += TRIM_HISTORY_EVERY_S / 2
    a._trim_history()
    assert calls == [77, 77]
    fake_clock.t += TRIM_HISTORY_EVERY_S
    a._trim_history()
    a._trimmer.join(5)
    assert calls == [77, 77, 77]
