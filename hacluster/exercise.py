"""Routine exercise of a role (`roles.R.exercise: {every: 7d, at: "03:00", hold: 60s}`): the
holder switches the role over to the best other node at that time, takes it back after `hold`,
and mails a report (notify) either way. A standby that is never used is a standby that may not
work (seed 001: use your backups routinely); this uses it on a schedule, at a quiet hour.

`advance` is pure: the state, what the cluster shows now, out come the new state and the actions
for the agent (write a switchover request, record a history event, notify). Both moves are
ordinary switchover requests, so ha.py's rules (eligibility, standby, bans, maintenance) apply.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .placement_spec import Exercise

STEP_TIMEOUT_S = 60.0  # a move not done by then: the exercise failed (and says so)


@dataclass(frozen=True)
class ExerciseState:
    next_at: float  # wall clock of the next exercise
    phase: str = "idle"  # idle | away (handed over, waiting for it to move and `hold`) | back
    started_at: float = 0.0
    moved_to: str | None = None
    moved_at: float = 0.0
    back_at: float = 0.0


Action = tuple[str, dict[str, Any]]  # ("request", {to}), ("record", {event, ...}), ("report", {ok, text})


def advance(st: ExerciseState, ex: Exercise, role: str, me: str, holder: str | None, wall: float,
            quiet: bool) -> tuple[ExerciseState, list[Action]]:
    """One loop of the exercise of `role` on node `me`. `quiet`: no request is pending and the
    cluster is not in maintenance (an exercise never overrides the operator)."""
    if st.phase == "idle":
        if wall < st.next_at:
            return st, []
        nxt = ex.next_after(wall)
        if holder != me:
            return replace(st, next_at=nxt), []  # the holder exercises; we are not it
        if not quiet:
            return replace(st, next_at=nxt), [("report", {"ok": False, "text": f"exercise of {role} skipped: a request "
                                                          "is pending or the cluster is in maintenance"})]
        return (ExerciseState(nxt, "away", started_at=wall),
                [("request", {"to": None}), ("record", {"event": "exercise-started"})])
    if st.phase == "away":
        if st.moved_to is None:
            if holder not in (None, me):
                return replace(st, moved_to=holder, moved_at=wall), []
            if wall - st.started_at > STEP_TIMEOUT_S:
                return (ExerciseState(st.next_at), [("report", {"ok": False, "text": (
                    f"exercise of {role} FAILED: no other node took it within {STEP_TIMEOUT_S:g}s; still on "
                    f"{holder or 'nobody'}")}), ("record", {"event": "exercise-failed"})])
            return st, []
        if wall - st.moved_at >= ex.hold_s:
            return replace(st, phase="back", back_at=wall), [("request", {"to": me})]
        return st, []
    # back
    if holder == me:
        text = (f"exercise of {role}: {me} -> {st.moved_to} in {st.moved_at - st.started_at:.1f}s, held there "
                f"{st.back_at - st.moved_at:.0f}s, back on {me} {wall - st.back_at:.1f}s after asking: the standby works")
        return ExerciseState(st.next_at), [("report", {"ok": True, "text": text}),
                                           ("record", {"event": "exercise-done", "to": st.moved_to})]
    if wall - st.back_at > STEP_TIMEOUT_S:
        return ExerciseState(st.next_at), [("report", {"ok": False, "text": (
            f"exercise of {role}: moved to {st.moved_to}, but it did not come back to {me} within "
            f"{STEP_TIMEOUT_S:g}s (now on {holder or 'nobody'})")}), ("record", {"event": "exercise-failed"})]
    return st, []


__all__ = ["ExerciseState", "advance"]
