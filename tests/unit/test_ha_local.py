"""hacluster/ha_local.py rules 40-45 row by row (the multi-cycle stories are in tests/scenarios/)."""

from __future__ import annotations

import pytest

from hacluster.coord.model import Lease
from hacluster.ha_local import (MIN_WAKE_S, ProbeStep, Seen, carry_promise, first_seen, give_back, probe_due, probe_step,
                                 reassert, snapshot_cached, zk_budget, zk_read, zk_stalled, zk_suspect)
from hacluster.timing import PROFILES

# ---------------------------------------------------------------- rule 40: first seen

FIRST_SEEN = [
    # (what, previous record, version read, read at, first-seen time returned)
    ("nothing seen before: now", None, 10, 5.0, 5.0),
    ("nothing seen, no znode: now", None, -1, 5.0, 5.0),
    ("same version again: the first sight stays", Seen(10, 1.0), 10, 5.0, 1.0),
    ("newer version (a renewal): a new wait starts", Seen(10, 1.0), 11, 5.0, 5.0),
    ("older version (a lagging server): the newer one's time stays", Seen(11, 1.0), 10, 5.0, 1.0),
    ("znode deleted: a new wait starts", Seen(11, 1.0), -1, 5.0, 5.0),
    ("deleted, still missing: the first sight stays", Seen(-1, 1.0), -1, 5.0, 1.0),
    ("created again after missing: a new wait starts", Seen(-1, 1.0), 3, 5.0, 5.0),
]


@pytest.mark.parametrize("what,prev,ident,t,want", FIRST_SEEN, ids=[r[0] for r in FIRST_SEEN])
def test_first_seen(what: str, prev: Seen | None, ident: int, t: float, want: float) -> None:
    got = first_seen(prev, ident, t)
    assert got.at == want
    # the record follows the version that the time belongs to
    assert got == (Seen(ident, t) if want == t else prev)


# ---------------------------------------------------------------- rule 41: give back a late write


def lease(holder: str | None = "n1", term: int = 3, version: int = 5) -> Lease:
    return Lease("store", holder, term, 0, version)


GIVE_BACK = [
    # (what, lease, holding, wrote this term, expired (term, version), give back?)
    ("late renewal after we demoted", lease(version=6), False, True, (3, 5), "last acknowledged: version 5"),
    ("a lost acquisition that landed after all", lease(term=4, version=0), False, True, (3, 5),
     "last acknowledged: none"),
    ("never held before, our write landed late", lease(), False, True, None, "last acknowledged: none"),
    ("our last acknowledged write: runs out by the deadline", lease(version=5), False, True, (3, 5), None),
    ("we hold it: a live lease", lease(version=6), True, True, (3, 5), None),
    ("a term we never wrote (a previous process of this node)", lease(version=6), False, False, (3, 5), None),
    ("another holder", lease(holder="n2", version=6), False, True, (3, 5), None),
    ("released (no holder)", lease(holder=None, version=6), False, True, (3, 5), None),
    ("no znode", Lease("store", None, 0, 0, -1), False, True, (3, 5), None),
    ("not in the snapshot", None, False, True, (3, 5), None),
]


@pytest.mark.parametrize("what,ls,holding,wrote,expired,want", GIVE_BACK, ids=[r[0] for r in GIVE_BACK])
def test_give_back(what: str, ls: Lease | None, holding: bool, wrote: bool, expired: tuple[int, int] | None,
                   want: str | None) -> None:
    got = give_back(ls, "n1", holding, wrote, expired)
    if want is None:
        assert got is None
    else:
        assert got is not None and want in got and "landed after we stopped holding" in got


# ---------------------------------------------------------------- rule 42: probe timing

PROBE_DUE = [
    ("no probe time", None, False, 5.0, False),
    ("probe time came", 5.0, False, 5.0, True),
    ("probe time not yet", 5.1, False, 5.0, False),
    ("holding: never", 1.0, True, 5.0, False),
]


@pytest.mark.parametrize("what,probe_at,holding,now,want", PROBE_DUE, ids=[r[0] for r in PROBE_DUE])
def test_probe_due(what: str, probe_at: float | None, holding: bool, now: float, want: bool) -> None:
    assert probe_due(probe_at, holding, now) is want


