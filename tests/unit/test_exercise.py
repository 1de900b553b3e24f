"""exercise.py: the routine switchover and back, step by step, with its report."""

from __future__ import annotations

from hacluster.exercise import STEP_TIMEOUT_S, ExerciseState, advance
from hacluster.placement_spec import Exercise

EX = Exercise(7 * 86400, "03:00", hold_s=60.0)
T = 1_800_000_000.0


def kinds(actions: list) -> list[str]:
    return [k for k, _ in actions]


def test_the_whole_exercise() -> None:
    st = ExerciseState(T)
    st, acts = advance(st, EX, "store", "s1", "s1", T - 1, True)
    assert acts == [] and st.phase == "idle"  # not yet
    st, acts = advance(st, EX, "store", "s1", "s1", T, True)
    assert acts[0] == ("request", {"to": None}) and st.phase == "away" and st.next_at > T
    st, acts = advance(st, EX, "store", "s1", None, T + 0.5, True)  # released, nobody yet
    assert acts == [] and st.moved_to is None
    st, acts = advance(st, EX, "store", "s1", "s2", T + 1, True)
    assert st.moved_to == "s2" and acts == []
    st, acts = advance(st, EX, "store", "s1", "s2", T + 30, True)
    assert acts == []  # held there for `hold` first
    st, acts = advance(st, EX, "store", "s1", "s2", T + 61, True)
    assert acts == [("request", {"to": "s1"})] and st.phase == "back"
    st, acts = advance(st, EX, "store", "s1", "s1", T + 62, True)
    assert st.phase == "idle" and kinds(acts) == ["report", "record"]
    report = acts[0][1]
    assert report["ok"] and "s1 -> s2 in 1.0s" in report["text"] and "back on s1" in report["text"]


def test_only_the_holder_exercises_and_never_over_the_operator() -> None:
    st, acts = advance(ExerciseState(T), EX, "store", "s2", "s1", T, True)
    assert acts == [] and st.phase == "idle" and st.next_at > T
    st, acts = advance(ExerciseState(T), EX, "store", "s1", "s1", T, False)
    assert st.phase == "idle" and acts[0][0] == "report" and not acts[0][1]["ok"] and "skipped" in acts[0][1]["text"]


def test_failures_are_reported() -> None:
    st, _ = advance(ExerciseState(T), EX, "store", "s1", "s1", T, True)
    st, acts = advance(st, EX, "store", "s1", "s1", T + STEP_TIMEOUT_S + 1, True)  # nobody took it
    assert st.phase == "idle" and not acts[0][1]["ok"] and "FAILED" in acts[0][1]["text"]
    st = ExerciseState(T + 7 * 86400, "back", started_at=T, moved_to="s2", moved_at=T + 1, back_at=T + 61)
    st, acts = advance(st, EX, "store", "s1", "s2", T + 61 + STEP_TIMEOUT_S + 1, True)
    assert st.phase == "idle" and not acts[0][1]["ok"] and "did not come back" in acts[0][1]["text"]
