"""The decision: a pure function from (spec, cluster snapshot, local view) to one verdict per role.

No I/O here. The agent reads a snapshot, calls `decide`, logs one line per role, then acts.
That makes every rule below testable from a table (tests/unit/test_ha_decide.py), the way
Pacemaker tests its scheduler.

Rules for a role this node may hold (its tier):

holder (we have an acknowledged lease, `held`):
  1. deadline passed                -> DEMOTE (stop resources now, no ZooKeeper call first)
  2. znode shows another holder/term -> DEMOTE (someone took it: we must already be stopped)
  3. local health says demote       -> RELEASE with hand-off to the best other candidate
  4. switchover request to another eligible node -> RELEASE with hand-off to it (a scheduled
     one only from its `not_before` time; until then it is shown, not acted on)
  5. otherwise                      -> RENEW (also in maintenance: pause freezes placement)
not holder:
  6. maintenance, no ZooKeeper, or unhealthy -> WAIT
  7. lease released: hand-off target first (alone for `lease_s`), others after `stagger` per rank
  8. lease held, missing or malformed: wait until unchanged for `lease_s` (our clock), then by rank
  9. ACQUIRE once our time has come; the agent re-reads and CAS-writes, so ties are harmless.
     In maintenance only the target of an operator's failover request may acquire (as Patroni
     allows a manual failover while paused), under the same rules 7 and 8.
 10. WAIT and ACQUIRE verdicts of rules 7-9 carry `probe_at`: from then on the previous holder's
     VIP is gone (a released lease: at once; a silent holder: `probe_lead_s` before our turn, by
     the margin's slack beyond inequality (S)), so the agent may run the duplicate-address probe
     before the takeover instead of after it.
 11. a held, missing or malformed lease (rule 8) is waited out for max(our lease_s, the lease_s
     its holder promised in the record): inequality (S) is the holder's, so during a rolling
     change of timing a fast candidate still outwaits a default holder's validity. The probe
     (rule 10) leads by our probe_lead_s only when the promise is exactly our lease_s and
     margin_s; otherwise it starts at the holder's own lease_s, where its (S) has the VIP down.
 12. an operator's placement constraint in force (node standby, or a ban of this node from this
     role; `hacluster node standby` / `role ban`, each with an optional lifetime) makes the node ineligible:
     a holder RELEASEs with hand-off to the best node not barred (graceful, like rule 3; not in
     maintenance, which freezes placement), a candidate WAITs, and barred nodes drop out of the
     ranking and of hand-off targets. Safety is untouched: only who may acquire changes.
placement in the spec (roles.R.nodes / prefer / avoid_with / failback; placement_spec.py):
 30. a node not in `roles.R.nodes` never holds R: a candidate WAITs, a holder (the list changed
     under it) RELEASEs with hand-off like rule 12, and such nodes are never hand-off targets.
 31. ranking adds `roles.R.prefer[node]` to the node's score (priority - penalty), so the roles
     of one tier can prefer different nodes; a requested or hand-off target still comes first.
 32. `roles.R.avoid_with`: a node holding (by its lease) one of those roles ranks after every node
     that holds none of them: soft anti-colocation, as a Pacemaker colocation of -INF would be
     too strict for a tier of two. It chooses among candidates; it never moves a holder. A node
     that ACQUIREs an avoided role in this very loop counts as holding it (`decide` settles the
     roles that avoid nothing first): two roles due together must not both go to the best node.
 33. failback (`roles.R.failback.delay_s`; absent: sticky, nothing moves back): a holder RELEASEs
     with hand-off to the best-placed node (score + prefer weight, strictly above its own) once
     we have seen that node eligible without a break for delay_s (Local.healthy_since, our
     clock) and have held the role ourselves for delay_s (Local.held_since): a preferred node
     that keeps losing the role cannot make it bounce faster than once per delay_s. Not in
     maintenance, not while a request is pending, not without ZooKeeper.
 34. rules 30-33 only choose who may and who should hold a role; the lease rules 1-11 decide when,
     so a failback is a graceful hand-off like a switchover and never shortens a wait.
failsafe mode (spec `failsafe: true`; docs/safety.md "Failsafe mode"):
 13. holder, ZooKeeper unreachable: RENEW locally (`extend_to` = the poll's send time + the holder
     validity, no ZooKeeper write) only if in this loop EVERY other node of the tier *as listed in
     the spec* confirmed on its API (holds nothing, sees no other holder, promised not to acquire
     for lease_s); one missing or negative answer: plain RENEW, which fails, so the holder demotes
     at its deadline as without failsafe. Rules 1-4 and 12 come first: an expired, overwritten or
     unhealthy holder never extends. When ZooKeeper is back the next RENEW is the usual CAS on the version we last
     knew: it fails, and we demote (rule 2 or the lost CAS), if anybody else wrote the lease.
 14. a node that promised a holder not to acquire until T (its own clock) WAITs until T whatever
     rules 6-12 say, ZooKeeper back or not: after a long outage the lease version looks stale to
     it while that holder still acts on its local extension.
host fencing (a role whose resources require fencing, spec `fence:`; docs/safety.md "Fencing"):
 15. where rules 8-9 would ACQUIRE a lease held by a silent other node, FENCE it first (the agent
     runs the node's fence agent: `off`, then `status` must say off); ACQUIRE only once our record
     says that node is off for that very term.
 16. a released lease (the holder stopped its resources before writing the release), or one
     naming this node (an earlier process of ours, fenced by its own guard), is taken without
     fencing.
 17. a failed fence means no takeover: WAIT (the agent raises a critical alarm and notifies), and
     fence again FENCE_RETRY_S after the failure.
 18. a fence in flight: WAIT for its result (never a second one beside it).
 19. a malformed lease, or a missing one this process had read a record of before (it carries that
     record's promise), names no holder we could fence: FENCE every other node of the tier as the
     spec lists it, and ACQUIRE only once all of them are confirmed off. A lease this process never
     saw a record of is a fresh cluster: every holder writes its lease before it starts anything.
after an outage of ZooKeeper:
 25. waiting out a held or missing lease (rule 8), a candidate ranked r >= 1 among the eligible
     members *including the lease's holder* (rule 8 leaves a silent holder out) waits at least
     until r * lease_s after its snapshots came back (`Local.reconnected_at`, set on a reconnect
     only), and probes only then (no lead). After a long outage every candidate finds the lease
     long stale at once, and the holder it names is often alive (it only demoted for the outage):
     without this both stores acted at once -- the worse one's duplicate-address probe met the
     better one's VIP start, which took it for a conflict (RFC 5227 2.1.1) and failed, and the
     worse node took the role. A holder that is really gone has no member znode once its session
     expires; until then this costs a lease per rank after an outage. Waiting longer is always
     safe; nodes reconnect up to a retry backoff apart, hence lease_s per rank, not the stagger.
graceful demote (rules 20-22, hacluster/graceful.py: how a RELEASE or a cut-off holder drains the
VIP's SMTP sessions first; DEMOTE of rules 1-2 never waits; no deadline changes).
"""

