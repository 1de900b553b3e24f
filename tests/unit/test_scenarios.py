"""Multi-cycle scenarios (tests/scenarios/*.yml, format in tests/scenarios/README.md): one node's
agent loop, cycle by cycle, against a scripted cluster.

Each cycle the runner does what `Agent.cycle` does, in its order, with the real pure functions:
the deadline check, a due probe (ha_local rule 42), the snapshot with first-seen times (rule 40)
and carried promises (rule 43), the late-write give-back (rule 41), `ha.decide`, then the verdicts acted on: an ACQUIRE writes the
lease (term + 1) and holds it for holder_validity_s, a RENEW extends, a RELEASE writes the release,
a DEMOTE drops it. The scenario says what the other nodes wrote meanwhile and what it expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import pytest
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from hacluster.coord.model import Cluster, Constraint, Lease, Member, Request
from hacluster.ha import Action, FailsafePoll, Held, Local, PeerAnswer, Promise, Verdict, decide
from hacluster.ha_local import (Seen, carry_promise, first_seen, give_back, probe_due, probe_step, reassert, zk_read,
                                 zk_stalled)
from hacluster.spec import ClusterSpec, SpecError, parse_spec
from hacluster.yamlread import ProblemsError, load_yaml

HERE = Path(__file__).resolve().parents[1] / "scenarios"
WALL0 = 1_700_000_000.0  # the wall clock at `at: 0`; it moves with the node's clock
DEFAULT_NODES = {"n1": 100, "n2": 90, "n3": 80}
ACTIONS = {a.value: a for a in Action}

#: the timing of a scenario that names no profile: the default profile's loop, margin and request
#: timeout with the round lease of 1 s the stories were told in (the default profile's own lease is
#: 2.05 s since it renews at most once a second; the decision core's arithmetic is the same)
SCENARIO_TIMING = {"profile": "default", "lease_s": 1.0, "stall_s": 0}

SCENARIO_KEYS = {"name", "node", "nodes", "roles", "timing", "failsafe", "cycles"}
CYCLE_KEYS = {"at", "note", "lease", "leases", "members", "me", "request", "requests", "constraints",
              "maintenance", "connected", "write", "held", "poll", "promise", "promises", "expect"}
EXPECT_KEYS = {"action", "handoff", "reason", "wake", "probe", "extend"}
LEASE_KEYS = {"holder", "term", "version", "handoff", "promise", "zxid"}
MEMBER_KEYS = {"healthy", "demote", "penalty", "reasons"}
REQUEST_KEYS = {"kind", "to", "by", "age", "in"}
CONSTRAINT_KEYS = {"node", "role", "for"}
WRITES = ("ok", "lost", "late")


class ScenarioError(Exception):
    """Bad scenario content: the message names file, line, scenario and cycle."""


class Where(NamedTuple):
    file: str
    scenario: str
    cycle: int | None  # 1-based

    def at(self, node: Any, key: Any = None) -> str:
        line = 1
        try:
            if key is not None and isinstance(node, CommentedMap) and key in node:
                line = node.lc.key(key)[0] + 1
            else:
                line = node.lc.line + 1
        except (AttributeError, KeyError, TypeError):
            pass
        where = f"{self.file}:{line}: scenario {self.scenario!r}"
        return where + (f", cycle {self.cycle}" if self.cycle is not None else "")


def fail(w: Where, node: Any, key: Any, msg: str) -> ScenarioError:
    return ScenarioError(f"{w.at(node, key)}: {key + ': ' if isinstance(key, str) else ''}{msg}")


def mapping(w: Where, parent: Any, key: str, allowed: set[str]) -> CommentedMap:
    v = parent[key]
    if not isinstance(v, CommentedMap):
        raise fail(w, parent, key, f"must be a mapping, got {type(v).__name__}")
    for k in v:
        if k not in allowed:
            raise fail(w, v, k, f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return v


def value(w: Where, m: Any, key: str, typ: type | tuple[type, ...], default: Any = None, none_ok: bool = False) -> Any:
    if key not in m:
        return default
    v = m[key]
    if v is None and none_ok:
        return None
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise fail(w, m, key, f"must be {want}, got {type(v).__name__} {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise fail(w, m, key, "must be a finite number")
    return v


def per_role(w: Where, cyc: CommentedMap, one: str, many: str, roles: list[str]) -> dict[str, tuple[Any, Any, Any]]:
    """`lease: X` (the only role) or `leases: {role: X}` -> role -> (value, parent, key)."""
    out: dict[str, tuple[Any, Any, Any]] = {}
    if one in cyc:
        if many in cyc:
            raise fail(w, cyc, one, f"give either {one} or {many}, not both")
        if len(roles) != 1:
            raise fail(w, cyc, one, f"the scenario has roles {roles}: use {many}: {{ROLE: ...}}")
        out[roles[0]] = (cyc[one], cyc, one)
    elif many in cyc:
        m = mapping(w, cyc, many, set(roles))
        for r in m:
            out[r] = (m[r], m, r)
    return out


# ------------------------------------------------------------------ the cluster the scenario scripts


@dataclass
class ZNode:
    """The lease znode as ZooKeeper holds it (version -1: no znode)."""

    holder: str | None = None
    term: int = 0
    seq: int = 0
    version: int = -1
    handoff: str | None = None
    promise: tuple[float, float] | None = None
    zxid: int = -1

    def lease(self, role: str, seen: float) -> Lease:
        lease_s, margin_s = self.promise or (None, None)
        return Lease(role, self.holder, self.term, self.seq, self.version, self.handoff, seen,
                     zxid=max(0, self.zxid), lease_s=lease_s, margin_s=margin_s)


@dataclass
class State:
    """What the runner carries from cycle to cycle: ZooKeeper's side and the agent's."""

    spec: ClusterSpec
    node: str
    zxid: int = 100
    znodes: dict[str, ZNode] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    me: Member | None = None
    requests: dict[str, Request] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    maintenance: bool = False
    connected: bool = True
    # the agent's own
    held: dict[str, Held] = field(default_factory=dict)
    expired: dict[str, tuple[int, int]] = field(default_factory=dict)
    written: dict[str, set[int]] = field(default_factory=dict)
    seen: dict[str, Seen] = field(default_factory=dict)
    promised: dict[str, tuple[float, float]] = field(default_factory=dict)  # rule 43
    max_term: dict[str, int] = field(default_factory=dict)
    promises: dict[str, Promise] = field(default_factory=dict)
    last: dict[str, Verdict] = field(default_factory=dict)
    stalled: bool = False  # ha_local rule 44: a ZooKeeper request of ours failed, no write acknowledged since
    acked: bool = False  # this cycle: a lease write of ours was acknowledged
    failed: bool = False  # this cycle: a ZooKeeper request of ours failed (or ZooKeeper unreachable)

    def write(self, role: str, at: float | None = None, **kw: Any) -> ZNode:
        """A write to the lease znode: a new version, a new mzxid. `at`: our own write, which our
        lease watch reports at once (Coordinator.watch_leases), so it is first seen then."""
        old = self.znodes.get(role, ZNode())
        self.zxid += 1
        z = ZNode(**{**old.__dict__, "version": old.version + 1, "zxid": self.zxid, **kw})
        self.znodes[role] = z
        self.max_term[role] = max(self.max_term.get(role, 0), z.term)
        if at is not None:
            self.seen[role] = first_seen(self.seen.get(role), z.zxid, at)
        return z


def build_spec(w: Where, sc: CommentedMap) -> ClusterSpec:
    nodes = sc.get("nodes", DEFAULT_NODES)
    if not isinstance(nodes, dict) or not nodes:
        raise fail(w, sc, "nodes", "must be a mapping NODE: PRIORITY or NODE: {priority, tier}")
    roles = sc.get("roles", {"store": "store"})
    if not isinstance(roles, dict) or not roles:
        raise fail(w, sc, "roles", "must be a mapping ROLE: TIER")
    timing = sc.get("timing") or {}  # the spec's `timing:` section (SCENARIO_TIMING unless a profile is named)
    if not isinstance(timing, dict):
        raise fail(w, sc, "timing", "must be a mapping like the spec's timing: section")
    if "profile" not in timing:
        timing = {**SCENARIO_TIMING, **timing}
    lines = ["cluster: scenario", 'zookeeper: {hosts: ["127.0.0.1:2181"]}',
             f"failsafe: {'true' if value(w, sc, 'failsafe', bool, False) else 'false'}",
             "timing: {" + ", ".join(f"{k}: {v}" for k, v in timing.items()) + "}", "roles:"]
    lines += [f"  {r}: {{tier: {t}}}" for r, t in roles.items()]
    lines.append("nodes:")
    for i, (n, v) in enumerate(nodes.items()):
        prio, tier = (v, "store") if isinstance(v, int) else (v.get("priority", 100), v.get("tier", "store"))
        lines.append(f"  - {{name: {n}, tier: {tier}, interface: lo, addresses: [127.0.0.{10 + i}/8], priority: {prio}}}")
    try:
        return parse_spec("\n".join(lines) + "\n", f"{w.file} (scenario {w.scenario!r}, its spec)")
    except SpecError as err:
        raise fail(w, sc, "nodes", f"the spec made from nodes/roles/timing is invalid: {err}") from None


def member_of(w: Where, spec: ClusterSpec, name: str, raw: Any, parent: Any, key: Any) -> Member | None:
    """`up` (healthy), `down` (no member znode) or {healthy, demote, penalty, reasons}."""
    node = spec.nodes.get(name)
    if node is None:
        raise fail(w, parent, key, f"no node {name!r} in the scenario (nodes: {', '.join(spec.nodes)})")
    base = Member(name, node.tier, node.priority, True, False)
    if raw == "up":
        return base
    if raw == "down":
        return None
    if not isinstance(raw, CommentedMap):
        raise fail(w, parent, key, "must be up, down or a mapping {healthy, demote, penalty, reasons}")
    for k in raw:
        if k not in MEMBER_KEYS:
            raise fail(w, raw, k, f"unknown key (allowed: {', '.join(sorted(MEMBER_KEYS))})")
    reasons = raw.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(x, str) for x in reasons):
        raise fail(w, raw, "reasons", "must be a list of strings")
    return base._replace(healthy=value(w, raw, "healthy", bool, True), demote=value(w, raw, "demote", bool, False),
                         penalty=value(w, raw, "penalty", int, 0), reasons=tuple(reasons))


def apply_inputs(w: Where, cyc: CommentedMap, st: State, at: float, roles: list[str]) -> str:
    """The cycle's changes to the cluster and to this node's view; returns its `write` outcome."""
    wall = WALL0 + at
    for role, (raw, parent, key) in per_role(w, cyc, "lease", "leases", roles).items():
        if raw == "missing":
            st.zxid += 1
            st.znodes[role] = ZNode(term=st.znodes.get(role, ZNode()).term, zxid=-1)
            continue
        if not isinstance(raw, CommentedMap):
            raise fail(w, parent, key, "must be `missing` or a mapping {holder, term, version, handoff, promise, zxid}")
        for k in raw:
            if k not in LEASE_KEYS:
                raise fail(w, raw, k, f"unknown key (allowed: {', '.join(sorted(LEASE_KEYS))})")
        holder = value(w, raw, "holder", str, None, none_ok=True)
        if holder is not None and holder not in st.spec.nodes:
            raise fail(w, raw, "holder", f"no node {holder!r} in the scenario")
        kw: dict[str, Any] = {"holder": holder, "handoff": value(w, raw, "handoff", str, None, none_ok=True)}
        if "term" in raw:
            kw["term"] = value(w, raw, "term", int)
        if "version" in raw:
            kw["version"] = value(w, raw, "version", int)
        t = st.spec.timing
        promise = raw.get("promise", [t.lease_s, t.margin_s])
        if promise is not None and (not isinstance(promise, list) or len(promise) != 2
                                    or not all(isinstance(x, (int, float)) for x in promise)):
            raise fail(w, raw, "promise", "must be [lease_s, margin_s] or null (an older agent's record)")
        kw["promise"] = tuple(float(x) for x in promise) if promise is not None else None
        z = st.write(role, **kw)
        if "zxid" in raw:
            z.zxid = value(w, raw, "zxid", int)
    if "members" in cyc:
        m = mapping(w, cyc, "members", set(st.spec.nodes))
        for n in m:
            mem = member_of(w, st.spec, n, m[n], m, n)
            if mem is None:
                st.members.pop(n, None)
            else:
                st.members[n] = mem
    if "me" in cyc:
        mem = member_of(w, st.spec, st.node, cyc["me"], cyc, "me")
        if mem is None:
            raise fail(w, cyc, "me", "this node's own view cannot be `down`")
        st.me = mem
    for role, (raw, parent, key) in per_role(w, cyc, "request", "requests", roles).items():
        if raw == "none":
            st.requests.pop(role, None)
            continue
        if not isinstance(raw, CommentedMap):
            raise fail(w, parent, key, "must be `none` or a mapping {kind, to, by, age, in}")
        for k in raw:
            if k not in REQUEST_KEYS:
                raise fail(w, raw, k, f"unknown key (allowed: {', '.join(sorted(REQUEST_KEYS))})")
        kind = value(w, raw, "kind", str, "switchover")
        if kind not in ("switchover", "failover"):
            raise fail(w, raw, "kind", "must be switchover or failover")
        at_in = value(w, raw, "in", float, None)
        st.requests[role] = Request(role, kind, value(w, raw, "to", str, None, none_ok=True),
                                    value(w, raw, "by", str, "operator"), wall - value(w, raw, "age", float, 1.0),
                                    not_before=wall + at_in if at_in is not None else None)
    if "constraints" in cyc:
        seq = cyc["constraints"]
        if not isinstance(seq, CommentedSeq):
            raise fail(w, cyc, "constraints", "must be a list of {node, role, for}")
        cons = []
        for item in seq:
            if not isinstance(item, CommentedMap) or "node" not in item:
                raise fail(w, cyc, "constraints", "each item must be a mapping with node (and role, for)")
            for k in item:
                if k not in CONSTRAINT_KEYS:
                    raise fail(w, item, k, f"unknown key (allowed: {', '.join(sorted(CONSTRAINT_KEYS))})")
            lifetime = value(w, item, "for", float, None)
            cons.append(Constraint(value(w, item, "node", str), value(w, item, "role", str, None), "operator",
                                   wall, wall + lifetime if lifetime is not None else None))
        st.constraints = tuple(cons)
    st.maintenance = value(w, cyc, "maintenance", bool, st.maintenance)
    st.connected = value(w, cyc, "connected", bool, st.connected)
    if "held" in cyc:  # the agent holds a lease already when the story starts
        raw = cyc["held"]
        if w.cycle != 1 or not isinstance(raw, CommentedMap):
            raise fail(w, cyc, "held", "only in the first cycle: {term, until} (the lease is the lease: line's)")
        for k in raw:
            if k not in {"term", "until"}:
                raise fail(w, raw, k, "unknown key (allowed: term, until)")
        role = roles[0]
        z = st.znodes.get(role)
        if z is None or z.holder != st.node:
            raise fail(w, cyc, "held", f"the lease must name {st.node} in the same cycle")
        term = value(w, raw, "term", int, z.term)
        st.held[role] = Held(term, 0, value(w, raw, "until", float, at + st.spec.timing.holder_validity_s), z.version)
        st.written.setdefault(role, set()).add(term)
    for role, (raw, parent, key) in per_role(w, cyc, "promise", "promises", roles).items():
        if not isinstance(raw, CommentedMap) or set(raw) != {"holder", "term", "until"}:
            raise fail(w, parent, key, "must be a mapping {holder, term, until}")
        st.promises[role] = Promise(value(w, raw, "holder", str), value(w, raw, "term", int),
                                    value(w, raw, "until", float))
    write = value(w, cyc, "write", str, "ok")
    if write not in WRITES:
        raise fail(w, cyc, "write", f"must be one of {', '.join(WRITES)}")
    return write


def read_poll(w: Where, cyc: CommentedMap, at: float, roles: list[str]) -> dict[str, FailsafePoll]:
    if "poll" not in cyc:
        return {}
    raw = cyc["poll"]
    if not isinstance(raw, CommentedMap):
        raise fail(w, cyc, "poll", "must be a mapping {sent, answers: {NODE: {confirmed, promise, why}}}")
    for k in raw:
        if k not in {"sent", "answers"}:
            raise fail(w, raw, k, "unknown key (allowed: answers, sent)")
    answers = {}
    ans = raw.get("answers") or {}
    for n in ans:
        a = ans[n]
        if not isinstance(a, CommentedMap) or not set(a) <= {"confirmed", "promise", "why"}:
            raise fail(w, ans, n, "must be a mapping {confirmed, promise, why}")
        answers[n] = PeerAnswer(n, value(w, a, "confirmed", bool, False), value(w, a, "promise", float, 0.0),
                                value(w, a, "why", str, ""))
    return {roles[0]: FailsafePoll(value(w, raw, "sent", float, at - 0.01), answers)}


class Want(NamedTuple):
    action: Action
    handoff: Any = ...  # ...: not checked
    reason: str | None = None
    wake: Any = ...
    probe: Any = ...
    extend: Any = ...


def read_expect(w: Where, cyc: CommentedMap, roles: list[str]) -> tuple[dict[str, Want], list[str] | None]:
    if "expect" not in cyc:
        raise fail(w, cyc, None, "every cycle needs `expect:` (the verdicts it must produce)")
    raw = cyc["expect"]
    events = None
    if isinstance(raw, str):
        if len(roles) != 1:
            raise fail(w, cyc, "expect", f"the scenario has roles {roles}: expect {{ROLE: ACTION}}")
        if raw not in ACTIONS:
            raise fail(w, cyc, "expect", f"unknown action {raw!r} (known: {', '.join(ACTIONS)})")
        raw = {roles[0]: raw}
    elif not isinstance(raw, CommentedMap):
        raise fail(w, cyc, "expect", "must be an action or a mapping {ROLE: ACTION or {action, ...}, events}")
    out: dict[str, Want] = {}
    for role in raw:
        v = raw[role]
        if role == "events":
            if not isinstance(v, list) or not all(isinstance(e, str) for e in v):
                raise fail(w, raw, role, "must be a list of event lines")
            events = list(v)
            continue
        if role not in roles:
            raise fail(w, raw, role, f"no such role (roles: {', '.join(roles)}; or events)")
        if isinstance(v, str):
            v = {"action": v}
        elif isinstance(v, CommentedMap):
            for k in v:
                if k not in EXPECT_KEYS:
                    raise fail(w, v, k, f"unknown key (allowed: {', '.join(sorted(EXPECT_KEYS))})")
        else:
            raise fail(w, raw, role, "must be an action or a mapping {action, handoff, reason, wake, probe, extend}")
        act = v.get("action")
        if act not in ACTIONS:
            raise fail(w, v if isinstance(v, CommentedMap) else raw, "action" if isinstance(v, CommentedMap) else role,
                       f"unknown action {act!r} (known: {', '.join(ACTIONS)})")
        out[role] = Want(ACTIONS[act], *(v[k] if k in v else ... for k in ("handoff",)),
                         reason=v.get("reason"), wake=v.get("wake", ...), probe=v.get("probe", ...),
                         extend=v.get("extend", ...))
    if events is not None and not out and len(roles) == 1:
        raise fail(w, cyc, "expect", "name the verdict too, not only events")
    return out, events


# ------------------------------------------------------------------ the agent's cycle


def cycle(st: State, at: float, write: str, polls: dict[str, FailsafePoll]) -> tuple[list[Verdict], list[str]]:
    """One `Agent.cycle`, in its order, with the scenario's cluster in place of ZooKeeper."""
    spec, me = st.spec, st.node
    events: list[str] = []
    # the deadline first (the guard thread and _enforce_deadlines)
    for role, h in list(st.held.items()):
        if at >= h.until:
            del st.held[role]
            st.expired[role] = (h.term, h.version)
            events.append(f"deadline-demoted {role}")
    prepared: set[str] = set()
    for role, v in st.last.items():  # rule 42: woken for a probe time
        if probe_due(v.probe_at, role in st.held, at):
            prepared.add(role)
    # the snapshot: first-seen times (rule 40); none while a failsafe holder is stalled (rule 44)
    st.acked, st.failed = False, spec.failsafe and not st.connected
    if zk_read(st.stalled, spec.failsafe, st.connected) and st.connected:
        leases = {}
        for role in spec.roles:
            z = st.znodes.get(role)
            if z is None:
                continue  # not in the snapshot (unknown)
            st.seen[role] = first_seen(st.seen.get(role), z.zxid if z.version >= 0 else -1, at)
            st.max_term[role] = max(st.max_term.get(role, 0), z.term)
            last, leases[role] = carry_promise(st.promised.get(role), z.lease(role, st.seen[role].at))
            if last is not None:
                st.promised[role] = last
        wall = WALL0 + at
        cluster = Cluster(dict(st.members), leases, dict(st.requests), st.maintenance, True, st.constraints)
        for role, lease in leases.items():  # rule 41
            why = give_back(lease, me, role in st.held, lease.term in st.written.get(role, set()), st.expired.get(role))
            if why is not None:
                written = write == "ok"
                if written:
                    st.write(role, at, holder=None, handoff=None)
                events.append(f"gave-back {role} term {lease.term} version {lease.version}"
                              + ("" if written else " (not written)"))
    else:
        wall = WALL0 + at
        cluster = Cluster({}, {}, {}, False, connected=False)
    st.promises = {r: p for r, p in st.promises.items() if at < p.until}
    own = st.me or Member(me, spec.nodes[me].tier, spec.nodes[me].priority, True, False)
    verdicts = decide(spec, cluster, Local(me, at, own, dict(st.held), wall, polls, dict(st.promises)))
    for v in verdicts:
        role = v.role
        last = st.last.get(role)
        step = probe_step(v.probe_at, last.probe_at if last else None, last is not None, role in st.held, at)
        if step.unprepare:
            events.append(f"unprepared {role}")
        if step.prepare:
            prepared.add(role)
        act(st, v, at, write, events)
        st.last[role] = v
    st.stalled = zk_stalled(failsafe=spec.failsafe, acked=st.acked, failed=st.failed)
    events[:0] = [f"prepared {r}" for r in sorted(prepared)]
    return verdicts, events