PROBE_STEP = [
    # (what, probe_at, last verdict's probe_at, had a last verdict, holding, now, step)
    ("no probe time: nothing", None, 4.0, True, False, 5.0, ProbeStep(False, False, None)),
    ("holding: nothing", 4.0, 4.0, True, True, 5.0, ProbeStep(False, False, None)),
    ("probe time came: prepare", 5.0, 5.0, True, False, 5.0, ProbeStep(True, False, None)),
    ("probe time passed, moved: prepare, no unprepare", 4.0, 3.0, True, False, 5.0, ProbeStep(True, False, None)),
    ("ahead, unchanged: wake for it", 6.0, 6.0, True, False, 5.0, ProbeStep(False, False, 6.0)),
    ("ahead, moved: unprepare, wake", 6.5, 6.0, True, False, 5.0, ProbeStep(False, True, 6.5)),
    ("ahead, previous verdict had none: unprepare", 6.0, None, True, False, 5.0, ProbeStep(False, True, 6.0)),
    ("ahead, first verdict: nothing to undo", 6.0, None, False, False, 5.0, ProbeStep(False, False, 6.0)),
    ("a hair ahead: no busy loop", 5.001, 5.001, True, False, 5.0, ProbeStep(False, False, 5.0 + MIN_WAKE_S)),
]


@pytest.mark.parametrize("what,probe_at,last,had,holding,now,want", PROBE_STEP, ids=[r[0] for r in PROBE_STEP])
def test_probe_step(what: str, probe_at: float | None, last: float | None, had: bool, holding: bool, now: float,
                    want: ProbeStep) -> None:
    assert probe_step(probe_at, last, had, holding, now) == want


# ---------------------------------------------------------------- rule 43: a promise outlives its record

P2 = (2.0, 0.6)


def promised(holder: str | None = "n1", version: int = 5, promise: tuple[float, float] | None = P2) -> Lease:
    lease_s, margin_s = promise or (None, None)
    return Lease("store", holder, 3, 0, version, lease_s=lease_s, margin_s=margin_s)


CARRY = [
    # (what, remembered promise, lease read, promise remembered after, promise the candidate sees)
    ("a record's promise is remembered", None, promised(), P2, P2),
    ("a newer record's promise replaces the old", (1.0, 0.3), promised(), P2, P2),
    ("a deleted lease carries the last promise", P2, Lease("store", None, 0, 0, -1), P2, P2),
    ("a scribbled lease carries it", P2, promised(holder="?", promise=None), P2, P2),
    ("an older agent's record (no promise) does not", P2, promised(promise=None), P2, None),
    ("nothing remembered, nothing carried", None, Lease("store", None, 0, 0, -1), None, None),
]


@pytest.mark.parametrize("what,last,ls,want_last,want_seen", CARRY, ids=[r[0] for r in CARRY])
def test_carry_promise(what: str, last: tuple[float, float] | None, ls: Lease, want_last: tuple[float, float] | None,
                       want_seen: tuple[float, float] | None) -> None:
    got_last, seen = carry_promise(last, ls)
    assert (got_last, seen.promise) == (want_last, want_seen)
    assert seen._replace(lease_s=ls.lease_s, margin_s=ls.margin_s) == ls  # nothing else changes


# ---------------------------------------------------------------- rule 44: a stalled holder polls first

ZK_READ = [
    # (what, stalled, failsafe, kazoo connected, read a snapshot)
    ("failsafe off: always read (it fails on its own when ZooKeeper is down)", True, False, False, True),
    ("failsafe, connected, not stalled: read", False, True, True, True),
    ("failsafe, kazoo not connected: no read, poll", False, True, False, False),
    ("failsafe, stalled, kazoo connected (a follower serving stale reads): no read, poll", True, True, True, False),
]


@pytest.mark.parametrize("what,stalled,failsafe,connected,want", ZK_READ, ids=[r[0] for r in ZK_READ])
def test_zk_read(what: str, stalled: bool, failsafe: bool, connected: bool, want: bool) -> None:
    assert zk_read(stalled, failsafe, connected) is want