from __future__ import annotations

import enum
from typing import Mapping, NamedTuple

from .coord.model import Cluster, Constraint, Lease, Member, Request
from .placement_spec import Placement
from .spec import ClusterSpec, RoleSpec
from .timing import Timing

REQUEST_TTL_S = 120.0  # a switchover nobody acted on for this long is stale
FENCE_RETRY_S = 10.0  # rule 17: a failed fence is tried again this long after it failed


class Action(str, enum.Enum):
    NONE = "none"  # not our tier
    WAIT = "wait"
    ACQUIRE = "acquire"
    RENEW = "renew"
    RELEASE = "release"
    DEMOTE = "demote"
    FENCE = "fence"  # power the silent holder off before acquiring (rules 15, 19)


class Fenced(NamedTuple):
    """This node's record of fencing `node` for the lease term it held (rules 15-19)."""

    node: str
    term: int  # the lease term the fence was for: a record for another term does not count
    state: str  # "running" | "off" (off, and status confirmed it) | "failed"
    at: float  # CLOCK_BOOTTIME: when it started (running) or ended
    detail: str = ""


class Held(NamedTuple):
    """This process's own lease on a role: valid strictly before `until` (CLOCK_BOOTTIME)."""

    term: int
    seq: int
    until: float
    version: int = 0  # znode version of our last acknowledged write (for the next CAS)


class PeerAnswer(NamedTuple):
    """A tier peer's answer to our failsafe poll (its API's POST /failsafe), as the agent read it."""

    node: str
    confirmed: bool  # holds nothing, sees no other holder, and promised (below)
    promise_s: float = 0.0  # it will not acquire for this long from its answer, on its clock
    why: str = ""  # a negative answer's reason (or the transport error), for the verdict line

    def covers(self, t: Timing) -> bool:
        """Confirmed, with a promise at least our lease_s long (a peer on a shorter timing does not do)."""
        return self.confirmed and self.promise_s >= t.lease_s