def act(st: State, v: Verdict, at: float, write: str, events: list[str]) -> None:
    t, role, me = st.spec.timing, v.role, st.node
    z = st.znodes.get(role)
    ok = st.connected and write == "ok"
    landed = st.connected and write in ("ok", "late")
    if v.action == Action.ACQUIRE and z is not None:
        term = max(z.term, st.max_term.get(role, 0)) + 1
        st.written.setdefault(role, set()).add(term)  # tried: a lost reply may have landed all the same
        if landed:
            new = st.write(role, at, holder=me, term=term, seq=0, handoff=None, promise=(t.lease_s, t.margin_s),
                           version=z.version + 1)
            if ok:
                st.held[role] = Held(term, 0, at + t.holder_validity_s, new.version)
                events.append(f"acquired {role} term {term}")
                req = st.requests.get(role)
                if req is not None and req.to in (None, me):
                    del st.requests[role]
    elif v.action == Action.RENEW and role in st.held:
        h = st.held[role]
        if v.extend_to is not None:
            st.held[role] = h = h._replace(until=max(h.until, v.extend_to))
        if reassert(st.stalled, v.extend_to is not None, True):  # rule 44: after the poll, the CAS
            if z is not None and z.holder == me and z.term == h.term and z.version == h.version:
                if landed:
                    new = st.write(role, at, seq=h.seq + 1)
                    if ok:
                        st.held[role] = Held(h.term, h.seq + 1, max(h.until, at + t.holder_validity_s), new.version)
                        st.acked = True
                st.failed = st.failed or not ok
            elif ok:  # the CAS finds another version: somebody else wrote the lease
                del st.held[role]
                st.expired[role] = (h.term, h.version)
                events.append(f"lease-lost {role}")
            else:
                st.failed = True
    elif v.action == Action.RELEASE and role in st.held:
        h = st.held.pop(role)
        if landed and z is not None and z.version == h.version:
            st.write(role, at, holder=None, handoff=v.handoff_to)
    elif v.action == Action.DEMOTE and role in st.held:
        h = st.held.pop(role)
        st.expired[role] = (h.term, h.version)


