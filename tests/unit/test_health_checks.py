"""CheckResult invariants, rise/fall debouncing (table-driven) and the runners' timeout handling."""

from __future__ import annotations

import threading
import time

import pytest

from hacluster.health.checks import (
    Check, CheckResult, CheckRunner, Debounce, HealthMonitor, debounce, result,
)


def test_result_invariants() -> None:
    assert result("x", "warn", "d", 0.1).ok is True
    assert result("x", "crit", "d", 0.1).ok is False
    assert result("x", "warn", "d", 0.1, ok=False).ok is False
    with pytest.raises(ValueError):
        CheckResult("x", False, "ok", "d", 0.0)
    with pytest.raises(ValueError):
        CheckResult("x", True, "crit", "d", 0.0)
    with pytest.raises(ValueError):
        CheckResult("x", True, "fine", "d", 0.0)  # type: ignore[arg-type]
    r = result("x", "ok", "fine", 0.25, port=25)
    assert r.to_json() == {"name": "x", "ok": True, "severity": "ok", "detail": "fine", "latency_s": 0.25,
                           "data": {"port": 25}}


@pytest.mark.parametrize("kw", [{"interval_s": 0}, {"timeout_s": -1}, {"rise": 0}, {"fall": 0}])
def test_check_rejects_bad_schedule(kw: dict) -> None:
    with pytest.raises(ValueError):
        Check("x", lambda t: result("x", "ok", "", 0), **kw)


# (rise, fall, sequence of probe outcomes, expected debounced state after each)
DEBOUNCE_CASES = [
    (2, 3, "1", "1"),
    (2, 3, "0", "0"),  # the first result decides: no optimistic start
    (2, 3, "1001000", "1111110"),
    (2, 3, "1000", "1110"),
    (2, 3, "000101100", "000000111"),  # needs 2 consecutive successes to rise
    (1, 1, "10101", "10101"),
    (3, 1, "10110111", "10000001"),
    (1, 2, "1010011", "1111011"),
]


@pytest.mark.parametrize("rise,fall,seq,expected", DEBOUNCE_CASES)
def test_debounce_table(rise: int, fall: int, seq: str, expected: str) -> None:
    state = Debounce()
    got = ""
    for c in seq:
        state = debounce(state, c == "1", rise, fall)
        got += "1" if state.up else "0"
    assert got == expected


class Scripted:
    """A probe that replays (severity, sleep_s) steps."""

    def __init__(self, steps: list[tuple[str, float]]) -> None:
        self.steps, self.calls = list(steps), 0

    def __call__(self, timeout_s: float) -> CheckResult:
        severity, sleep = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if severity == "raise":
            raise RuntimeError("boom")
        time.sleep(sleep)
        return result("whatever", severity, f"step {self.calls}", sleep)  # type: ignore[arg-type]


def test_runner_effective_holds_last_agreeing_result() -> None:
    probe = Scripted([("ok", 0), ("crit", 0), ("crit", 0), ("crit", 0), ("ok", 0), ("ok", 0)])
    runner = CheckRunner(Check("spool", probe, timeout_s=1, rise=2, fall=3))
    assert runner.effective() is None
    seen = []
    for _ in range(6):
        raw = runner.run_once()
        assert raw.name == "spool"  # renamed to the check's name
        eff = runner.effective()
        seen.append((raw.ok, eff.ok, eff.detail.split(" [")[0]))
    assert seen == [
        (True, True, "step 1"),
        (False, True, "step 1"),  # 1/3 failures: still the last good result
        (False, True, "step 1"),
        (False, False, "step 4"),  # third failure flips
        (True, False, "step 4"),  # 1/2 successes
        (True, True, "step 6"),
    ]


def test_runner_pending_annotation() -> None:
    runner = CheckRunner(Check("mta", Scripted([("ok", 0), ("crit", 0)]), rise=2, fall=3))
    runner.run_once()
    runner.run_once()
    eff = runner.effective()
    assert eff.ok and eff.detail == "step 1 [pending: 1/3 failures, latest: step 2]"
    assert eff.data["pending"]["streak"] == 1 and eff.data["pending"]["latest"]["severity"] == "crit"


def test_runner_turns_exception_into_crit() -> None:
    raw = CheckRunner(Check("raid", Scripted([("raise", 0)]))).run_once()
    assert (raw.ok, raw.severity, raw.detail) == (False, "crit", "probe error: RuntimeError: boom")


def test_runner_timeout_and_no_pileup() -> None:
    release = threading.Event()
    calls = []

    def hung(timeout_s: float) -> CheckResult:
        calls.append(timeout_s)
        release.wait(5)
        return result("spool", "ok", "late", 0)

    runner = CheckRunner(Check("spool", hung, timeout_s=0.1))
    t0 = time.monotonic()
    first = runner.run_once()
    assert time.monotonic() - t0 < 1.0
    assert (first.severity, first.data) == ("crit", {"timed_out": True})
    assert first.detail == "timed out after 0.1s"
    second = runner.run_once()
    assert second.detail.startswith("previous probe still running") and len(calls) == 1
    release.set()
    time.sleep(0.05)
    assert runner.run_once().detail == "late" and len(calls) == 2


def test_due_respects_interval() -> None:
    now = [100.0]
    runner = CheckRunner(Check("x", Scripted([("ok", 0)]), interval_s=2), clock=lambda: now[0])
    assert runner.due()
    runner.run_once()
    now[0] += 1.9
    assert not runner.due()
    now[0] += 0.2
    assert runner.due()


def test_transition_callback_only_on_flip() -> None:
    flips = []
    runner = CheckRunner(Check("x", Scripted([("ok", 0), ("crit", 0), ("crit", 0), ("ok", 0)]), rise=1, fall=2),
                         on_transition=lambda name, up, res: flips.append((name, up)))
    for _ in range(4):
        runner.run_once()
    assert flips == [("x", False), ("x", True)]


def test_monitor_runs_on_threads_and_stops() -> None:
    fast = Scripted([("ok", 0)])
    slow = Scripted([("warn", 0.3)])
    mon = HealthMonitor([Check("a", fast, interval_s=0.05, timeout_s=1), Check("b", slow, interval_s=0.05, timeout_s=1)])
    assert mon.snapshot() == {}
    with mon:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(mon.snapshot()) < 2:
            time.sleep(0.02)
        t0 = time.monotonic()
        snap = mon.snapshot()  # never waits for the slow probe
        assert time.monotonic() - t0 < 0.05
    assert set(snap) == {"a", "b"} and snap["b"].severity == "warn"
    assert fast.calls >= 3  # the slow check did not hold the fast one back
    calls = fast.calls
    time.sleep(0.15)
    assert fast.calls == calls  # stopped
    assert mon.run_all_once()["a"].ok