class FailsafePoll(NamedTuple):
    """The holder's poll of its tier peers in this loop, while ZooKeeper is unreachable (rule 13)."""

    sent_at: float  # our CLOCK_BOOTTIME, read before the first request went out
    answers: Mapping[str, PeerAnswer]  # node -> its answer; a peer that did not answer is absent


class Promise(NamedTuple):
    """We told `holder` (term `term`) we would not acquire its role before `until` (our clock)."""

    holder: str
    term: int
    until: float


class Local(NamedTuple):
    node: str
    now: float  # CLOCK_BOOTTIME seconds
    me: Member  # our own current health verdict (fresher than our published znode)
    held: Mapping[str, Held]
    wall: float = 0.0  # wall clock, only to age requests
    polls: Mapping[str, FailsafePoll] = {}  # role -> this loop's failsafe poll (rule 13)
    promises: Mapping[str, Promise] = {}  # role -> our failsafe promise (rule 14)
    fences: Mapping[str, Mapping[str, Fenced]] = {}  # role -> node -> our fence record (rules 15-19)
    reconnected_at: float | None = None  # our first connected snapshot after losing ZooKeeper (rule 25)
    healthy_since: Mapping[str, float] = {}  # node -> since when (our clock) we see it eligible (rule 33)
    held_since: Mapping[str, float] = {}  # role -> since when (our clock) we hold it (rule 33)


class Verdict(NamedTuple):
    role: str
    action: Action
    reason: str
    wake_at: float | None = None  # when this verdict could change by itself
    handoff_to: str | None = None
    probe_at: float | None = None  # from when a duplicate-address probe is meaningful (rule 10)
    extend_to: float | None = None  # RENEW without ZooKeeper up to this deadline (rule 13)
    fence: tuple[str, ...] = ()  # FENCE: the nodes to power off before acquiring (rules 15, 19)

    def line(self) -> str:
        return f"{self.role}: {self.action.value} ({self.reason})"


def eligible(members: Mapping[str, Member], me: Member, tier: str) -> list[Member]:
    """Healthy members of the tier; our own fresh view replaces our published one."""
    out = {m.name: m for m in members.values() if m.tier == tier}
    out[me.name] = me
    return [m for m in out.values() if m.healthy and not m.demote]


def ranked(cands: list[Member], preferred: str | None = None, place: Placement | None = None,
           avoided: frozenset[str] = frozenset()) -> list[str]:
    """Best first: a requested target, then nodes holding no avoided role (rule 32), then higher
    score (priority - penalty) plus the role's prefer weight (rule 31), then name."""
    w = place.weight if place is not None else (lambda n: 0)
    return [m.name for m in sorted(cands, key=lambda m: (m.name != preferred, m.name in avoided, -(m.score + w(m.name)),
                                                          m.name))]


def avoided_nodes(role: RoleSpec, c: Cluster, me: str = "", taking: frozenset[str] = frozenset()) -> frozenset[str]:
    """Rule 32: the nodes that hold (by their lease) one of the roles this role avoids, and `me`
    if this loop acquires one of them (`taking`): its lease is not in the snapshot yet."""
    held = {lease.holder for r in role.placement.avoid_with if (lease := c.leases.get(r)) is not None and lease.holder}
    if taking.intersection(role.placement.avoid_with):
        held.add(me)
    return frozenset(held)


def track_healthy(prev: Mapping[str, float], members: Mapping[str, Member], me: Member, now: float) -> dict[str, float]:
    """Rule 33's clock: since when each node has been eligible without a break, as we saw it.
    The agent calls this every loop with the fresh snapshot; a node that drops out starts again."""
    seen = {m.name: m for m in members.values()}
    seen[me.name] = me
    return {n: prev.get(n, now) for n, m in seen.items() if m.healthy and not m.demote}


def failback_target(role: RoleSpec, cands: list[Member], me: Member, local: Local,
                    delay_s: float) -> tuple[str | None, float | None]:
    """Rule 33: (the node to fail back to now, or None; when that could change by itself)."""
    place = role.placement
    mine = me.score + place.weight(me.name)
    better = sorted((m for m in cands if m.name != me.name and m.score + place.weight(m.name) > mine),
                    key=lambda m: (-(m.score + place.weight(m.name)), m.name))
    if not better:
        return None, None
    top = better[0]
    since = local.healthy_since.get(top.name)
    if since is None:
        return None, None
    ready = max(since, local.held_since.get(role.name, since)) + delay_s
    if local.now >= ready:
        return top.name, None
    return None, ready