ZK_STALLED = [
    # (what, failsafe, acked, failed, stalled after the loop)
    ("a write or read failed: stalled", True, False, True, True),
    ("nothing failed: not stalled", True, False, False, False),
    ("a write acknowledged: not stalled, though the snapshot failed in the same loop", True, True, True, False),
    ("a write acknowledged, nothing failed: not stalled", True, True, False, False),
    ("failsafe off: never stalled", False, False, True, False),
]


@pytest.mark.parametrize("what,failsafe,acked,failed,want", ZK_STALLED, ids=[r[0] for r in ZK_STALLED])
def test_zk_stalled(what: str, failsafe: bool, acked: bool, failed: bool, want: bool) -> None:
    assert zk_stalled(failsafe=failsafe, acked=acked, failed=failed) is want


REASSERT = [
    # (what, stalled, extended by the poll, renewal due, write through ZooKeeper now)
    ("stalled and extended: the CAS after the poll", True, True, False, True),
    ("stalled, not extended: the CAS, due or not", True, False, False, True),
    ("not stalled, due: the usual renewal", False, False, True, True),
    ("not stalled, not due: nothing", False, False, False, False),
    ("not stalled, extended (kazoo not connected): no write", False, True, True, False),
]


@pytest.mark.parametrize("what,stalled,extended,due,want", REASSERT, ids=[r[0] for r in REASSERT])
def test_reassert(what: str, stalled: bool, extended: bool, due: bool, want: bool) -> None:
    assert reassert(stalled, extended, due) is want


ZK_BUDGET = [
    # (what, failsafe, until, now, budget: None or seconds, default profile: the poll needs 0.15 + 0.05 s)
    ("failsafe off: no bound", False, 10.0, 9.9, None),
    ("no lease held: no bound", True, None, 9.9, None),
    ("just renewed: 0.5 s for ZooKeeper", True, 10.7, 10.0, 0.5),
    ("0.2 s to the deadline: none (poll now)", True, 10.2, 10.0, 0.0),
    ("past the poll's reserve: negative, none", True, 10.1, 10.0, -0.1),
]


@pytest.mark.parametrize("what,failsafe,until,now,want", ZK_BUDGET, ids=[r[0] for r in ZK_BUDGET])
def test_zk_budget(what: str, failsafe: bool, until: float | None, now: float, want: float | None) -> None:
    got = zk_budget(failsafe, until, now, PROFILES["default"])
    assert got == want if want is None else got == pytest.approx(want)


# ---------------------------------------------------------------- rule 45: no decision on a stale cache

ZK_SUSPECT = [
    # (what, suspect before, a request failed or timed out, the server answered, read from the server next)
    ("all well: the watch cache", False, False, False, False),
    ("a renewal timed out: the next snapshot from the server", False, True, False, True),
    ("still no answer: from the server again", True, False, False, True),
    ("the server answered (a snapshot read from it, a write acknowledged or refused): the cache again", True, False, True, False),
    ("an answer and a failure in one loop: the failure wins", True, True, True, True),
    ("a failure with an answer, not suspect before: suspect", False, True, True, True),
]


@pytest.mark.parametrize("what,prev,failed,answered,want", ZK_SUSPECT, ids=[r[0] for r in ZK_SUSPECT])
def test_zk_suspect(what: str, prev: bool, failed: bool, answered: bool, want: bool) -> None:
    assert zk_suspect(prev, failed=failed, answered=answered) is want


SNAPSHOT_CACHED = [
    # (what, suspect, holding, may read the watch cache)
    ("all well: the cache", False, False, True),
    ("suspect, holding nothing: from the server (no probe, no ACQUIRE on a stale cache)", True, False, False),
    ("suspect, holding: the cache (the retry of a timed-out renewal must not wait for a slow read)", True, True, True),
    ("holding, not suspect: the cache", False, True, True),
]


@pytest.mark.parametrize("what,suspect,holding,want", SNAPSHOT_CACHED, ids=[r[0] for r in SNAPSHOT_CACHED])
def test_snapshot_cached(what: str, suspect: bool, holding: bool, want: bool) -> None:
    assert snapshot_cached(suspect, holding) is want