# ------------------------------------------------------------------ loading and running


class Scenario(NamedTuple):
    file: str
    name: str
    body: CommentedMap | None
    error: str = ""  # the file did not load: this, for the one test that stands for it


def load(path: Path) -> list[Scenario]:
    rel = str(path.relative_to(HERE.parents[1])) if path.is_relative_to(HERE.parents[1]) else str(path)
    try:
        doc = load_yaml(path.read_text(encoding="utf-8"), rel)
    except ProblemsError as err:
        raise ScenarioError(str(err)) from None
    if not isinstance(doc, CommentedSeq):
        raise ScenarioError(f"{rel}:1: must be a list of scenarios (- name: ..., cycles: [...])")
    out, names = [], set()
    for i, sc in enumerate(doc):
        w = Where(rel, f"#{i + 1}", None)
        if not isinstance(sc, CommentedMap) or not isinstance(sc.get("name"), str):
            raise ScenarioError(f"{rel}:{doc.lc.item(i)[0] + 1}: scenario #{i + 1}: must be a mapping with a name")
        if sc["name"] in names:
            raise fail(w._replace(scenario=sc["name"]), sc, "name", "a second scenario of this name in the file")
        names.add(sc["name"])
        out.append(Scenario(rel, sc["name"], sc))
    return out