def _live_request(req: Request | None, wall: float) -> Request | None:
    """The request to act on now: not expired (REQUEST_TTL_S after it was made, or after its
    scheduled time) and due."""
    if req is None:
        return None
    since = max(req.at, req.not_before or 0.0)
    if wall and since and wall - since > REQUEST_TTL_S:
        return None
    return req if req.due(wall) else None


def barred(c: Cluster, role: str, wall: float) -> dict[str, Constraint]:
    """Rule 12: node -> the constraint in force that keeps it from `role` (standby first)."""
    out: dict[str, Constraint] = {}
    for con in sorted(c.constraints, key=lambda k: k.role is not None):
        if (con.role is None or con.role == role) and con.active(wall):
            out.setdefault(con.node, con)
    return out


def stale_wait(t: Timing, lease: Lease) -> tuple[float, float]:
    """Rule 11: (how long a candidate waits out this lease version, how far ahead it may probe).

    The holder acts until t_send + lease_s - margin_s by *its* timing, and (S), which its own
    config check enforced, puts its VIP down within its lease_s of our first sight of that version.
    A record without a promise (an older agent) is taken to share our timing, as before."""
    promise = lease.promise
    if promise is None or promise == (t.lease_s, t.margin_s):
        return t.lease_s, t.probe_lead_s
    wait = max(t.lease_s, promise[0])
    return wait, wait - promise[0]


def _failsafe_renew(role: str, t: Timing, held: Held, local: Local, peers: tuple[str, ...]) -> Verdict:
    """Rule 13: extend locally only with every listed peer's confirmation from this loop's poll."""
    poll = local.polls.get(role)
    if poll is None:
        return Verdict(role, Action.RENEW, f"holder, term {held.term}; failsafe: no poll of the peers, no extension")
    missing = [p if p not in poll.answers else f"{p}: {poll.answers[p].why or 'promise too short'}"
               for p in peers if p not in poll.answers or not poll.answers[p].covers(t)]
    if missing or poll.sent_at > local.now:
        return Verdict(role, Action.RENEW, f"holder, term {held.term}; failsafe: no extension, not confirmed by "
                       + ", ".join(missing or ["(poll from the future)"]))
    until = poll.sent_at + t.holder_validity_s
    return Verdict(role, Action.RENEW, f"holder, term {held.term}; failsafe: zookeeper unreachable, "
                   f"{len(peers)} peer(s) confirmed, valid for {until - local.now:.3f}s", extend_to=until)


def _fence_gate(role: str, lease: Lease, local: Local, peers: tuple[str, ...], probe_at: float) -> Verdict | str:
    """Rules 15-19 at the moment we would ACQUIRE: a verdict that holds the takeover back, or the
    text to add to the ACQUIRE reason."""
    if lease.exists and lease.holder is None:
        return "; released cleanly, no fencing"  # rule 16
    if lease.holder == local.node:
        return "; our own earlier term, no fencing"  # rule 16
    if not lease.exists and lease.promise is None:
        return "; no lease record ever seen (a fresh cluster), no fencing"  # rule 19
    if lease.exists and lease.holder is not None and lease.holder != "?":
        targets: tuple[str, ...] = (lease.holder,)  # rule 15
    else:
        targets = peers  # rule 19: nobody named, everybody else might hold it
    recs = local.fences.get(role, {})
    mine = {n: recs[n] for n in targets if n in recs and recs[n].term == lease.term}
    failed = [r for r in mine.values() if r.state == "failed"]
    if failed:  # rule 17
        retry_at = max(r.at for r in failed) + FENCE_RETRY_S
        why = "; ".join(f"fence of {r.node} failed: {r.detail or 'no detail'}" for r in failed)
        if local.now < retry_at:
            return Verdict(role, Action.WAIT, f"{why}; no takeover, fencing again in {retry_at - local.now:.1f}s",
                           retry_at, probe_at=probe_at)
        return Verdict(role, Action.FENCE, f"{why}; fencing again", fence=tuple(r.node for r in failed))
    running = [n for n, r in mine.items() if r.state == "running"]
    if running:  # rule 18
        return Verdict(role, Action.WAIT, f"fencing {', '.join(running)} in progress")  # the agent wakes on its result
    todo = tuple(n for n in targets if n not in mine or mine[n].state != "off")
    if todo:
        what = (f"silent holder {lease.holder} term {lease.term}" if targets == (lease.holder,)
                else "no holder named in the lease: every other node of the tier")
        return Verdict(role, Action.FENCE, f"{what} must be fenced before the takeover", fence=todo)
    return f"; fenced {', '.join(targets) or 'nobody (no other node)'}"


