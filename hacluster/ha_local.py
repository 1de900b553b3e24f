"""The node-local rules around `ha.decide`: pure functions the agent and the coordinator call.

`ha.decide` turns one snapshot into verdicts. Four more rules decide what a node does with what it
sees and did before; they carry state from cycle to cycle, so they live here, apart from the I/O,
with table tests (tests/unit/test_ha_local.py) and the multi-cycle scenarios (tests/scenarios/).
Numbered from 40 so they never collide with ha.py's rules.

 40. first seen (`first_seen`): a candidate's wait (ha.py rules 7, 8, 11) counts from the moment
     this process first saw a version of the lease, identified by its mzxid (-1: no znode). A newer
     version, or a change between present and missing, starts a new wait; the same version, or an
     *older* one (a lagging server's read, a watch event delivered after a newer read), keeps the
     first-seen time of what we saw last. Resetting on an older version would be harmless; keeping
     the newer one's time on a *newer* version would not: the holder's renewal would go unnoticed and
     the candidate would take over a live lease. The safety wait depends on this rule.
 41. give back a late write (`give_back`): the snapshot shows a lease naming us, for a term this
     process wrote, at a version other than the last one acknowledged to us before we demoted, while
     we hold nothing: a write that landed after we gave up on it (queued during an outage, applied by
     a server that died before answering). Release it by CAS on exactly that version, so candidates
     need not wait a whole lease. Our last acknowledged lease runs out by the deadline rules, and a
     term we never wrote (a previous process of this node) is left alone: its resources may still
     run under that process's deadline.
 42. probe timing (`probe_due`, `probe_step`): from a verdict's `probe_at` (ha.py rule 10) a node
     that holds nothing prepares its resources (the VIP's duplicate-address probe); before it, the
     loop wakes at `probe_at`, and a probe time that moved (the lease changed) cancels an earlier
     preparation, which may have met the then-live holder.
 43. a promise outlives its record (`carry_promise`): the last validity promise read in a
     well-formed lease record ([lease_s, margin_s], ha.py rule 11) is remembered; a lease that is
     missing or scribbled (holder "?") carries it on, so the holder that wrote it is still waited
     out for as long as it promised, not just for our own lease_s, when its znode is deleted.
 44. failsafe: a stalled holder polls first (`zk_read`, `zk_stalled`, `reassert`). With failsafe
     on, a holder whose ZooKeeper request failed or timed out (a renewal that came back "error",
     a snapshot that did not come back, kazoo not connected) is *stalled* until a write of its
     own through ZooKeeper is acknowledged again: every loop it reads no snapshot and writes no
     heartbeat (either could use up the validity before the poll), polls its tier peers first
     (ha.py rule 13 extends it from the poll's send time), and only then re-asserts its lease
     by CAS on the version it last knew, due or not -- acknowledged: back to ZooKeeper; "lost"
     (anybody else wrote it): demote; failed again: stalled still. A snapshot that comes back does not end
     the stall: under a quorum loss a follower that has not yet noticed (syncLimit) still serves
     reads while every write times out, and a holder that went back to ZooKeeper on a read
     spent its extension on the timed-out write (drill zookeeper-quorum-loss-failsafe: the VIP
     down ~10 s). A node that holds nothing, or failsafe off, skips one loop's snapshot after a
     failure, as before. A holder's heartbeat, snapshot and renewal may take only the time its
     deadline leaves beyond the poll's own (`zk_budget`); none left is a failure too: a silent
     server's read and heartbeat timing out in turn (0.45 s) left no time for the first poll of
     an outage (the drill, load ~65), and so did a renewal that a late loop started 0.48 s into
     the 0.7 s validity (the lease-1 s default then) and that timed out (the drill, load ~50, the ensemble restarting). Safety is untouched: an extension still rests on this loop's promises
     alone, a renewal on the CAS alone.
 45. no decision on a stale cache (`zk_suspect`): the snapshot comes from the watch cache
     (coord/watchcache.py), which answers from memory until kazoo notices a lost connection --
     after a silent cut (packets dropped, no reset) that takes seconds, longer than a lease. So
     once a ZooKeeper request of ours failed or timed out, the snapshots of a node that holds
     nothing are read from the server until it answers again (a snapshot read from it, a write
     acknowledged or refused): a node cut off sees "zookeeper unreachable" and WAITs (ha.py rule
     6). A holder keeps reading the cache (`snapshot_cached`): its rules rest on its deadline and
     its CAS, not on the snapshot, and a read from a slow server (up to 2 request timeouts)
     before the retry of a timed-out renewal would spend the validity the retry needs (seen on
     the Vagrant machines under CPU starvation: holders lapsing one after another). Without this the store holder
     cut from ZooKeeper (drill partition-holder-from-zookeeper, Vagrant machines) demoted at its
     deadline, read its own expired lease from the cache, reached ACQUIRE at the moment the
     standby did, and its duplicate-address probe ahead of the (failing) write made the standby's
     VIP start refuse (RFC 5227: a simultaneous probe is a conflict): no holder for ~30 s. Safety
     never rested on the cache (an acquisition re-reads by `sync`, writes by CAS); availability did.
"""

