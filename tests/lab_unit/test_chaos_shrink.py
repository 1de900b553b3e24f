"""The shrinker finds a minimal failing fault subset within its budget; the checker really fails
on planted violations, and a failing chaos run reports the seed and the shrunk sequence."""

from __future__ import annotations

import itertools

import pytest

from hacluster_lab.chaos import summary_text
from hacluster_lab.chaos.check import Verdict, evaluate, same_failure
from hacluster_lab.chaos.schedule import Params, Schedule, generate
from hacluster_lab.chaos.session import RunResult, chaos
from hacluster_lab.chaos.shrink import shrink

GOOD_MON = {"dual_holder_samples": 0, "dual_holder_intervals": [], "samples": 100, "max_gap_s": 0.01}
GOOD_LED = {"submitted": 10, "accepted": 10, "delivered_once": 10, "lost": 0, "duplicates": 0}
GOOD_REC = {"limit_s": 60, "max_recovery_s": 3.0, "components_s": {"vip_single_holder": 3.0}, "not_recovered": []}


def culprit(*needed: int):
    calls: list[list[int]] = []

    def fails(ids: list[int]) -> bool:
        calls.append(ids)
        return set(needed) <= set(ids)

    return fails, calls


@pytest.mark.parametrize("needed", [(7,), (3, 17), (1, 2, 30)])
def test_ddmin_finds_the_culprits(needed: tuple[int, ...]) -> None:
    fails, calls = culprit(*needed)
    res = shrink(list(range(1, 33)), fails, max_tests=200)
    assert res.minimal == sorted(needed)
    assert res.one_minimal and not res.exhausted
    assert res.tests == len(calls) == len(res.trials)


def test_hint_first_saves_tests() -> None:
    fails, _ = culprit(12)
    with_hint = shrink(list(range(1, 41)), fails, max_tests=50, hint=[11, 12, 13])
    fails2, _ = culprit(12)
    without = shrink(list(range(1, 41)), fails2, max_tests=50)
    assert with_hint.minimal == without.minimal == [12]
    assert with_hint.trials[0] == {"ids": [11, 12, 13], "fails": True}
    assert with_hint.tests < without.tests


def test_budget_is_respected() -> None:
    fails, calls = culprit(5, 25)
    res = shrink(list(range(1, 33)), fails, max_tests=3)
    assert len(calls) == 3 and res.exhausted and not res.one_minimal
    assert set([5, 25]) <= set(res.minimal)  # still failing: never returns a passing set
    clock = itertools.count()
    res2 = shrink(list(range(1, 33)), culprit(5)[0], max_tests=100, deadline=4, clock=lambda: next(clock))
    assert res2.exhausted and res2.tests <= 4


def test_flaky_failure_keeps_the_full_set() -> None:
    res = shrink([1, 2, 3, 4], lambda ids: False, max_tests=20)
    assert res.minimal == [1, 2, 3, 4] and res.one_minimal


def test_checker_passes_a_clean_run() -> None:
    v = evaluate(GOOD_MON, {"mx": GOOD_LED, "vip": GOOD_LED}, GOOD_REC)
    assert v.ok and v.violations == []


def test_checker_fails_planted_violations() -> None:
    mon = dict(GOOD_MON, dual_holder_samples=4,
               dual_holder_intervals=[{"vip": "198.51.100.20", "holders": ["store1", "store2"], "t_start": 105.0, "samples": 4}])
    led = dict(GOOD_LED, lost=1, delivered_once=9, lost_msgids=["<a@x>"], lost_in_queue={"store1": ["<a@x>"]})
    rec = dict(GOOD_REC, max_recovery_s=45.0, components_s={"smtp:store-vip": 45.0})
    v = evaluate(mon, {"mx": led, "vip": dict(GOOD_LED, accepted=0)}, rec, {"errors": ["power-on zk1: boom"]},
                 recovery_bound_s=30.0, submissions_t={"<a@x>": 101.5})
    assert not v.ok
    assert v.kinds == {"dual_holder", "lost", "no_load", "recovery", "heal"}
    by = {x.kind: x for x in v.violations}
    assert by["dual_holder"].t_mono == 105.0 and "store1, store2" in by["dual_holder"].detail
    assert by["lost"].t_mono == 101.5 and "still queued on store1" in by["lost"].detail
    assert "45.0 > bound 30.0" in by["recovery"].detail
    unrecovered = evaluate(GOOD_MON, {"mx": GOOD_LED}, {"limit_s": 60, "max_recovery_s": None, "not_recovered": ["zk:zk2"]})
    assert not unrecovered.ok and "zk:zk2" in unrecovered.violations[0].detail


