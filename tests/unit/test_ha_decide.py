"""`decide_role` case by case, the way Pacemaker tests its scheduler: each row is a snapshot plus
this node's view, and the one verdict it must produce (action, hand-off target, wake time).

The rows are grouped by the numbered rules of hacluster/ha.py's docstring; every rule has at least
one row, and `test_every_rule_has_a_row` keeps it that way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import NamedTuple

import pytest

from hacluster.coord.model import (Cluster, Constraint, Lease, Member, Request, decode_constraint, decode_lease,
                                   decode_member, decode_request, encode_constraint, encode_lease, encode_member,
                                   encode_request)
from hacluster.ha import (FENCE_RETRY_S, REQUEST_TTL_S, Action, FailsafePoll, Fenced, Held, Local, PeerAnswer,
                          Promise, decide, decide_role)
from hacluster.placement_spec import Placement
from hacluster.spec import RoleSpec, parse_spec
from hacluster.timing import PROFILES, Timing

T = Timing(lease_s=1.0, loop_s=0.2, request_timeout_s=0.15, margin_s=0.3, stop_timeout_s=0.2)
FAST = PROFILES["fast"]  # lease_s 0.3, margin_s 0.1: the other side of a rolling timing change
DEFAULT_PROMISE = (1.0, 0.3)  # what a holder on the default profile writes into its lease record
FAST_PROMISE = (0.3, 0.1)
STAGGER = T.rank_stagger_s  # 0.25
ROLE = RoleSpec("store", "store")
NOW = 100.0
WALL = 1_700_000_000.0

PRIO = {"n1": 100, "n2": 90, "n3": 80, "r1": 100}


def M(name: str, *, healthy: bool = True, demote: bool = False, penalty: int = 0, tier: str = "store",
      reasons: tuple[str, ...] = ()) -> Member:
    return Member(name, tier, PRIO.get(name, 50), healthy, demote, penalty, reasons)


def L(holder: str | None, term: int = 5, *, seen: float = NOW - 0.5, version: int = 7,
      handoff: str | None = None, promise: tuple[float, float] | None = None) -> Lease:
    """The lease as the snapshot shows it; `seen` is when this node first saw this version;
    `promise` the holder's (lease_s, margin_s) from the record (None: an older agent's record)."""
    lease_s, margin_s = promise or (None, None)
    return Lease("store", holder, term, 3, version, handoff, seen, lease_s=lease_s, margin_s=margin_s)


MISSING = Lease("store", None, 0, 0, -1, None, NOW - 0.5)
GONE = MISSING._replace(observed_at=NOW - 1.0, lease_s=1.0, margin_s=0.3)  # deleted after we read its record


def R(kind: str, to: str | None, age: float = 5.0, not_before: float | None = None) -> Request:
    return Request("store", kind, to, "cli@test", WALL - age, not_before=not_before)


ALL = {"n1": M("n1"), "n2": M("n2"), "n3": M("n3")}


class Case(NamedTuple):
    rule: str  # the ha.py rule this row exercises
    me: str
    lease: Lease | None
    want: Action
    handoff: str | None = None
    wake: float | None = None
    reason: str = ""  # a substring the verdict's reason must contain
    members: dict[str, Member] = ALL
    held: Held | None = None
    me_member: Member | None = None  # this node's fresh health, default: its entry in members
    request: Request | None = None
    maintenance: bool = False
    connected: bool = True
    probe: float | None = None  # the verdict's probe_at (rule 10); checked when given
    timing: Timing = T  # this node's own timing
    constraints: tuple[Constraint, ...] = ()  # rule 12
    failsafe: bool = False  # the spec's flag (rules 13, 14)
    peers: tuple[str, ...] | None = None  # the tier's other nodes in the spec; default: n1-n3 but me
    poll: FailsafePoll | None = None  # this loop's failsafe poll (rule 13)
    promise: Promise | None = None  # our failsafe promise (rule 14)
    extend: float | None = None  # the verdict's extend_to (rule 13); always checked
    fencing: bool = False  # the role requires fencing a silent holder (rules 15-19)
    fences: dict[str, Fenced] | None = None  # our fence records for the role (rules 15-19)
    fence: tuple[str, ...] = ()  # the verdict's nodes to fence; always checked
    reconnected: float | None = None  # Local.reconnected_at (rule 25)
    place: Placement = Placement()  # the role's placement in the spec (rules 30-34)
    others: dict[str, str] = {}  # other roles' holders (rule 32): role -> node
    since: dict[str, float] = {}  # Local.healthy_since (rule 33)
    held_since: float | None = None  # Local.held_since of this role (rule 33)


def STANDBY(node: str, until: float | None = None) -> Constraint:
    return Constraint(node, None, "cli@test", WALL - 60, until)


def BAN(node: str, role: str = "store", until: float | None = None) -> Constraint:
    return Constraint(node, role, "cli@test", WALL - 60, until)


LEAD = T.probe_lead_s  # 0.3 - 0.2 - 2*0.01*1.0 = 0.08
SENT = NOW - 0.05  # the failsafe poll's send time


def YES(node: str) -> PeerAnswer:
    return PeerAnswer(node, True, T.lease_s)


POLL_ALL = FailsafePoll(SENT, {"n2": YES("n2"), "n3": YES("n3")})
PROMISED = Promise("n1", 5, NOW + 0.3)
HOLDING = Held(term=5, seq=3, until=NOW + 0.4, version=7)
MINE = L("n1")

CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- holder
    "1 deadline passed": Case("1", "n1", MINE, Action.DEMOTE, reason="lease expired",
                              held=HOLDING._replace(until=NOW - 0.1)),
    "1 deadline exactly now": Case("1", "n1", MINE, Action.DEMOTE, reason="lease expired",
                                   held=HOLDING._replace(until=NOW)),
    "1 deadline passed even in maintenance": Case("1", "n1", MINE, Action.DEMOTE, held=HOLDING._replace(until=NOW - 1),
                                                  maintenance=True),
    "1 deadline passed while zookeeper unreachable": Case("1", "n1", None, Action.DEMOTE,
                                                          held=HOLDING._replace(until=NOW - 0.01), connected=False),
    "2 another holder": Case("2", "n1", L("n2", 6), Action.DEMOTE, held=HOLDING, reason="lease taken"),
    "2 same holder name, other term": Case("2", "n1", L("n1", 6), Action.DEMOTE, held=HOLDING, reason="term=6"),
    "2 malformed lease under us": Case("2", "n1", L("?", 0), Action.DEMOTE, held=HOLDING),
    "2 released under us": Case("2", "n1", L(None, 5), Action.DEMOTE, held=HOLDING),
    "3 health says demote: hand-off to best other": Case(
        "3", "n1", MINE, Action.RELEASE, "n2", held=HOLDING, reason="spool read-only",
        me_member=M("n1", healthy=False, demote=True, reasons=("spool read-only",))),
    "3 hand-off skips an unhealthy node": Case(
        "3", "n1", MINE, Action.RELEASE, "n3", held=HOLDING, me_member=M("n1", demote=True),
        members={**ALL, "n2": M("n2", healthy=False)}),
    "3 hand-off by score (priority - penalty)": Case(
        "3", "n1", MINE, Action.RELEASE, "n3", held=HOLDING, me_member=M("n1", demote=True),
        members={**ALL, "n2": M("n2", penalty=30)}),
    "3 nobody else eligible: release without hand-off": Case(
        "3", "n1", MINE, Action.RELEASE, None, held=HOLDING, me_member=M("n1", demote=True),
        members={"n1": M("n1")}),
    "3 demote even in maintenance": Case(
        "3", "n1", MINE, Action.RELEASE, "n2", held=HOLDING, me_member=M("n1", demote=True), maintenance=True),
    "4 switchover to n3": Case("4", "n1", MINE, Action.RELEASE, "n3", held=HOLDING,
                               request=R("switchover", "n3"), reason="switchover to n3"),
    "4 switchover to any: best other": Case("4", "n1", MINE, Action.RELEASE, "n2", held=HOLDING,
                                            request=R("switchover", None)),
    "4 switchover to an unhealthy target is not carried out": Case(
        "4", "n1", MINE, Action.RENEW, held=HOLDING, request=R("switchover", "n3"), reason="not eligible",
        members={**ALL, "n3": M("n3", healthy=False, demote=True)}),
    "4 switchover to a node with no agent": Case(
        "4", "n1", MINE, Action.RENEW, held=HOLDING, request=R("switchover", "n9"), reason="not eligible"),
    "4 switchover to a node of another tier": Case(
        "4", "n1", MINE, Action.RENEW, held=HOLDING, request=R("switchover", "r1"),
        members={**ALL, "r1": M("r1", tier="relay")}),
    "4 switchover to any, nobody else eligible": Case(
        "4", "n1", MINE, Action.RENEW, held=HOLDING, request=R("switchover", None), members={"n1": M("n1")}),
    "4 switchover to myself": Case("4", "n1", MINE, Action.RENEW, held=HOLDING, request=R("switchover", "n1")),
    "4 switchover paused by maintenance": Case("4", "n1", MINE, Action.RENEW, held=HOLDING,
                                               request=R("switchover", "n3"), maintenance=True),
    "4 switchover request past its TTL": Case("4", "n1", MINE, Action.RENEW, held=HOLDING,
                                              request=R("switchover", "n3", age=REQUEST_TTL_S + 1)),
    "4 switchover request just inside its TTL": Case("4", "n1", MINE, Action.RELEASE, "n3", held=HOLDING,
                                                     request=R("switchover", "n3", age=REQUEST_TTL_S - 1)),
    "4 failover does not move a live holder": Case("4", "n1", MINE, Action.RENEW, held=HOLDING,
                                                   request=R("failover", "n2")),
    "5 renew": Case("5", "n1", MINE, Action.RENEW, held=HOLDING, reason="holder, term 5"),
    "5 renew in maintenance": Case("5", "n1", MINE, Action.RENEW, held=HOLDING, maintenance=True, reason="maintenance"),
    "5 unhealthy but not demote: keep": Case("5", "n1", MINE, Action.RENEW, held=HOLDING,
                                             me_member=M("n1", healthy=False)),
    "5 zookeeper unreachable: keep trying until the deadline": Case("5", "n1", None, Action.RENEW, held=HOLDING,
                                                                    connected=False),
    "5 lease znode deleted under us: renewal will fail, the deadline decides": Case(
        "5", "n1", MISSING, Action.RENEW, held=HOLDING),
    # ---------------------------------------------------------------- not holder
    "6 maintenance": Case("6", "n2", L("n1", seen=NOW - 30), Action.WAIT, reason="maintenance", maintenance=True),
    "6 maintenance: released lease stays free": Case("6", "n1", L(None, seen=NOW - 30), Action.WAIT, maintenance=True),
    "6 maintenance: a switchover request does not place": Case(
        "6", "n3", L(None, seen=NOW - 30), Action.WAIT, maintenance=True, request=R("switchover", "n3")),
    "6 maintenance: failover to another node": Case(
        "6", "n2", L("n1", seen=NOW - 30), Action.WAIT, maintenance=True, request=R("failover", "n3")),
    "6 zookeeper unreachable": Case("6", "n2", L("n1", seen=NOW - 30), Action.WAIT, reason="zookeeper unreachable",
                                    connected=False),
    "6 unhealthy": Case("6", "n2", L("n1", seen=NOW - 30), Action.WAIT, reason="not eligible",
                        me_member=M("n2", healthy=False, reasons=("smtp down",))),
    "6 demote (standby)": Case("6", "n2", L(None, seen=NOW - 30), Action.WAIT, reason="standby",
                               me_member=M("n2", healthy=False, demote=True, reasons=("standby",))),
    "6 our published health is stale, our own view counts": Case(
        "6", "n2", L("n1", seen=NOW - 30), Action.WAIT, members={**ALL, "n2": M("n2")},
        me_member=M("n2", healthy=False)),
    "7 released to me: take it at once": Case("7", "n3", L(None, seen=NOW - 0.01, handoff="n3"), Action.ACQUIRE,
                                              reason="requested"),
    "7 released to another: wait a lease for it": Case("7", "n1", L(None, seen=NOW - 0.1, handoff="n3"), Action.WAIT,
                                                       wake=NOW - 0.1 + 1.0, reason="hand-off to n3"),
    "7 released to another that never came: by rank after a lease": Case(
        "7", "n1", L(None, seen=NOW - 1.0, handoff="n3"), Action.ACQUIRE),
    "7 released to another that never came, second rank waits its stagger": Case(
        "7", "n2", L(None, seen=NOW - 1.0, handoff="n3"), Action.WAIT, wake=NOW - 1.0 + 1.0 + STAGGER),
    "7 released to an unhealthy node: hand-off ignored": Case(
        "7", "n1", L(None, seen=NOW - 0.01, handoff="n3"), Action.ACQUIRE,
        members={**ALL, "n3": M("n3", healthy=False)}),
    "7 released, no hand-off: first rank at once": Case("7", "n1", L(None, seen=NOW - 0.01), Action.ACQUIRE,
                                                        reason="lease free"),
    "7 released, no hand-off: second rank after one stagger": Case(
        "7", "n2", L(None, seen=NOW - 0.01), Action.WAIT, wake=NOW - 0.01 + STAGGER, reason="rank 1"),
    "7 released, third rank after two staggers": Case("7", "n3", L(None, seen=NOW - 0.4), Action.WAIT,
                                                      wake=NOW - 0.4 + 2 * STAGGER),
    "7 released, third rank's turn": Case("7", "n3", L(None, seen=NOW - 0.5), Action.ACQUIRE, reason="rank 2"),
    "7 released, failover request to me ranks me first": Case(
        "7", "n3", L(None, seen=NOW - 0.01), Action.ACQUIRE, request=R("failover", "n3")),
    "7 released, failover request to another: it gets a lease to come": Case(
        "7", "n1", L(None, seen=NOW - 0.01), Action.WAIT, wake=NOW - 0.01 + 1.0, request=R("failover", "n3")),
    "7 released, stale failover request ignored": Case(
        "7", "n1", L(None, seen=NOW - 0.01), Action.ACQUIRE, request=R("failover", "n3", age=REQUEST_TTL_S + 5)),
    "7 released, the old holder competes normally": Case(
        "7", "n1", L(None, seen=NOW - 0.01, handoff=None), Action.ACQUIRE),
    "8 held: unchanged for less than a lease": Case("8", "n2", L("n1", seen=NOW - 0.5), Action.WAIT,
                                                    wake=NOW - 0.5 + 1.0, reason="holder n1 term 5"),
    "8 held: first rank after exactly a lease": Case("8", "n2", L("n1", seen=NOW - 1.0), Action.ACQUIRE,
                                                     reason="rank 0"),
    "8 held: the silent holder does not block ranks": Case(
        "8", "n3", L("n2", seen=NOW - 1.0), Action.WAIT, wake=NOW - 1.0 + 1.0 + STAGGER, reason="rank 1"),
    "8 held: second rank waits one stagger more": Case("8", "n3", L("n1", seen=NOW - 1.1), Action.WAIT,
                                                       wake=NOW - 1.1 + 1.0 + STAGGER),
    "8 held: second rank's turn": Case("8", "n3", L("n1", seen=NOW - 1.25), Action.ACQUIRE, reason="rank 1"),
    "8 held: unhealthy peers do not rank": Case("8", "n3", L("n1", seen=NOW - 1.0), Action.ACQUIRE,
                                                members={**ALL, "n2": M("n2", healthy=False)}),
    "8 held: demoting peers do not rank": Case("8", "n3", L("n1", seen=NOW - 1.0), Action.ACQUIRE,
                                               members={**ALL, "n2": M("n2", demote=True)}),
    "8 held: penalty lowers a peer below me": Case("8", "n3", L("n1", seen=NOW - 1.0), Action.ACQUIRE,
                                                   members={**ALL, "n2": M("n2", penalty=11)}),
    "8 held: equal score, name breaks the tie": Case("8", "n3", L("n1", seen=NOW - 1.0), Action.WAIT,
                                                     members={**ALL, "n2": M("n2", penalty=10)}),
    "8 held: penalty lowers me": Case("8", "n2", L("n1", seen=NOW - 1.0), Action.WAIT, wake=NOW + STAGGER,
                                      me_member=M("n2", penalty=20)),
    "8 held: members of other tiers do not rank": Case(
        "8", "n3", L("n1", seen=NOW - 1.0), Action.ACQUIRE,
        members={"n1": M("n1"), "n3": M("n3"), "r1": M("r1", tier="relay")}),
    "8 held: failover request to me puts me first": Case("8", "n3", L("n1", seen=NOW - 1.0), Action.ACQUIRE,
                                                         request=R("failover", "n3"), reason="requested"),
    "8 held: failover request to another puts me second": Case(
        "8", "n2", L("n1", seen=NOW - 1.0), Action.WAIT, request=R("failover", "n3"), wake=NOW + STAGGER),
    "8 held: failover to an unhealthy node is ignored": Case(
        "8", "n2", L("n1", seen=NOW - 1.0), Action.ACQUIRE, request=R("failover", "n3"),
        members={**ALL, "n3": M("n3", healthy=False)}),
    "8 held: failover request past its TTL is ignored": Case(
        "8", "n3", L("n1", seen=NOW - 1.0), Action.WAIT, request=R("failover", "n3", age=REQUEST_TTL_S + 1)),
    "8 held: a lease we don't hold but that names us is waited out": Case(
        "8", "n1", L("n1", seen=NOW - 0.5), Action.WAIT, wake=NOW + 0.5),
    "8 malformed lease is waited out": Case("8", "n1", L("?", 0, seen=NOW - 0.9), Action.WAIT, wake=NOW + 0.1),
    "8 malformed lease, after a lease": Case("8", "n1", L("?", 0, seen=NOW - 1.0), Action.ACQUIRE),
    "8 missing lease is waited out": Case("8", "n1", MISSING, Action.WAIT, wake=NOW + 0.5, reason="no lease znode"),
    "8 missing lease, after a lease": Case("8", "n1", MISSING._replace(observed_at=NOW - 1.0), Action.ACQUIRE),
    "8 missing lease, second rank": Case("8", "n2", MISSING._replace(observed_at=NOW - 1.0), Action.WAIT,
                                         wake=NOW + STAGGER),
    "8 lease not in the snapshot at all: wait, never acquire": Case("8", "n1", None, Action.WAIT),
    "9 failover in maintenance: the requested target takes over after the lease": Case(
        "9", "n3", L("n1", seen=NOW - 1.0), Action.ACQUIRE, maintenance=True, request=R("failover", "n3")),
    "9 failover in maintenance: still waits the lease out": Case(
        "9", "n3", L("n1", seen=NOW - 0.2), Action.WAIT, wake=NOW + 0.8, maintenance=True, request=R("failover", "n3")),
    "9 failover in maintenance: released lease taken at once": Case(
        "9", "n3", L(None, seen=NOW - 0.01), Action.ACQUIRE, maintenance=True, request=R("failover", "n3")),
    "9 failover in maintenance: stale request ignored": Case(
        "9", "n3", L("n1", seen=NOW - 30), Action.WAIT, maintenance=True,
        request=R("failover", "n3", age=REQUEST_TTL_S + 1)),
    "9 failover in maintenance: unhealthy target still waits": Case(
        "9", "n3", L("n1", seen=NOW - 30), Action.WAIT, maintenance=True, request=R("failover", "n3"),
        me_member=M("n3", healthy=False)),
    "10 held lease: the probe starts probe_lead_s before the takeover": Case(
        "10", "n1", L("n2", seen=NOW - 0.5), Action.WAIT, wake=NOW + 0.5, probe=NOW + 0.5 - LEAD),
    "10 second rank: the probe leads its own turn": Case(
        "10", "n3", L("n1", seen=NOW - 0.5), Action.WAIT, wake=NOW + 0.5 + STAGGER, probe=NOW + 0.5 + STAGGER - LEAD),
    "10 acquire carries the probe time, already past": Case(
        "10", "n1", L("n2", seen=NOW - 1.0), Action.ACQUIRE, probe=NOW - LEAD),
    "10 missing lease: waited out like a holder, probe likewise": Case(
        "10", "n1", MISSING, Action.WAIT, wake=NOW + 0.5, probe=NOW + 0.5 - LEAD),
    "10 released lease, second rank: probe before its turn": Case(
        "10", "n2", L(None, seen=NOW - 0.01), Action.WAIT, wake=NOW - 0.01 + STAGGER, probe=NOW - 0.01 + STAGGER - LEAD),
    "10 released lease: probe never before the release was seen": Case(
        "10", "n1", L(None, seen=NOW - 0.01), Action.ACQUIRE, probe=NOW - 0.01),
    "10 hand-off to another: probe before its exclusive time ends": Case(
        "10", "n2", L(None, seen=NOW - 0.2, handoff="n3"), Action.WAIT, wake=NOW + 0.8, probe=NOW + 0.8 - LEAD),
    "11 fast candidate, default holder: waits the holder's lease, not its own": Case(
        "11", "n2", L("n1", seen=NOW - 0.5, promise=DEFAULT_PROMISE), Action.WAIT, wake=NOW + 0.5, timing=FAST,
        reason="promised lease 1s", probe=NOW + 0.5),
    "11 fast candidate, default holder: its own lease is not enough": Case(
        "11", "n2", L("n1", seen=NOW - 0.31, promise=DEFAULT_PROMISE), Action.WAIT, wake=NOW + 0.69, timing=FAST),
    "11 fast candidate, default holder: after the holder's lease": Case(
        "11", "n2", L("n1", seen=NOW - 1.0, promise=DEFAULT_PROMISE), Action.ACQUIRE, timing=FAST, probe=NOW),
    "11 fast candidate, second rank: its stagger after the holder's lease": Case(
        "11", "n3", L("n1", seen=NOW - 1.0, promise=DEFAULT_PROMISE), Action.WAIT, timing=FAST,
        wake=NOW + FAST.rank_stagger_s, probe=NOW + FAST.rank_stagger_s),
    "11 default candidate, fast holder: its own (longer) lease": Case(
        "11", "n2", L("n1", seen=NOW - 0.5, promise=FAST_PROMISE), Action.WAIT, wake=NOW + 0.5,
        probe=NOW - 0.5 + 0.3),
    "11 default candidate, fast holder: acquires after its own lease": Case(
        "11", "n2", L("n1", seen=NOW - 1.0, promise=FAST_PROMISE), Action.ACQUIRE),
    "11 same promise as ours: our probe lead": Case(
        "11", "n2", L("n1", seen=NOW - 0.5, promise=DEFAULT_PROMISE), Action.WAIT, wake=NOW + 0.5,
        probe=NOW + 0.5 - LEAD),
    "11 same lease_s, other margin: no probe lead": Case(
        "11", "n2", L("n1", seen=NOW - 0.5, promise=(1.0, 0.25)), Action.WAIT, wake=NOW + 0.5, probe=NOW + 0.5),
    "11 relaxed holder's lease outlasts a default candidate's": Case(
        "11", "n2", L("n1", seen=NOW - 4.9, promise=(5.0, 1.5)), Action.WAIT, wake=NOW + 0.1, reason="promised lease 5s"),
    "11 record of an older agent (no promise): our own lease, as before": Case(
        "11", "n2", L("n1", seen=NOW - 0.3, promise=None), Action.ACQUIRE, timing=FAST),
    "11 missing lease carrying the last promise seen: waited out that long": Case(
        "11", "n1", MISSING._replace(observed_at=NOW - 0.5, lease_s=1.0, margin_s=0.3), Action.WAIT, timing=FAST,
        wake=NOW + 0.5, reason="no lease znode (promised lease 1s)"),
    "11 scribbled lease carrying the last promise seen: waited out that long": Case(
        "11", "n1", L("?", 0, seen=NOW - 0.5, promise=DEFAULT_PROMISE), Action.WAIT, timing=FAST, wake=NOW + 0.5),
    "11 released lease: a releasing holder is down, its promise does not count": Case(
        "11", "n1", L(None, seen=NOW - 0.01, promise=DEFAULT_PROMISE), Action.ACQUIRE, timing=FAST),
    "4 scheduled switchover not due yet: renews and says when": Case(
        "4", "n1", MINE, Action.RENEW, held=HOLDING, request=R("switchover", "n2", not_before=WALL + 3600),
        reason="switchover to n2 scheduled in 3600s"),
    "4 scheduled switchover due: releases to its target": Case(
        "4", "n1", MINE, Action.RELEASE, "n2", held=HOLDING, request=R("switchover", "n2", age=3600, not_before=WALL - 1)),
    "4 scheduled switchover nobody acted on after its time: expired": Case(
        "4", "n1", MINE, Action.RENEW, held=HOLDING,
        request=R("switchover", "n2", age=7200, not_before=WALL - REQUEST_TTL_S - 1)),
    "7 a scheduled target is not preferred before its time": Case(
        "7", "n2", L(None, seen=NOW - 0.01), Action.WAIT, request=R("switchover", "n2", not_before=WALL + 60),
        reason="rank 1"),
    "12 holder in standby: releases to the best node not barred": Case(
        "12", "n1", MINE, Action.RELEASE, "n2", held=HOLDING, constraints=(STANDBY("n1"),), reason="standby n1"),
    "12 holder banned from the role: releases, skipping a node in standby": Case(
        "12", "n1", MINE, Action.RELEASE, "n3", held=HOLDING, constraints=(BAN("n1"), STANDBY("n2")),
        reason="n1 banned from store"),
    "12 holder banned from another role only: renews": Case(
        "12", "n1", MINE, Action.RENEW, held=HOLDING, constraints=(BAN("n1", role="mail"),)),
    "12 expired standby: renews": Case(
        "12", "n1", MINE, Action.RENEW, held=HOLDING, constraints=(STANDBY("n1", until=WALL - 1),)),
    "12 holder in standby during maintenance: placement frozen, renews": Case(
        "12", "n1", MINE, Action.RENEW, held=HOLDING, constraints=(STANDBY("n1"),), maintenance=True),
    "12 holder in standby, nobody else eligible: releases to nobody": Case(
        "12", "n1", MINE, Action.RELEASE, None, held=HOLDING, constraints=(STANDBY("n1"), BAN("n2"), BAN("n3"))),
    "12 candidate in standby: waits even when the lease is free": Case(
        "12", "n2", L(None, seen=NOW - 5), Action.WAIT, constraints=(STANDBY("n2"),), reason="not eligible: standby n2"),
    "12 a barred node does not take the first rank": Case(
        "12", "n3", L(None, seen=NOW - 0.01), Action.WAIT, wake=NOW - 0.01 + STAGGER, constraints=(STANDBY("n1"),),
        reason="rank 1"),
    "12 a barred hand-off target does not hold others back": Case(
        "12", "n3", L(None, seen=NOW - 0.01, handoff="n2"), Action.ACQUIRE, constraints=(BAN("n2"),),
        members={"n2": M("n2"), "n3": M("n3")}),
    "none: another tier": Case("-", "r1", L("n1"), Action.NONE, me_member=M("r1", tier="relay")),
    # ---------------------------------------------------------------- failsafe mode
    "13 zookeeper down, every listed peer confirmed: extends from the poll's send time": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True, poll=POLL_ALL,
        extend=SENT + T.holder_validity_s, reason="2 peer(s) confirmed"),
    "13 one peer did not answer: no extension": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True,
        poll=POLL_ALL._replace(answers={"n2": YES("n2")}), reason="not confirmed by n3"),
    "13 one peer refused: no extension": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True,
        poll=POLL_ALL._replace(answers={"n2": YES("n2"), "n3": PeerAnswer("n3", False, 0.0, "holds store")}),
        reason="n3: holds store"),
    "13 a peer's promise shorter than our lease: no extension": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True,
        poll=POLL_ALL._replace(answers={"n2": YES("n2"), "n3": YES("n3")._replace(promise_s=T.lease_s - 0.01)}),
        reason="n3: promise too short"),
    "13 a peer of the spec absent from ZooKeeper's members must confirm too": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True, members={"n1": M("n1")},
        poll=POLL_ALL._replace(answers={"n2": YES("n2")}), reason="not confirmed by n3"),
    "13 a poll stamped after now is not trusted": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True,
        poll=POLL_ALL._replace(sent_at=NOW + 0.01), reason="poll from the future"),
    "13 no poll this loop: no extension": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True, reason="no poll"),
    "13 failsafe off: today's behaviour, no extension with every answer": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, poll=POLL_ALL),
    "13 zookeeper reachable: the usual CAS renewal, no extension": Case(
        "13", "n1", MINE, Action.RENEW, held=HOLDING, failsafe=True, poll=POLL_ALL),
    "13 deadline passed: demotes whatever the peers said": Case(
        "13", "n1", None, Action.DEMOTE, held=HOLDING._replace(until=NOW - 0.01), connected=False, failsafe=True,
        poll=POLL_ALL),
    "13 unhealthy holder releases instead of extending": Case(
        "13", "n1", None, Action.RELEASE, None, held=HOLDING, connected=False, failsafe=True, poll=POLL_ALL,
        me_member=M("n1", demote=True), members={"n1": M("n1")}),
    "13 alone in its tier: nobody to ask, extends": Case(
        "13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True, peers=(),
        poll=POLL_ALL._replace(answers={}), extend=SENT + T.holder_validity_s),
    "13 zookeeper back, the lease rewritten by another: demotes (rule 2)": Case(
        "13", "n1", L("n2", 6), Action.DEMOTE, held=HOLDING, failsafe=True, poll=POLL_ALL),
    "14 promised: waits on a free lease, zookeeper back": Case(
        "14", "n2", L(None, seen=NOW - 5), Action.WAIT, failsafe=True, promise=PROMISED, wake=PROMISED.until,
        reason="promised n1"),
    "14 promised: waits on a lease unchanged for ages": Case(
        "14", "n2", L("n1", seen=NOW - 50), Action.WAIT, failsafe=True, promise=PROMISED, wake=PROMISED.until),
    "14 promised: waits even as the target of a failover in maintenance": Case(
        "14", "n2", L(None, seen=NOW - 5), Action.WAIT, failsafe=True, promise=PROMISED, maintenance=True,
        request=R("failover", "n2"), wake=PROMISED.until),
    "14 a promise is kept with failsafe off here too": Case(
        "14", "n2", L(None, seen=NOW - 5), Action.WAIT, promise=PROMISED, wake=PROMISED.until),
    "25 after an outage: the stale holder, alive, ranks first; n2 waits a lease from its reconnect": Case(
        "25", "n2", L("n1", seen=NOW - 30), Action.WAIT, reconnected=NOW - 0.2, wake=NOW - 0.2 + T.lease_s,
        probe=NOW - 0.2 + T.lease_s),
    "25 after an outage: rank 2 waits two leases": Case(
        "25", "n3", L("n1", seen=NOW - 30), Action.WAIT, reconnected=NOW - 0.2, wake=NOW - 0.2 + 2 * T.lease_s,
        probe=NOW - 0.2 + 2 * T.lease_s),
    "25 after an outage: the best node (the old holder) acquires at once": Case(
        "25", "n1", L("n1", seen=NOW - 30), Action.ACQUIRE, reconnected=NOW - 0.2),
    "25 after an outage: a holder with no member znode (gone) does not hold n2 back": Case(
        "25", "n2", L("n1", seen=NOW - 30), Action.ACQUIRE, reconnected=NOW - 0.2,
        members={"n2": M("n2"), "n3": M("n3")}),
    "25 the reconnect a lease per rank ago: acquires": Case(
        "25", "n2", L("n1", seen=NOW - 30), Action.ACQUIRE, reconnected=NOW - T.lease_s),
    "14 promise over: acquires as before": Case(
        "14", "n2", L(None, seen=NOW - 5), Action.ACQUIRE, failsafe=True, promise=PROMISED._replace(until=NOW)),
    # ---------------------------------------------------------------- host fencing
    "15 silent holder, lease old: fence it first": Case(
        "15", "n2", L("n1", seen=NOW - 1.0), Action.FENCE, fencing=True, fence=("n1",), reason="silent holder n1 term 5"),
    "15 without fencing required: acquires at once as before": Case(
        "15", "n2", L("n1", seen=NOW - 1.0), Action.ACQUIRE),
    "15 silent holder confirmed off for this term: acquire": Case(
        "15", "n2", L("n1", seen=NOW - 1.0), Action.ACQUIRE, fencing=True, reason="fenced n1",
        fences={"n1": Fenced("n1", 5, "off", NOW - 0.1)}),
    "15 a fence for an older term does not count": Case(
        "15", "n2", L("n1", 6, seen=NOW - 1.0), Action.FENCE, fencing=True, fence=("n1",),
        fences={"n1": Fenced("n1", 5, "off", NOW - 30)}),
    "15 before the lease is old nobody is fenced": Case(
        "15", "n2", L("n1", seen=NOW - 0.5), Action.WAIT, fencing=True, wake=NOW + 0.5),
    "16 released cleanly: no fence": Case(
        "16", "n2", L(None, seen=NOW - 0.5), Action.ACQUIRE, fencing=True, reason="released cleanly"),
    "16 our own earlier term: no fence": Case(
        "16", "n1", L("n1", seen=NOW - 1.0), Action.ACQUIRE, fencing=True, reason="our own"),
    "17 fence failed: no takeover, retry later": Case(
        "17", "n2", L("n1", seen=NOW - 5), Action.WAIT, fencing=True, reason="fence of n1 failed: status says on",
        fences={"n1": Fenced("n1", 5, "failed", NOW - 1, "status says on")}, wake=NOW - 1 + FENCE_RETRY_S),
    "17 fence failed long enough ago: fence again": Case(
        "17", "n2", L("n1", seen=NOW - 30), Action.FENCE, fencing=True, fence=("n1",), reason="fencing again",
        fences={"n1": Fenced("n1", 5, "failed", NOW - FENCE_RETRY_S, "timeout")}),
    "18 fence in flight: wait for it": Case(
        "18", "n2", L("n1", seen=NOW - 2), Action.WAIT, fencing=True, reason="in progress",
        fences={"n1": Fenced("n1", 5, "running", NOW - 0.5)}),
    "19 missing lease seen before: fence every other node of the tier": Case(
        "19", "n1", GONE, Action.FENCE, fencing=True, fence=("n2", "n3")),
    "19 lease never seen (fresh cluster): acquire without fencing": Case(
        "19", "n1", MISSING._replace(observed_at=NOW - 1.0), Action.ACQUIRE, fencing=True, reason="fresh cluster"),
    "19 malformed lease: fence the others; one confirmed off is not enough": Case(
        "19", "n1", L("?", 0, seen=NOW - 1.0), Action.FENCE, fencing=True, fence=("n3",),
        fences={"n2": Fenced("n2", 0, "off", NOW - 0.2)}),
    "19 missing lease, every other node off: acquire": Case(
        "19", "n1", GONE, Action.ACQUIRE, fencing=True, reason="fenced n2, n3",
        fences={"n2": Fenced("n2", 0, "off", NOW - 0.2), "n3": Fenced("n3", 0, "off", NOW - 0.1)}),
    # ---------------------------------------------------------------- placement in the spec
    "30 not in roles.R.nodes: waits however free the lease": Case(
        "30", "n1", L(None, seen=NOW - 5), Action.WAIT, place=Placement(nodes=("n2", "n3")), reason="roles.store.nodes"),
    "30 the listed nodes rank without the others": Case(
        "30", "n2", L(None, seen=NOW - 0.01), Action.ACQUIRE, place=Placement(nodes=("n2", "n3")), reason="rank 0"),
    "30 holder not listed (spec changed): hands over to a listed node": Case(
        "30", "n1", MINE, Action.RELEASE, "n3", held=HOLDING, place=Placement(nodes=("n3",)), reason="roles.store.nodes"),
    "30 holder not listed, nobody listed eligible: releases to nobody": Case(
        "30", "n1", MINE, Action.RELEASE, None, held=HOLDING, place=Placement(nodes=("n3",)),
        members={**ALL, "n3": M("n3", healthy=False)}),
    "30 maintenance freezes it": Case(
        "30", "n1", MINE, Action.RENEW, held=HOLDING, place=Placement(nodes=("n3",)), maintenance=True),
    "31 a prefer weight outranks priority": Case(
        "31", "n3", L(None, seen=NOW - 0.01), Action.ACQUIRE, place=Placement(prefer={"n3": 50}), reason="rank 0"),
    "31 ... and the priority winner waits its turn": Case(
        "31", "n1", L(None, seen=NOW - 0.01), Action.WAIT, place=Placement(prefer={"n3": 50}), wake=NOW - 0.01 + STAGGER),
    "31 weights pick the hand-off target": Case(
        "31", "n1", MINE, Action.RELEASE, "n3", held=HOLDING, me_member=M("n1", demote=True),
        place=Placement(prefer={"n3": 15})),
    "31 a negative weight ranks a node last": Case(
        "31", "n1", L(None, seen=NOW - 0.01), Action.WAIT, place=Placement(prefer={"n1": -50}), wake=NOW - 0.01 + 2 * STAGGER),
    "32 a node holding an avoided role ranks after the others": Case(
        "32", "n1", L(None, seen=NOW - 0.01), Action.WAIT, place=Placement(avoid_with=("store-b",)),
        others={"store-b": "n1"}, wake=NOW - 0.01 + 2 * STAGGER),
    "32 ... so the next one takes it": Case(
        "32", "n2", L(None, seen=NOW - 0.01), Action.ACQUIRE, place=Placement(avoid_with=("store-b",)),
        others={"store-b": "n1"}, reason="rank 0"),
    "32 soft: alone, it still takes it": Case(
        "32", "n1", L(None, seen=NOW - 0.01), Action.ACQUIRE, place=Placement(avoid_with=("store-b",)),
        others={"store-b": "n1"}, members={"n1": M("n1")}),
    "32 it never moves a holder": Case(
        "32", "n1", MINE, Action.RENEW, held=HOLDING, place=Placement(avoid_with=("store-b",)), others={"store-b": "n1"}),
    "32 it picks the hand-off target": Case(
        "32", "n1", MINE, Action.RELEASE, "n3", held=HOLDING, me_member=M("n1", demote=True),
        place=Placement(avoid_with=("store-b",)), others={"store-b": "n2"}),
    "33 failback once the preferred node was eligible for delay_s": Case(
        "33", "n2", L("n2"), Action.RELEASE, "n1", held=HOLDING, place=Placement(failback_s=30.0),
        since={"n1": NOW - 30, "n2": NOW - 500}, reason="failback to n1"),
    "33 not before delay_s: renews and says when": Case(
        "33", "n2", L("n2"), Action.RENEW, held=HOLDING, place=Placement(failback_s=30.0),
        since={"n1": NOW - 10}, wake=NOW + 20, reason="failback in 20s"),
    "33 a weight makes the lower priority node preferred": Case(
        "33", "n1", MINE, Action.RELEASE, "n3", held=HOLDING, place=Placement(prefer={"n3": 30}, failback_s=0.0),
        since={"n3": NOW}),
    "33 not before we held it delay_s ourselves (no bouncing)": Case(
        "33", "n2", L("n2"), Action.RENEW, held=HOLDING, place=Placement(failback_s=30.0),
        since={"n1": NOW - 300}, held_since=NOW - 5, wake=NOW + 25),
    "33 ... then it fails back": Case(
        "33", "n2", L("n2"), Action.RELEASE, "n1", held=HOLDING, place=Placement(failback_s=30.0),
        since={"n1": NOW - 300}, held_since=NOW - 30),
    "33 sticky without failback": Case(
        "33", "n2", L("n2"), Action.RENEW, held=HOLDING, since={"n1": NOW - 3000}),
    "33 the preferred node holds as well as I do: stays": Case(
        "33", "n1", MINE, Action.RENEW, held=HOLDING, place=Placement(prefer={"n2": 10}, failback_s=1.0),
        since={"n2": NOW - 100}),
    "33 not in maintenance": Case(
        "33", "n2", L("n2"), Action.RENEW, held=HOLDING, place=Placement(failback_s=30.0), maintenance=True,
        since={"n1": NOW - 300}),
    "33 not while a request is pending": Case(
        "33", "n2", L("n2"), Action.RELEASE, "n3", held=HOLDING, place=Placement(failback_s=30.0),
        request=R("switchover", "n3"), since={"n1": NOW - 300}),
    "33 not to an unhealthy node": Case(
        "33", "n2", L("n2"), Action.RENEW, held=HOLDING, place=Placement(failback_s=30.0),
        members={**ALL, "n1": M("n1", healthy=False)}, since={"n1": NOW - 300}),
    "33 not to a node in standby": Case(
        "33", "n2", L("n2"), Action.RENEW, held=HOLDING, place=Placement(failback_s=30.0), constraints=(STANDBY("n1"),),
        since={"n1": NOW - 300}),
    "33 not to a node outside roles.R.nodes": Case(
        "33", "n2", L("n2"), Action.RENEW, held=HOLDING, place=Placement(nodes=("n2", "n3"), failback_s=30.0),
        since={"n1": NOW - 300}),
    "33 the returning node waits for the hand-off, not the lease": Case(
        "33", "n1", L(None, seen=NOW - 0.01, handoff="n1"), Action.ACQUIRE, place=Placement(failback_s=30.0),
        reason="requested"),
    "34 a silent holder is waited out as ever, preferred or not": Case(
        "34", "n1", L("n2", seen=NOW - 0.5), Action.WAIT, place=Placement(prefer={"n1": 100}, failback_s=0.0),
        wake=NOW + 0.5),
}


def run(case: Case):
    me = case.me_member or case.members.get(case.me) or M(case.me)
    leases = {} if case.lease is None else {"store": case.lease}
    leases.update({r: Lease(r, n, 1, 1, 1, None, NOW - 5) for r, n in case.others.items()})
    requests = {} if case.request is None else {"store": case.request}
    c = Cluster(case.members, leases, requests, case.maintenance, case.connected, case.constraints)
    held = {} if case.held is None else {"store": case.held}
    polls = {} if case.poll is None else {"store": case.poll}
    promises = {} if case.promise is None else {"store": case.promise}
    fences = {} if case.fences is None else {"store": case.fences}
    peers = case.peers if case.peers is not None else tuple(n for n in ("n1", "n2", "n3") if n != case.me)
    role = ROLE if case.place == Placement() else dataclasses.replace(ROLE, placement=case.place)
    return decide_role(role, case.timing, c, Local(case.me, NOW, me, held, WALL, polls, promises, fences, case.reconnected,
                                                         case.since,
                                                         {} if case.held_since is None else {"store": case.held_since}),
                       case.failsafe, peers, case.fencing)


@pytest.mark.parametrize("name", list(CASES))
def test_decide_role(name: str) -> None:
    case = CASES[name]
    v = run(case)
    got = (v.action, v.handoff_to)
    assert got == (case.want, case.handoff), f"{name}: {v.line()} handoff={v.handoff_to}"
    if case.wake is not None:
        assert v.wake_at == pytest.approx(case.wake), f"{name}: {v.line()}"
    assert case.reason in v.reason, f"{name}: {v.line()}"
    assert v.role == "store"
    if case.probe is not None:
        assert v.probe_at == pytest.approx(case.probe), f"{name}: {v.line()} probe_at={v.probe_at}"
    assert v.extend_to == (None if case.extend is None else pytest.approx(case.extend)), f"{name}: {v.line()}"
    assert v.fence == case.fence, f"{name}: {v.line()} fence={v.fence}"


def test_probe_only_where_the_old_holder_must_be_down() -> None:
    """probe_at (rule 10) never precedes the point where inequality (S) has the old holder's VIP
    gone (observed + lease - probe_lead, or the release), never follows the verdict's own turn, and
    holders, waiting-in-maintenance or unhealthy nodes get none."""
    for name, case in CASES.items():
        v = run(case)
        if v.action in (Action.WAIT, Action.ACQUIRE) and v.probe_at is not None:
            lease = case.lease
            assert lease is not None, name
            released = lease.holder is None and lease.version >= 0
            own = case.timing
            if released:
                floor = lease.observed_at
            elif lease.promise in (None, (own.lease_s, own.margin_s)):
                floor = lease.observed_at + own.lease_s - own.probe_lead_s
            else:  # another timing's holder: its (S) has the VIP down a whole lease of its own after
                floor = lease.observed_at + lease.lease_s
            assert v.probe_at >= floor - 1e-9, f"{name}: probe_at {v.probe_at} < {floor}"
            assert v.probe_at <= (v.wake_at if v.action == Action.WAIT else NOW) + 1e-9, name
        if v.action not in (Action.WAIT, Action.ACQUIRE) or v.reason.startswith(
                ("maintenance mode", "zookeeper unreachable", "not eligible", "lease state unknown")):
            assert v.probe_at is None, f"{name}: {v.line()} probe_at={v.probe_at}"


@pytest.mark.parametrize("profile", ["default", "fast", "relaxed"])
def test_probe_lead_is_the_margin_beyond_inequality_s(profile: str) -> None:
    from hacluster.timing import PROFILES

    t = PROFILES[profile]
    assert t.probe_lead_s == pytest.approx(t.margin_s - t.stop_timeout_s - 2 * t.max_drift * t.lease_s)
    assert t.probe_lead_s >= 0
    assert t.replace(margin_s=t.stop_timeout_s).probe_lead_s == 0.0  # never negative


def test_every_rule_has_a_row() -> None:
    import hacluster.ha as ha

    rules = {line.split(".")[0].strip() for line in (ha.__doc__ or "").splitlines()
             if line.strip()[:2].rstrip(".").isdigit() and "." in line.strip()[:3]}
    assert rules >= {str(i) for i in range(1, 20)} | {str(i) for i in range(30, 35)}, rules
    assert rules <= {c.rule for c in CASES.values()}, rules - {c.rule for c in CASES.values()}


def test_wait_always_says_when_it_could_change_by_itself() -> None:
    """A candidate WAIT on a lease must carry wake_at, or the agent would sleep a whole loop past its turn."""
    for name, case in CASES.items():
        v = run(case)
        if v.action == Action.WAIT and case.lease is not None and not case.maintenance and case.connected \
                and (case.me_member or case.members.get(case.me)).healthy and case.rule in ("7", "8"):
            assert v.wake_at is not None and v.wake_at > NOW, f"{name}: {v.line()}"


@pytest.mark.parametrize("seen_ago", [0.0, 0.3, 0.999])
@pytest.mark.parametrize("me", ["n1", "n2", "n3"])
def test_no_candidate_acquires_a_held_lease_before_it_is_a_lease_old(seen_ago: float, me: str) -> None:
    """The safety rule itself: whatever the ranks, requests or hand-offs say."""
    for req in (None, R("failover", me), R("switchover", me)):
        for holder in ("n1", "n2", "n3", "?", "other"):
            if holder == me:
                continue
            case = Case("8", me, L(holder, seen=NOW - seen_ago), Action.WAIT, request=req)
            assert run(case).action == Action.WAIT
        case = Case("8", me, MISSING._replace(observed_at=NOW - seen_ago), Action.WAIT, request=req)
        assert run(case).action == Action.WAIT


@pytest.mark.parametrize("own", ["default", "fast", "relaxed"])
@pytest.mark.parametrize("holder", ["default", "fast", "relaxed", None])
def test_no_candidate_acquires_before_the_holders_promised_lease(own: str, holder: str | None) -> None:
    """Rule 11, the safety claim of a mixed-timing cluster: whatever our own profile, a held (or
    missing, or scribbled) lease version is not taken before the holder's promised lease_s has
    passed since we first saw it, nor before our own -- and never later than needed for that."""
    t = PROFILES[own]
    promise = None if holder is None else (PROFILES[holder].lease_s, PROFILES[holder].margin_s)
    need = max(t.lease_s, promise[0] if promise else 0.0)
    for lease in (L("n1", promise=promise), L("?", 0, promise=promise),
                  MISSING._replace(lease_s=promise and promise[0], margin_s=promise and promise[1])):
        for ago in (0.0, 0.29, 0.31, 0.99, 1.01, 4.99, 5.01):
            case = Case("11", "n2", lease._replace(observed_at=NOW - ago), Action.WAIT, timing=t,
                        members={"n2": M("n2")})
            v = run(case)
            assert (v.action == Action.ACQUIRE) == (ago >= need), f"{own}/{holder} {ago}: {v.line()}"
            if v.action == Action.WAIT:
                assert v.wake_at == pytest.approx(NOW - ago + need)


def test_no_extension_without_every_listed_peer() -> None:
    """Rule 13, the safety claim: a local extension needs every other node of the tier in the spec,
    each with a promise of at least our lease_s, and never reaches past poll send time + validity."""
    import itertools

    peers = ("n2", "n3")
    kinds = {"yes": YES, "no": lambda n: PeerAnswer(n, False, T.lease_s, "no"),
             "short": lambda n: PeerAnswer(n, True, T.lease_s / 2), "silent": None}
    for a, b in itertools.product(kinds, repeat=2):
        answers = {p: kinds[k](p) for p, k in zip(peers, (a, b), strict=True) if kinds[k] is not None}  # type: ignore[misc]
        case = Case("13", "n1", None, Action.RENEW, held=HOLDING, connected=False, failsafe=True,
                    poll=FailsafePoll(SENT, answers))
        v = run(case)
        assert v.action == Action.RENEW
        assert (v.extend_to is not None) == (a == b == "yes"), (a, b, v.line())
        if v.extend_to is not None:
            assert v.extend_to <= SENT + T.lease_s - T.margin_s + 1e-9


@pytest.mark.parametrize("ahead", [0.0, 0.01, 0.5, 30.0])
def test_no_acquisition_inside_a_promise(ahead: float) -> None:
    """Rule 14: no row that would ACQUIRE does so while we have promised not to."""
    for name, case in CASES.items():
        if case.held is not None or case.me_member is not None and case.me_member.tier != "store":
            continue
        v = run(case._replace(promise=Promise("n9", 1, NOW + ahead)))
        if ahead > 0:
            assert v.action == Action.WAIT, f"{name}: {v.line()}"
            assert v.wake_at is not None and v.wake_at <= NOW + ahead + 1e-9, name


def test_decide_gives_one_verdict_per_role_of_my_tier() -> None:
    spec = parse_spec(SPEC)
    c = Cluster({"s1": Member("s1", "store", 100, True, False)}, {}, {}, False)
    me = Member("s1", "store", 100, True, False)
    vs = decide(spec, c, Local("s1", NOW, me, {}, WALL))
    assert [v.role for v in vs] == ["store", "archive"]
    me_relay = Member("r1", "relay", 100, True, False)
    assert [v.role for v in decide(spec, c, Local("r1", NOW, me_relay, {}, WALL))] == ["mx"]


def test_decide_counts_a_role_acquired_in_this_loop_as_held() -> None:
    """Rule 32 through `decide`: both roles due in one loop; the best node takes `store` and leaves
    `store-b` (which avoids it, listed first) to the next node; alone, it takes both (soft)."""
    spec = parse_spec(SPEC.replace("  store: {tier: store}\n", "  store-b: {tier: store, avoid_with: [store]}\n"
                                   "  store: {tier: store}\n") + "  - {name: s2, tier: store, interface: lo, "
                      "addresses: [127.0.0.4/8]}\n")
    seen = NOW - spec.timing.lease_s - 0.01  # rank 0 is due, rank 1 not yet
    leases = {r: Lease(r, None, 0, 0, -1, None, seen) for r in ("store", "store-b", "archive")}
    s1, s2 = Member("s1", "store", 100, True, False), Member("s2", "store", 90, True, False)
    vs = decide(spec, Cluster({"s1": s1, "s2": s2}, leases, {}, False), Local("s1", NOW, s1, {}, WALL))
    assert [(v.role, v.action) for v in vs] == [("store-b", Action.WAIT), ("store", Action.ACQUIRE),
                                                ("archive", Action.ACQUIRE)], [v.line() for v in vs]
    alone = decide(spec, Cluster({"s1": s1}, leases, {}, False), Local("s1", NOW, s1, {}, WALL))
    assert [v.action for v in alone] == [Action.ACQUIRE] * 3, [v.line() for v in alone]


SPEC = """\
cluster: t
zookeeper: {hosts: ["127.0.0.1:2181"]}
roles:
  store: {tier: store}
  mx: {tier: relay}
  archive: {tier: store}
