"""Verdict lines (agent/verdict_log.py): a change is logged in the loop that decides it, an
unchanged verdict at most once every SUMMARY_S, with how long it has stood."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hacluster.agent.verdict_log import SUMMARY_S, VerdictLog, verdict_key
from hacluster.ha import Action, Verdict


def wait(unchanged: float, term: int = 4, holder: str = "n2") -> Verdict:
    return Verdict("store", Action.WAIT, f"holder {holder} term {term}, unchanged for {unchanged:.3f}s")


def loops(vlog: VerdictLog, make, start: float, seconds: float, step: float = 0.2) -> list[tuple[float, str]]:
    out = []
    for i in range(round(seconds / step)):
        now = start + i * step
        line = vlog.line(make(now - start), now)
        if line is not None:
            out.append((now, line))
    return out


def test_an_unchanged_wait_is_logged_first_then_once_per_summary_period() -> None:
    vlog = VerdictLog()
    got = loops(vlog, wait, 100.0, 35.0)  # 175 loops of the default timing
    assert [round(t - 100.0, 1) for t, _ in got] == [0.0, 10.0, 20.0, 30.0]
    assert got[0][1] == "store: wait (holder n2 term 4, unchanged for 0.000s)"
    # the summary is the verdict of that loop (its own figures, which tests parse), then how long
    assert got[1][1] == "store: wait (holder n2 term 4, unchanged for 10.000s) [same verdict for 10s, 50 loops since the last line]"
    assert got[3][1].endswith("[same verdict for 30s, 50 loops since the last line]")


@pytest.mark.parametrize("changed", [
    wait(0.4, term=5),  # a new term
    wait(0.4, holder="n3"),  # another holder
    Verdict("store", Action.ACQUIRE, "holder n2 term 4 unchanged for 1.000s; candidate rank 0"),
    Verdict("store", Action.WAIT, "holder n2 term 4 unchanged for 1.000s; candidate rank 1, my turn in 0.200s"),
    Verdict("store", Action.WAIT, "maintenance mode: no placement changes"),
])
def test_a_changed_verdict_is_logged_in_the_loop_that_decides_it(changed: Verdict) -> None:
    vlog = VerdictLog()
    assert vlog.line(wait(0.0), 10.0) is not None
    assert vlog.line(wait(0.2), 10.2) is None
    assert vlog.line(changed, 10.4) == changed.line()
    assert vlog.line(wait(0.6), 10.6) == wait(0.6).line()  # and the way back, too
    assert vlog.line(wait(0.8), 10.8) is None


def test_moving_figures_are_not_a_change_whole_numbers_are() -> None:
    assert verdict_key(wait(0.1)) == verdict_key(wait(7.25))
    rank = "holder n2 term 4 unchanged for {:.3f}s; candidate rank {}, my turn in {:.3f}s"
    assert (verdict_key(Verdict("s", Action.WAIT, rank.format(1.0, 1, 0.3)))
            == verdict_key(Verdict("s", Action.WAIT, rank.format(1.1, 1, 0.2))))
    assert (verdict_key(Verdict("s", Action.WAIT, rank.format(1.0, 1, 0.3)))
            != verdict_key(Verdict("s", Action.WAIT, rank.format(1.0, 2, 0.3))))
    promised = "holder n2 term 4 (promised lease {}s), unchanged for 0.500s"
    assert verdict_key(Verdict("s", Action.WAIT, promised.format(1))) != verdict_key(Verdict("s", Action.WAIT, promised.format(5)))
    assert verdict_key(Verdict("s", Action.WAIT, "x")) != verdict_key(Verdict("s", Action.RENEW, "x"))


def test_roles_are_tracked_apart() -> None:
    vlog = VerdictLog()
    relay = Verdict("relay", Action.RENEW, "holder, term 2")
    assert vlog.line(wait(0.0), 0.0) is not None
    assert vlog.line(relay, 0.0) is not None
    assert vlog.line(relay, 0.2) is None
    assert vlog.line(wait(0.2), 0.2) is None
    assert vlog.line(relay, SUMMARY_S) is not None
    assert vlog.line(wait(SUMMARY_S), SUMMARY_S) is not None


@pytest.mark.parametrize("fmt", [
    "holder, term 3; switchover to n2 scheduled in {}s",
    "holder, term 3; failback in {}s",
    "holder, term 3; failsafe: zookeeper unreachable, 1 peer(s) confirmed, valid for {}s",
    "failsafe: promised n1 (term 3) not to acquire for {}s more",
    "lease expired {}s ago (no acknowledged renewal)",
    "holder n1 term 3; no takeover, fencing again in {}s",
])
def test_every_countdown_of_ha_py_is_a_moving_figure(fmt: str) -> None:
    key = verdict_key(Verdict("s", Action.RENEW, fmt.format("120")))
    assert key == verdict_key(Verdict("s", Action.RENEW, fmt.format("7.5")))
    if "term 3" in fmt:  # the term beside it still counts
        assert key != verdict_key(Verdict("s", Action.RENEW, fmt.replace("term 3", "term 4").format("7.5")))


@pytest.mark.parametrize("args, env, level", [([], {}, logging.NOTSET), (["--every-verdict"], {}, logging.DEBUG),
                                              ([], {"HACLUSTER_EVERY_VERDICT": "1"}, logging.DEBUG)])
def test_every_verdict_puts_the_agent_loggers_to_debug(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                       env: dict[str, str], level: int) -> None:
    """`hacluster agent --every-verdict`: every loop's verdict (DEBUG) reaches the log again."""
    from click.testing import CliRunner

    from hacluster.agent import loop
    from hacluster.examples import __file__ as examples

    class NoAgent:
        def __init__(self, *a: object, **k: object) -> None:
            pass

        def run(self) -> int:
            return 0

    monkeypatch.setattr(loop, "production_parts", lambda *a, **k: None)
    monkeypatch.setattr(loop, "Agent", NoAgent)
    agent_log = logging.getLogger("hacluster.agent")
    old = agent_log.level
    agent_log.setLevel(logging.NOTSET)
    try:
        spec = str(Path(examples).parent / "lab.yml")
        res = CliRunner().invoke(loop.agent_cmd, ["--config", spec, "--node", "store1", *args], env=env)
        assert res.exit_code == 0, res.output
        assert agent_log.level == level
    finally:
        agent_log.setLevel(old)  # (setLevel, not setattr: it also clears the loggers' level cache)
    assert logging.getLogger("kazoo").getEffectiveLevel() >= logging.INFO