def run(sc: Scenario) -> list[str]:
    """Run one scenario; raises ScenarioError for bad content, AssertionError for a wrong verdict.
    Returns the transcript (one line per cycle)."""
    if sc.body is None:
        raise ScenarioError(sc.error)
    body = sc.body
    w = Where(sc.file, sc.name, None)
    for k in body:
        if k not in SCENARIO_KEYS:
            raise fail(w, body, k, f"unknown key (allowed: {', '.join(sorted(SCENARIO_KEYS))})")
    spec = build_spec(w, body)
    node = value(w, body, "node", str, "n2")
    if node not in spec.nodes:
        raise fail(w, body, "node", f"no node {node!r} (nodes: {', '.join(spec.nodes)})")
    roles = [r.name for r in spec.roles_for(node)]
    st = State(spec, node, members={n: Member(n, s.tier, s.priority, True, False) for n, s in spec.nodes.items()})
    cycles = body.get("cycles")
    if not isinstance(cycles, CommentedSeq) or not cycles:
        raise fail(w, body, "cycles" if "cycles" in body else None, "needs cycles: a list of at least one cycle")
    transcript: list[str] = []
    prev_at = -math.inf
    for i, cyc in enumerate(cycles):
        cw = w._replace(cycle=i + 1)
        if not isinstance(cyc, CommentedMap):
            raise ScenarioError(f"{sc.file}:{cycles.lc.item(i)[0] + 1}: scenario {sc.name!r}, cycle {i + 1}: "
                                f"must be a mapping (at, ..., expect)")
        for k in cyc:
            if k not in CYCLE_KEYS:
                raise fail(cw, cyc, k, f"unknown key (allowed: {', '.join(sorted(CYCLE_KEYS))})")
        if "at" not in cyc:
            raise fail(cw, cyc, None, "needs at: (seconds on this node's clock)")
        at = value(cw, cyc, "at", float)
        if at < prev_at:
            raise fail(cw, cyc, "at", f"goes back in time ({at} after {prev_at})")
        prev_at = at
        write = apply_inputs(cw, cyc, st, at, roles)
        polls = read_poll(cw, cyc, at, roles)
        if polls and not (not zk_read(st.stalled, spec.failsafe, st.connected) and st.held):
            raise fail(cw, cyc, "poll", "the agent polls only with failsafe: true, ZooKeeper unreachable "
                                        "(or a request of ours failed: ha_local rule 44), and a lease held")
        wants, want_events = read_expect(cw, cyc, roles)
        verdicts, events = cycle(st, at, write, polls)
        got = {v.role: v for v in verdicts}
        line = f"cycle {i + 1} at {at:g}: " + "; ".join(v.line() for v in verdicts) + \
            (f" [{', '.join(events)}]" if events else "")
        transcript.append(line)
        head = f"{cw.at(cyc)} (at {at:g})"
        history = "\n  ".join(transcript)
        if set(wants) != set(got):
            raise AssertionError(f"{head}: expect names roles {sorted(wants)}, the verdicts are for {sorted(got)}\n  {history}")
        for role, want in wants.items():
            check(head, history, got[role], want)
        if want_events is not None and want_events != events:
            raise AssertionError(f"{head}: events {events}, expected {want_events}\n  {history}")
    return transcript