nodes:
  - {name: s1, tier: store, interface: lo, addresses: [127.0.0.2/8]}
  - {name: r1, tier: relay, interface: lo, addresses: [127.0.0.3/8]}
"""


def test_decide_asks_for_every_tier_peer_of_the_spec_not_of_zookeeper() -> None:
    """Rule 13 through `decide`: the peers come from the spec (s2, though ZooKeeper never saw it),
    and the flag is the spec's."""
    text = SPEC.replace("cluster: t\n", "cluster: t\nfailsafe: true\n") + \
        "  - {name: s2, tier: store, interface: lo, addresses: [127.0.0.4/8]}\n"
    spec = parse_spec(text)
    me = Member("s1", "store", 100, True, False)
    c = Cluster({"s1": me}, {}, {}, False, connected=False)
    held = {"store": HOLDING, "archive": HOLDING}
    poll = FailsafePoll(SENT, {"s2": PeerAnswer("s2", True, spec.timing.lease_s)})
    none = decide(spec, c, Local("s1", NOW, me, held, WALL, {"store": poll}))
    assert [v.extend_to is not None for v in none] == [True, False]  # archive was not polled
    off = decide(parse_spec(SPEC + "  - {name: s2, tier: store, interface: lo, addresses: [127.0.0.4/8]}\n"),
                 c, Local("s1", NOW, me, held, WALL, {"store": poll}))
    assert [v.extend_to for v in off] == [None, None]