def test_duplicates_fail_the_run_unless_budgeted() -> None:
    """seed 7's report said ok with 5 duplicates: a duplicate is a violation now, naming where
    both copies landed, unless the run names an explicit budget."""
    led = dict(GOOD_LED, duplicates=2, duplicate_msgids=["<d1@x>", "<d2@x>"],
               duplicate_copies={"<d1@x>": [{"store": "store1", "mailbox": "user1", "unique": "a", "mtime": 1.0},
                                            {"store": "store2", "mailbox": "user1", "unique": "b", "mtime": 2.0}]})
    v = evaluate(GOOD_MON, {"mx": led, "vip": GOOD_LED}, GOOD_REC, submissions_t={"<d1@x>": 170.0, "<d2@x>": 171.0})
    assert not v.ok and v.kinds == {"duplicate"}
    (dup,) = v.violations
    assert "2 messages delivered twice" in dup.detail and "store1/user1, store2/user1" in dup.detail
    assert dup.t_mono == 170.0  # the shrinker's hint: faults around the first one
    assert evaluate(GOOD_MON, {"mx": led}, GOOD_REC, allow_duplicates=2).ok
    assert not evaluate(GOOD_MON, {"mx": led, "vip": dict(GOOD_LED, duplicates=1)}, GOOD_REC, allow_duplicates=2).ok


def test_duplicate_details_name_the_faults_in_force() -> None:
    from hacluster_lab.chaos.session import duplicate_details

    sched = generate(7, params=Params(duration_s=120))
    f = sched.faults[0]
    t_mid = (f.start + (f.end if not f.to_heal else f.start + 1)) / 2
    led = {"duplicate_msgids": ["<d@x>"], "duplicate_copies": {"<d@x>": [{"store": "store1", "mailbox": "u"}]}}
    (d,) = duplicate_details(sched, {"mx": led}, {"<d@x>": 1000.0 + t_mid}, t0=1000.0)
    assert d["stream"] == "mx" and d["copies"] == [{"store": "store1", "mailbox": "u"}]
    assert f.describe() in d["faults_in_force"]
    assert all(g.start <= d["t"] and (g.to_heal or d["t"] <= g.end)
               for g in sched.faults if g.describe() in d["faults_in_force"])


def test_same_failure() -> None:
    lost = evaluate(GOOD_MON, {"mx": dict(GOOD_LED, lost=1)}, GOOD_REC)
    dual = evaluate(dict(GOOD_MON, dual_holder_samples=1), {"mx": GOOD_LED}, GOOD_REC)
    noload = evaluate(GOOD_MON, {"mx": dict(GOOD_LED, accepted=0)}, GOOD_REC)
    assert same_failure(lost, lost) and not same_failure(lost, dual) and not same_failure(lost, noload)
    assert not same_failure(lost, Verdict(True))