def close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return isinstance(b, (int, float)) and abs(float(a) - float(b)) < 1e-6


def check(head: str, history: str, v: Verdict, want: Want) -> None:
    probs = []
    if v.action != want.action:
        probs.append(f"action {v.action.value}, expected {want.action.value}")
    if want.handoff is not ... and v.handoff_to != want.handoff:
        probs.append(f"hand-off to {v.handoff_to}, expected {want.handoff}")
    if want.reason is not None and str(want.reason) not in v.reason:
        probs.append(f"reason does not contain {want.reason!r}")
    for name, got, exp in (("wake", v.wake_at, want.wake), ("probe", v.probe_at, want.probe),
                           ("extend", v.extend_to, want.extend)):
        if exp is not ... and not close(got, exp):
            probs.append(f"{name} {got}, expected {exp}")
    if probs:
        raise AssertionError(f"{head}: {v.role}: {'; '.join(probs)} -- verdict: {v.line()}\n  {history}")


def all_scenarios() -> Iterator[Scenario]:
    for path in sorted(HERE.glob("*.yml")):
        try:
            yield from load(path)
        except ScenarioError as err:  # one failing test for the file, not a collection error
            yield Scenario(str(path.relative_to(HERE.parents[1])), "(does not load)", None, str(err))


SCENARIOS = list(all_scenarios())