def decide_role(role: RoleSpec, t: Timing, c: Cluster, local: Local, failsafe: bool = False,
                peers: tuple[str, ...] = (), fencing: bool = False, taking: frozenset[str] = frozenset()) -> Verdict:
    """`failsafe`: the spec's flag; `peers`: the other nodes of the role's tier in the spec (rules
    13, 19); `fencing`: the role requires fencing a silent holder before a takeover (rules 15-19);
    `taking`: the roles this node acquires in this loop (rule 32)."""
    me = local.node
    if local.me.tier != role.tier:
        return Verdict(role.name, Action.NONE, f"tier {local.me.tier} does not serve this role")
    seen_lease = c.leases.get(role.name)
    # not in the snapshot at all: unknown (never "missing since forever", which would let us acquire)
    lease = seen_lease or Lease(role.name, None, 0, 0, -1)
    req = _live_request(c.requests.get(role.name), local.wall)
    bars = barred(c, role.name, local.wall)
    place = role.placement
    cands = [m for m in eligible(c.members, local.me, role.tier) if m.name not in bars and place.allows(m.name)]
    avoided = avoided_nodes(role, c, me, taking)
    held = local.held.get(role.name)

    if held is not None:
        if local.now >= held.until:
            return Verdict(role.name, Action.DEMOTE, f"lease expired {local.now - held.until:.3f}s ago (no acknowledged renewal)")
        if lease.exists and (lease.holder != me or lease.term != held.term):
            return Verdict(role.name, Action.DEMOTE, f"lease taken: holder={lease.holder} term={lease.term}, ours was term {held.term}")
        others = [n for n in ranked([m for m in cands if m.name != me], None, place, avoided) if n != me]
        if local.me.demote:
            target = others[0] if others else None
            return Verdict(role.name, Action.RELEASE, "unhealthy: " + ", ".join(local.me.reasons or ("demote",)), None, target)
        if me in bars and not c.maintenance:
            target = others[0] if others else None
            return Verdict(role.name, Action.RELEASE, bars[me].describe(), None, target)
        if not place.allows(me) and not c.maintenance:
            target = others[0] if others else None
            return Verdict(role.name, Action.RELEASE, f"not in roles.{role.name}.nodes", None, target)
        if req is not None and req.kind == "switchover" and req.to != me and not c.maintenance:
            target = req.to if req.to is not None else (others[0] if others else None)
            if target is not None and target in others:
                return Verdict(role.name, Action.RELEASE, f"switchover to {target} requested by {req.by}", None, target)
            return Verdict(role.name, Action.RENEW, f"holder, term {held.term}; switchover target {req.to or '(any)'} not eligible")
        fb_wake = None
        if (place.failback_s is not None and c.connected and not c.maintenance
                and c.requests.get(role.name) is None and not local.me.demote):
            target, fb_wake = failback_target(role, cands, local.me, local, place.failback_s)
            if target is not None:
                return Verdict(role.name, Action.RELEASE, f"failback to {target} (preferred, eligible for "
                               f"{local.now - local.healthy_since[target]:.0f}s >= {place.failback_s:g}s)", None, target)
        if not c.connected and failsafe:
            return _failsafe_renew(role.name, t, held, local, peers)
        sched = c.requests.get(role.name)
        later = (f"; switchover to {sched.to or '(any)'} scheduled in {sched.not_before - local.wall:.0f}s"
                 if sched is not None and sched.not_before and not sched.due(local.wall) else "")
        return Verdict(role.name, Action.RENEW, f"holder, term {held.term}" + ("; maintenance" if c.maintenance else "")
                       + later + (f"; failback in {fb_wake - local.now:.0f}s" if fb_wake is not None else ""), fb_wake)

    promise = local.promises.get(role.name)
    if promise is not None and local.now < promise.until:
        return Verdict(role.name, Action.WAIT, f"failsafe: promised {promise.holder} (term {promise.term}) not to "
                       f"acquire for {promise.until - local.now:.3f}s more", promise.until)

    if c.maintenance and not (req is not None and req.kind == "failover" and req.to == me):
        return Verdict(role.name, Action.WAIT, "maintenance mode: no placement changes")
    if not c.connected:
        return Verdict(role.name, Action.WAIT, "zookeeper unreachable: nobody may acquire")
    if local.me.demote or not local.me.healthy:
        return Verdict(role.name, Action.WAIT, "not eligible: " + ", ".join(local.me.reasons or ("unhealthy",)))
    if me in bars:
        return Verdict(role.name, Action.WAIT, "not eligible: " + bars[me].describe())
    if not place.allows(me):
        return Verdict(role.name, Action.WAIT, f"not eligible: not in roles.{role.name}.nodes")
    if seen_lease is None:
        return Verdict(role.name, Action.WAIT, "lease state unknown (not in the snapshot)")

    preferred = None
    if req is not None and req.to in {m.name for m in cands}:
        preferred = req.to
    if lease.holder is None and lease.handoff_to and lease.handoff_to in {m.name for m in cands}:
        preferred = lease.handoff_to
    # a silent holder is the node that failed: it does not block the others' ranks
    order = ranked([m for m in cands if m.name == me or m.name != lease.holder], preferred, place, avoided)
    rank = order.index(me)

    lead = t.probe_lead_s
    if lease.holder is None and lease.exists:
        free_since = lease.observed_at
        safe_from = free_since  # a releasing holder stops its resources before it writes the release
        if preferred and preferred != me:
            # the preferred node has the lease to itself for lease_s; then the others, by rank
            if local.now < free_since + t.lease_s:
                at = free_since + t.lease_s
                return Verdict(role.name, Action.WAIT, f"released, hand-off to {preferred}", at,
                               probe_at=max(safe_from, at - lead))
            at = free_since + t.lease_s + (rank - 1) * t.rank_stagger_s
        else:
            at = free_since + rank * t.rank_stagger_s
        what = "lease free"
    else:
        # held, or missing: a deleted lease is waited out like a silent holder, so deleting the
        # znode (rogue client, operator error) can never shortcut a live holder's lease
        wait, lead = stale_wait(t, lease)  # rule 11: the holder's promise, if longer than ours
        at = lease.observed_at + wait + rank * t.rank_stagger_s
        safe_from = lease.observed_at + wait - lead  # the old holder's VIP is down by (S)
        if local.reconnected_at is not None:  # rule 25: after an outage the better ranks first
            full = ranked(cands, preferred).index(me)  # the lease's holder too, if a live member
            if full and local.reconnected_at + full * t.lease_s > at:
                at, lead = local.reconnected_at + full * t.lease_s, 0.0
        who = f"holder {lease.holder} term {lease.term}" if lease.exists else "no lease znode"
        if wait != t.lease_s:
            who += f" (promised lease {lease.lease_s:g}s)"
        what = f"{who} unchanged for {local.now - lease.observed_at:.3f}s"
        if local.now < lease.observed_at + wait:
            return Verdict(role.name, Action.WAIT, f"{who}, unchanged for {local.now - lease.observed_at:.3f}s", at,
                           probe_at=max(safe_from, at - lead))
    probe_at = max(safe_from, at - lead)
    if local.now >= at:
        fenced = ""
        if fencing:
            gate = _fence_gate(role.name, lease, local, peers, probe_at)
            if isinstance(gate, Verdict):
                return gate
            fenced = gate
        return Verdict(role.name, Action.ACQUIRE, f"{what}; candidate rank {rank}" + (" (requested)" if preferred == me else "")
                       + fenced, probe_at=probe_at)
    return Verdict(role.name, Action.WAIT, f"{what}; candidate rank {rank}, my turn in {at - local.now:.3f}s", at,
                   probe_at=probe_at)


def decide(spec: ClusterSpec, c: Cluster, local: Local) -> list[Verdict]:
    """One verdict per role of the cluster that this node's tier serves, in the spec's order; the
    roles that avoid nothing are settled first, so rule 32 sees what this loop acquires."""
    peers = tuple(n for n, node in spec.nodes.items() if node.tier == local.me.tier and n != local.node)
    mine = [r for r in spec.roles.values() if r.tier == local.me.tier]
    out: dict[str, Verdict] = {}
    taking: set[str] = set()
    for r in sorted(mine, key=lambda r: bool(r.placement.avoid_with)):
        v = decide_role(r, spec.timing, c, local, spec.failsafe, peers, spec.requires_fencing(r.name), frozenset(taking))
        if v.action == Action.ACQUIRE:
            taking.add(r.name)
        out[r.name] = v
    return [out[r.name] for r in mine]