# ------------------------------------------------------------------- decoders feeding decide

MALFORMED_LEASES = {
    "not json": b"\xff\x00garbage",
    "json list": b"[1, 2]",
    "json string": b'"node1"',
    "empty object": b"{}",
    "holder of the wrong type": b'{"holder": 5, "term": 3, "seq": 1}',
    "term of the wrong type": b'{"holder": "n2", "term": "9", "seq": 1}',
    "negative term": b'{"holder": "n2", "term": -4, "seq": 1}',
    "free without released_by": b'{"holder": null, "term": 3, "seq": 0}',
    "hand-off of the wrong type": b'{"holder": null, "term": 3, "seq": 0, "handoff_to": ["n3"], "released_by": "x"}',
    "empty bytes": b"",
}


@pytest.mark.parametrize("name", list(MALFORMED_LEASES))
def test_malformed_lease_is_held_by_nobody_we_know(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """A scribbled lease must be waited out like a silent holder -- never read as 'released',
    which would let a candidate take it at once while the real holder still acts."""
    caplog.set_level(logging.WARNING)
    lease = decode_lease("store", MALFORMED_LEASES[name], 8, NOW - 0.1)
    assert (lease.holder, lease.version, lease.exists) == ("?", 8, True)
    assert "malformed" in caplog.text and "store" in caplog.text
    for me in ("n1", "n2", "n3"):
        v = run(Case("8", me, lease, Action.WAIT))
        assert v.action == Action.WAIT, v.line()
    # and the holder it was scribbled over stops acting as holder
    assert run(Case("2", "n1", lease, Action.DEMOTE, held=HOLDING)).action == Action.DEMOTE


def test_well_formed_leases_round_trip() -> None:
    held = decode_lease("store", encode_lease("n1", 4, 2), 3, 1.0)
    assert (held.holder, held.term, held.seq, held.version, held.handoff_to) == ("n1", 4, 2, 3, None)
    free = decode_lease("store", encode_lease(None, 4, 0, "n2", released_by="n1"), 9, 1.0)
    assert (free.holder, free.term, free.handoff_to) == (None, 4, "n2")
    assert decode_lease("store", None, -1, 1.0).exists is False


def test_lease_records_carry_the_holders_promise_and_older_ones_still_decode() -> None:
    held = decode_lease("store", encode_lease("n1", 4, 2, lease_s=1.0, margin_s=0.3), 3, 1.0)
    assert (held.holder, held.term, held.promise) == ("n1", 4, (1.0, 0.3))
    old = decode_lease("store", b'{"holder": "n1", "term": 4, "seq": 2, "handoff_to": null}', 3, 1.0)
    assert (old.holder, old.term, old.promise) == ("n1", 4, None)


@pytest.mark.parametrize("promise", [
    {"lease_s": 1.0}, {"margin_s": 0.3}, {"lease_s": "1", "margin_s": 0.3}, {"lease_s": 0, "margin_s": 0},
    {"lease_s": 1e9, "margin_s": 0.3}, {"lease_s": 1.0, "margin_s": 1.0}, {"lease_s": 1.0, "margin_s": -0.1},
    {"lease_s": True, "margin_s": 0.1}, {"lease_s": 10**400, "margin_s": 0.1},
])
def test_a_bad_promise_makes_the_lease_malformed(promise: dict, caplog: pytest.LogCaptureFixture) -> None:
    """Never read as 'no promise' (that could shorten the wait) nor trusted (a rogue's year-long
    promise would stall every candidate): waited out like any scribble."""
    caplog.set_level(logging.WARNING)
    raw = json.dumps({"holder": "n1", "term": 4, "seq": 0, **promise}).encode()
    lease = decode_lease("store", raw, 3, 1.0)
    assert (lease.holder, lease.promise) == ("?", None)
    assert "lease_s" in caplog.text or "margin_s" in caplog.text


def test_malformed_members_are_ignored_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    for raw in (b"\x00\xff", b"[]", b"{}", b'{"tier": 7}', b"null"):
        assert decode_member("n2", raw) is None
    assert caplog.text.count("n2") >= 4
    m = decode_member("n2", b'{"tier": "store", "priority": "high", "healthy": "yes", "reasons": "x", "health": []}')
    assert m is not None and (m.priority, m.healthy, m.reasons, dict(m.health)) == (0, False, (), {})
    good = M("n2", penalty=5, reasons=("queue growing",))
    back = decode_member("n2", encode_member(good))
    assert back is not None and (back.tier, back.priority, back.penalty, back.reasons) == ("store", 90, 5, ("queue growing",))


@pytest.mark.parametrize("raw", [
    b"garbage", b"[]", b'{"kind": "reboot", "to": "n2", "at": 1}', b'{"to": "n2", "at": 1}',
    b'{"kind": "switchover", "to": 42, "at": 1}',  # a bad target must not become "to anybody"
    b'{"kind": "switchover", "to": "n2"}',  # no time: it would never expire
    b'{"kind": "switchover", "to": "n2", "at": "yesterday"}',
])
def test_malformed_requests_are_ignored(raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert decode_request("store", raw) is None
    assert "store" in caplog.text


def test_requests_round_trip() -> None:
    r = decode_request("store", encode_request("switchover", None, "cli@x", WALL), 2)
    assert r == Request("store", "switchover", None, "cli@x", WALL, 2)
    r = decode_request("store", encode_request("failover", "n3", "cli@x", WALL))
    assert r is not None and (r.kind, r.to) == ("failover", "n3")


def test_repeated_malformed_data_is_not_logged_every_loop(caplog: pytest.LogCaptureFixture) -> None:
    """The agent reads the same bad znode 5 times a second; one warning per distinct problem is enough."""
    caplog.set_level(logging.WARNING)
    for _ in range(50):
        decode_lease("store", b"the same garbage, read again and again", 8, 0.0)
    assert caplog.text.count("lease of role store") == 1


def test_constraints_round_trip_and_bad_ones_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    raw = encode_constraint("cli@ops", WALL, WALL + 3600)
    assert decode_constraint("standby@n1", raw) == Constraint("n1", None, "cli@ops", WALL, WALL + 3600)
    assert decode_constraint("ban@store@n2", encode_constraint("x", WALL, None)) == Constraint("n2", "store", "x", WALL)
    with caplog.at_level(logging.WARNING):
        for name, body in [("standby@", raw), ("ban@store", raw), ("pin@n1", raw), ("standby@n1", b"{"),
                           ("standby@n1", b'{"at": "soon"}'), ("standby@n1", b'{"at": 1700000000, "until": 1e400}')]:
            assert decode_constraint(name, body) is None, (name, body)
    assert "constraint" in caplog.text


@pytest.mark.parametrize("state", ["running", "failed", "off", None])
@pytest.mark.parametrize("term", [4, 5, 6])
@pytest.mark.parametrize("holder", ["n1", "?", None])
def test_no_takeover_from_a_silent_holder_without_it_confirmed_off(state: str | None, term: int, holder: str | None) -> None:
    """Rules 15-19: with fencing required, a held, missing or malformed lease is acquired only when
    every node it might name has a record `off` for exactly the lease's term; a release needs none."""
    lease = MISSING._replace(observed_at=NOW - 30, lease_s=1.0, margin_s=0.3) if holder is None else L(holder, 5 if holder == "n1" else 0, seen=NOW - 30)
    targets = ("n1",) if holder == "n1" else ("n1", "n3")
    fences = {} if state is None else {n: Fenced(n, term if holder == "n1" else term - 5, state, NOW - 1) for n in targets}
    v = decide_role(ROLE, T, Cluster(ALL, {"store": lease}, {}, False), Local("n2", NOW, ALL["n2"], {}, WALL, fences={"store": fences}),
                    peers=("n1", "n3"), fencing=True)
    confirmed = state == "off" and (term == 5)
    assert (v.action == Action.ACQUIRE) == confirmed, v.line()
    if not confirmed:
        assert v.action in (Action.FENCE, Action.WAIT), v.line()