@pytest.mark.parametrize("sc", SCENARIOS, ids=[f"{Path(s.file).stem}: {s.name}" for s in SCENARIOS])
def test_scenario(sc: Scenario) -> None:
    try:
        run(sc)
        problem = ""
    except (ScenarioError, AssertionError) as err:
        problem = str(err)
    if problem:  # outside the except: no "during handling of the above exception" noise
        pytest.fail(problem, pytrace=False)


def test_there_are_enough_scenarios_in_every_group() -> None:
    by_file: dict[str, int] = {}
    for s in SCENARIOS:
        by_file[Path(s.file).stem] = by_file.get(Path(s.file).stem, 0) + 1
    assert len(SCENARIOS) >= 40, by_file
    for group in ("takeover", "handoff", "late_acks", "maintenance", "placement", "scheduled", "failsafe",
                  "timing_promise"):
        assert by_file.get(group, 0) >= 3, (group, by_file)


BAD = [
    ("cycles:\n  - {at: 0, expect: wait}\n", "x.yml:1: must be a list of scenarios"),
    ("- name: a\n  cycles:\n    - {at: 0, lease: {holder: n1, term: 5}, expect: wait}\n    - {at: 1, leese: missing, expect: wait}\n",
     "x.yml:4: scenario 'a', cycle 2: leese: unknown key (allowed: at, connected,"),
    ("- name: a\n  cycles:\n    - {at: 0, lease: {holder: n1, term: 5}, expect: aquire}\n",
     "x.yml:3: scenario 'a', cycle 1: expect: unknown action 'aquire' (known: none, wait, acquire"),
    ("- name: a\n  cycles:\n    - {at: 0, lease: {holder: n1, term: 5}}\n",
     "x.yml:3: scenario 'a', cycle 1: every cycle needs `expect:`"),
    ("- name: a\n  cycles:\n    - {at: 1, expect: wait}\n    - {at: 0.5, expect: wait}\n",
     "x.yml:4: scenario 'a', cycle 2: at: goes back in time (0.5 after 1.0)"),
    ("- name: a\n  cycles:\n    - {at: 0, lease: {holder: n9, term: 5}, expect: wait}\n",
     "x.yml:3: scenario 'a', cycle 1: holder: no node 'n9' in the scenario"),
    ("- name: a\n  cycles:\n    - {at: 0, lease: {holder: n1, term: five}, expect: wait}\n",
     "x.yml:3: scenario 'a', cycle 1: term: must be int, got str 'five'"),
    ("- name: a\n  node: n7\n  cycles:\n    - {at: 0, expect: wait}\n", "x.yml:2: scenario 'a': node: no node 'n7'"),
    ("- name: a\n  cycles:\n    - {at: 0, expect: {store: {action: wait, wake_at: 1}}}\n",
     "x.yml:3: scenario 'a', cycle 1: wake_at: unknown key (allowed: action, extend, handoff, probe, reason, wake)"),
    ("- name: a\n  cycles:\n    - {at: 0, connected: false, poll: {answers: {}}, expect: wait}\n",
     "x.yml:3: scenario 'a', cycle 1: poll: the agent polls only with failsafe: true"),
    ("- name: a\n  cycles: [{at: 0, expect: wait}\n", "x.yml:3: (yaml):"),
    ("- name: a\n  cycles:\n    - {at: 0, expect: wait}\n- name: a\n  cycles: []\n",
     "x.yml:4: scenario 'a': name: a second scenario of this name in the file"),
]