def test_failing_run_is_shrunk_and_reported() -> None:
    """A planted bug: mail is lost whenever faults 4 and 9 both run. The report must name the
    seed and the minimal sequence, with a command that reproduces it."""
    sched = generate(1234, params=Params(duration_s=120))
    assert {4, 9} <= set(sched.ids())
    runs: list[Schedule] = []

    def execute(s: Schedule) -> RunResult:
        runs.append(s)
        bad = {4, 9} <= set(s.ids())
        led = dict(GOOD_LED, lost=1, lost_msgids=["<m@x>"]) if bad else GOOD_LED
        verdict = evaluate(GOOD_MON, {"mx": led}, GOOD_REC, submissions_t={"<m@x>": 1000.0 + 20})
        report = {"seed": s.seed, "duration_s": s.duration_s, "ok": verdict.ok,
                  "violations": [v.to_dict() for v in verdict.violations], "dual_holder_samples": 0,
                  "accepted": 10, "lost": int(bad), "duplicates": 0, "max_recovery_s": 3.0, "recovery_bound_s": 30.0,
                  "mail": {"mx": {k: led.get(k, 0) for k in ("submitted", "accepted", "delivered_once", "lost",
                                                               "duplicates", "not_accepted")}},
                  "faults": {"count": len(s.faults), "by_kind": s.counts(), "actions": 0, "failed_actions": 0, "max_late_s": 0},
                  "monitor": {"samples": 1, "max_gap_s": 0.0}}
        return RunResult(verdict, report, t0=1000.0, submissions_t={"<m@x>": 1020.0})

    rep = chaos(sched, execute, shrink_tests=30, shrink_budget_s=10_000)
    assert not rep["ok"] and rep["lost"] == 1
    assert rep["shrink"]["minimal"] == [4, 9] and rep["shrink"]["one_minimal"]
    by_id = {f.id: f for f in sched.faults}
    assert rep["minimal"] == [by_id[4].describe(), by_id[9].describe()]
    assert rep["minimal_repro"].endswith("--seed 1234 --duration 120 --only 4,9")
    # re-runs are compacted subsets of the original schedule
    assert all(r.seed == 1234 and set(r.ids()) < set(sched.ids()) for r in runs[1:])
    text = summary_text(rep)
    assert "FAILED" in text and "seed 1234" in text and by_id[9].describe() in text and "--only 4,9" in text


def test_reruns_longer_than_the_budget_are_skipped() -> None:
    sched = generate(1234, params=Params(duration_s=600))
    n: list[Schedule] = []

    def execute(s: Schedule) -> RunResult:
        n.append(s)
        return RunResult(evaluate(GOOD_MON, {"mx": dict(GOOD_LED, lost=1)}, GOOD_REC), {"ok": False}, t0=None)

    rep = chaos(sched, execute, shrink_tests=5, shrink_budget_s=200)
    assert len(n) - 1 < rep["shrink"]["tests"]  # long subsets were skipped, not run
    assert all(s.duration_s + 90 <= 200 for s in n[1:])  # only re-runs that fit were run
    assert rep["minimal"]  # the best found so far is still reported
    if len(rep["minimal"]) == len(sched.faults):
        assert "minimal_repro" not in rep and not rep["reproduced"]


def test_passing_run_is_not_shrunk() -> None:
    sched = generate(5, params=Params(duration_s=30))
    n = []

    def execute(s: Schedule) -> RunResult:
        n.append(1)
        return RunResult(evaluate(GOOD_MON, {"mx": GOOD_LED}, GOOD_REC), {"ok": True})

    rep = chaos(sched, execute)
    assert rep["ok"] and len(n) == 1 and "shrink" not in rep


def test_diag_traces_a_message_through_the_maillogs(tmp_path) -> None:
    """The evidence kept for lost mail: every log line of the queue ids that carried it."""
    from types import SimpleNamespace

    from hacluster_lab.chaos.diag import trace_message

    logs = {
        "relay1": ["Nov 27 04:39:56 relay1 postfix/smtpd[1]: 1E1D7FE039C: client=unknown[203.0.113.10]",
                   "Nov 27 04:39:56 relay1 postfix/cleanup[2]: 1E1D7FE039C: message-id=<m1@x>",
                   "Nov 27 04:39:56 relay1 postfix/cleanup[2]: 2AAAAAAAAAA: message-id=<other@x>",
                   "Nov 27 04:39:58 relay1 postfix/smtp[3]: 1E1D7FE039C: to=<user@lab.example>, status=deferred "
                   "(connect to 198.51.100.20[198.51.100.20]:25: Connection timed out)"],
        "store1": ["Nov 27 04:39:56 store1 postfix/smtpd[9]: 3BBBBBBBBBB: client=unknown[192.0.2.11]"],
    }
    for h, lines in logs.items():
        (tmp_path / h).write_text("\n".join(lines) + "\n")
    hosts = [SimpleNamespace(name=n) for n in ("client", "relay1", "store1")]
    lab = SimpleNamespace(plan=SimpleNamespace(of_kind=lambda *k: hosts),
                          paths=SimpleNamespace(maillog=lambda h: tmp_path / h))
    tr = trace_message(lab, "<m1@x>")
    assert list(tr) == ["relay1"]
    assert [ln.split(": ", 2)[2][:10] for ln in tr["relay1"]] == ["client=unk", "message-id", "to=<user@l"]