from __future__ import annotations

from typing import NamedTuple

from .coord.model import Lease
from .timing import Timing

#: never sleep less than this before a wake-up time that has (nearly) come: no busy loop
MIN_WAKE_S = 0.005


class Seen(NamedTuple):
    """Rule 40's memory for one role: the lease version (mzxid, -1: no znode) and when it was first seen."""

    ident: int
    at: float


def first_seen(prev: Seen | None, ident: int, t: float) -> Seen:
    """Rule 40: the record after reading version `ident` at `t` (taken after the read returned)."""
    if prev is None or prev.ident != ident and (ident > prev.ident or ident == -1 or prev.ident == -1):
        return Seen(ident, t)
    return prev


def give_back(lease: Lease | None, me: str, holding: bool, wrote: bool,
              expired: tuple[int, int] | None) -> str | None:
    """Rule 41: why the lease in the snapshot is a late write of ours to give back, or None.

    `wrote`: this process wrote the lease's term as holder (acquired it, or tried to); `expired`:
    (term, version) of our last acknowledged write when we demoted."""
    if (lease is None or not lease.exists or lease.holder != me or holding or not wrote
            or (lease.term, lease.version) == expired):
        return None
    last = f"version {expired[1]}" if expired and expired[0] == lease.term else "none"
    return f"a write of ours landed after we stopped holding; last acknowledged: {last}"


def carry_promise(last: tuple[float, float] | None, lease: Lease) -> tuple[tuple[float, float] | None, Lease]:
    """Rule 43: (the promise to remember now, the lease as the candidate must see it)."""
    if lease.promise is not None:
        return lease.promise, lease
    if last is not None and (not lease.exists or lease.holder == "?"):
        return last, lease._replace(lease_s=last[0], margin_s=last[1])
    return last, lease


def probe_due(probe_at: float | None, holding: bool, now: float) -> bool:
    """Rule 42: prepare now (the previous verdict's probe time has come, and we hold nothing)."""
    return probe_at is not None and not holding and now >= probe_at


class ProbeStep(NamedTuple):
    prepare: bool  # call the resources' prepare() now
    unprepare: bool  # call unprepare() first: the probe time moved since the last verdict
    wake_at: float | None  # run the next cycle no later than this


def probe_step(probe_at: float | None, last: float | None, had_last: bool, holding: bool, now: float) -> ProbeStep:
    """Rule 42 for a new verdict: `probe_at` its probe time, `last` the previous verdict's (and
    `had_last` whether there was a previous verdict at all)."""
    if probe_at is None or holding:
        return ProbeStep(False, False, None)
    if now >= probe_at:
        return ProbeStep(True, False, None)
    return ProbeStep(False, had_last and last != probe_at, max(probe_at, now + MIN_WAKE_S))



def zk_read(stalled: bool, failsafe: bool, connected: bool) -> bool:
    """Rule 44: whether this loop reads a snapshot from ZooKeeper (`connected`: kazoo's state)."""
    return not (failsafe and (stalled or not connected))


def zk_budget(failsafe: bool, until: float | None, now: float, t: Timing) -> float | None:
    """Rule 44: how long this loop's heartbeat and snapshot may take, so that the holder's poll
    still goes out with request_timeout_s (and a quarter loop) before its deadline `until`
    (None: no lease held, or failsafe off -- no bound). At most 0: no ZooKeeper call before the
    poll in this loop, and the loop counts as failed (stalled)."""
    if not failsafe or until is None:
        return None
    return until - now - (t.request_timeout_s + t.loop_s / 4)


def zk_stalled(*, failsafe: bool, acked: bool, failed: bool) -> bool:
    """Rule 44: stalled after this loop? `acked`: a lease write of ours was acknowledged in it;
    `failed`: a ZooKeeper request of ours failed or timed out, or kazoo was not connected. A
    stalled holder writes in every loop (`reassert`), so it stays stalled exactly as long as its
    writes fail; a node that holds nothing skips one loop's snapshot."""
    return failsafe and failed and not acked


def reassert(stalled: bool, extended: bool, due: bool) -> bool:
    """Rule 44: whether a holder's RENEW writes its lease through ZooKeeper (CAS on the version it
    last knew) in this loop. A stalled holder does every loop, after the poll and any extension
    (ha.py rule 13), whatever the renewal cadence; otherwise only a due renewal that no failsafe
    extension replaced."""
    return stalled or (due and not extended)


def zk_suspect(prev: bool, *, failed: bool, answered: bool) -> bool:
    """Rule 45: whether the next snapshot must be read from the server instead of the watch cache.
    `failed`: a ZooKeeper request of ours failed or timed out in this loop (or a snapshot came
    back not connected); `answered`: the server answered one (a snapshot read from it, a write
    acknowledged or refused). A failure wins over an answer in the same loop."""
    return failed or (prev and not answered)


def snapshot_cached(suspect: bool, holding: bool) -> bool:
    """Rule 45: whether this loop's snapshot may come from the watch cache: yes unless we hold
    nothing and a request of ours failed or timed out with no answer from the server since."""
    return holding or not suspect