@pytest.mark.parametrize("text,want", BAD, ids=[w.split(": ", 1)[1][:50] for _, w in BAD])
def test_bad_scenario_content_names_file_line_and_cycle(tmp_path: Path, text: str, want: str) -> None:
    """A scenario file with bad content is one clear line, never a traceback or a silent pass."""
    path = tmp_path / "x.yml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        for sc in load(path):
            run(sc)
    msg = str(err.value).replace(str(tmp_path) + "/", "")
    assert msg.startswith(want), msg


def test_a_wrong_expectation_fails_naming_the_cycle_and_the_story(tmp_path: Path) -> None:
    """The runner checks every expected verdict: one wrong cycle fails with the transcript so far."""
    path = tmp_path / "x.yml"
    path.write_text("- name: a\n  cycles:\n    - {at: 0, lease: {holder: n1, term: 5}, expect: {store: {action: wait, wake: 1.0}}}\n"
                    "    - {at: 1.0, expect: wait}\n")
    with pytest.raises(AssertionError) as err:
        run(load(path)[0])
    msg = str(err.value).replace(str(tmp_path) + "/", "")
    assert msg.startswith("x.yml:4: scenario 'a', cycle 2 (at 1): store: action acquire, expected wait"), msg
    assert "cycle 1 at 0: store: wait (holder n1 term 5" in msg
