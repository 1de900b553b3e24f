"""Immutable snapshots of cluster state, and the tolerant decoders that build them from znodes.

Everything read from ZooKeeper passes through `decode_*` here: a rogue or buggy client can write
anything into a znode, so a malformed payload becomes "absent" plus a log line, never an
exception in the agent loop.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Iterable, Mapping, NamedTuple, TypedDict, TypeGuard

from ..config_digest import ConfigDigest, decode as decode_config
from ..timing import MAX_LEASE_S

log = logging.getLogger(__name__)


class Member(NamedTuple):
    """One agent's heartbeat: what it says about itself."""

    name: str
    tier: str
    priority: int
    healthy: bool  # may hold roles
    demote: bool  # must not hold roles (policy says demote)
    penalty: int = 0  # lowers candidacy (degraded RAID, queue growing ...)
    reasons: tuple[str, ...] = ()
    health: Mapping[str, Any] = {}
    heartbeat_age_s: float | None = None  # from znode mtime, for display only
    api: str | None = None
    config: ConfigDigest | None = None  # digests of its timing and roles (None: an older agent)

    @property
    def score(self) -> int:
        return self.priority - self.penalty


class Lease(NamedTuple):
    """The lease znode as last seen, plus when *this* process first saw that version."""

    role: str
    holder: str | None
    term: int  # the fencing token: +1 on every acquisition
    seq: int  # renewal counter of the current holder
    version: int  # znode version; -1 when the znode does not exist
    handoff_to: str | None = None
    observed_at: float = 0.0  # local CLOCK_BOOTTIME when this version was first seen
    mtime_ms: int = 0  # server wall clock of the last change, for display only
    zxid: int = 0  # the znode's mzxid: the identity observed_at is about (0: unknown)
    # the holder's validity promise, as written in the record: it acts until t_send + lease_s -
    # margin_s. None: a record of an older agent (or none readable; see Coordinator.snapshot)
    lease_s: float | None = None
    margin_s: float | None = None

    @property
    def exists(self) -> bool:
        return self.version >= 0

    @property
    def promise(self) -> tuple[float, float] | None:
        """(lease_s, margin_s) the holder wrote, or None when the record carries none."""
        return None if self.lease_s is None or self.margin_s is None else (self.lease_s, self.margin_s)


class Request(NamedTuple):
    role: str
    kind: str  # "switchover" | "failover"
    to: str | None
    by: str
    at: float  # wall-clock seconds, for display and expiry
    version: int = 0
    not_before: float | None = None  # a scheduled switchover: not acted on before this wall time

    def due(self, wall: float) -> bool:
        """Acted on now (0: unknown wall time, as in the pure tests: due)."""
        return self.not_before is None or not wall or wall >= self.not_before


class Constraint(NamedTuple):
    """An operator's placement constraint (Pacemaker's node standby and resource ban): `node`
    may not hold `role` (None: any role) until `until` (wall clock; None: until cleared)."""

    node: str
    role: str | None
    by: str
    at: float
    until: float | None = None

    @property
    def name(self) -> str:
        return constraint_name(self.node, self.role)

    def active(self, wall: float) -> bool:
        """In force at wall-clock time `wall` (0: unknown, as in the pure tests: in force)."""
        return self.until is None or not wall or wall < self.until

    def describe(self) -> str:
        what = f"standby {self.node}" if self.role is None else f"{self.node} banned from {self.role}"
        until = "until cleared" if self.until is None else f"until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.until))}"
        return f"{what} (by {self.by}, {until})"


def constraint_name(node: str, role: str | None) -> str:
    return f"standby@{node}" if role is None else f"ban@{role}@{node}"


class Cluster(NamedTuple):
    """Everything the decision function may look at, read in one go."""

    members: Mapping[str, Member]
    leases: Mapping[str, Lease]
    requests: Mapping[str, Request]
    maintenance: bool
    connected: bool = True  # False: this snapshot is stale (ZooKeeper unreachable)
    constraints: tuple[Constraint, ...] = ()


_last_warned: dict[str, bytes] = {}  # znode description -> the bad content we last warned about


def warn_malformed(what: str, raw: bytes | None, why: str) -> None:
    """Log a bad znode once per distinct content: the agent re-reads it every loop."""
    key = raw if raw is not None else b""
    if _last_warned.get(what) == key:
        log.debug("ignoring malformed %s: %s", what, why)
        return
    if len(_last_warned) > 1000:
        _last_warned.clear()
    _last_warned[what] = key
    log.warning("ignoring malformed %s: %s (%r)", what, why, key[:80])


def _json(raw: bytes | None, what: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # "[[[[..." nested past the stack
        warn_malformed(what, raw, str(err) or type(err).__name__)
        return None
    if not isinstance(data, dict):
        warn_malformed(what, raw, "not a JSON object")
        return None
    return data


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


#: fencing tokens stay exact as JSON numbers in any language and as float metrics; a scribbled
#: 10**400 made float() (the term gauge, math.isfinite) raise OverflowError in the agent loop
MAX_TERM = 2**53


def plausible_time(v: Any) -> TypeGuard[int | float]:
    """A plausible wall-clock time in seconds (huge ints overflow float(); NaN is valid JSON here)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return 0 < float(v) < 1e11
    except OverflowError:
        return False


def _promise_problem(data: dict[str, Any]) -> str | None:
    """lease_s/margin_s are optional (older agents write neither), but both or none, and sane:
    a candidate waits max(its own lease_s, the promised one), so a huge value would stall it."""
    if "lease_s" not in data and "margin_s" not in data:
        return None
    lease_s, margin_s = data.get("lease_s"), data.get("margin_s")
    if not (plausible_number(lease_s) and 0 < lease_s <= MAX_LEASE_S):
        return f"lease_s must be a number in (0, {MAX_LEASE_S:g}]"
    if not (plausible_number(margin_s) and 0 <= margin_s < lease_s):
        return "margin_s must be a number in [0, lease_s)"
    return None


def plausible_number(v: Any) -> TypeGuard[int | float]:
    """A finite int or float that float() takes (no bool, no 10**400, no NaN)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _lease_problem(data: dict[str, Any]) -> str | None:
    """Why a decoded lease object is not one our agents wrote, or None if it is well-formed."""
    holder = data.get("holder", ...)
    if holder is ... or not (holder is None or isinstance(holder, str) and holder):
        return "holder must be a node name or null"
    term = data.get("term")
    if not isinstance(term, int) or isinstance(term, bool) or not 0 <= term <= MAX_TERM:
        return "term must be an integer 0..2**53"
    seq = data.get("seq", 0)
    if not isinstance(seq, int) or isinstance(seq, bool):
        return "seq must be an integer"
    if not (data.get("handoff_to") is None or _str(data.get("handoff_to"))):
        return "handoff_to must be a node name or null"
    if holder is None and not _str(data.get("released_by")):
        # only a holder's release writes holder=null, and it always says who released
        return "a free lease must name released_by"
    return _promise_problem(data)


def decode_lease(role: str, raw: bytes | None, version: int, observed_at: float, mtime_ms: int = 0) -> Lease:
    """A malformed lease is treated as *held by nobody we know* ('?'), with its version, so the
    CAS still protects it: a candidate must wait a full lease period before overwriting it.
    Never read as free: a free lease may be taken at once, while the real holder still acts."""
    if raw is None:
        return Lease(role, None, 0, 0, -1, None, observed_at, mtime_ms)
    what = f"lease of role {role}"
    data = _json(raw, what)
    if data is not None:
        problem = _lease_problem(data)
        if problem is not None:
            warn_malformed(what, raw, problem)
            data = None
    if data is None:
        return Lease(role, "?", 0, 0, version, None, observed_at, mtime_ms)
    lease_s, margin_s = data.get("lease_s"), data.get("margin_s")
    return Lease(role, data["holder"], data["term"], data.get("seq", 0), version,
                 _str(data.get("handoff_to")), observed_at, mtime_ms, 0,
                 None if lease_s is None else float(lease_s), None if margin_s is None else float(margin_s))


def lease_term_hint(raw: bytes | None) -> int:
    """The highest plausible term in a (possibly malformed) lease, so that a fencing token
    never goes backwards after someone scribbled on the lease; 0 if none."""
    try:
        data = json.loads((raw or b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return 0
    term = data.get("term") if isinstance(data, dict) else None
    return term if isinstance(term, int) and not isinstance(term, bool) and 0 < term <= MAX_TERM else 0


class Promise(TypedDict):
    """The holder's validity promise, written into every lease record it writes (docs/safety.md)."""

    lease_s: float
    margin_s: float


def encode_lease(holder: str | None, term: int, seq: int, handoff_to: str | None = None, **extra: Any) -> bytes:
    return json.dumps({"holder": holder, "term": term, "seq": seq, "handoff_to": handoff_to, **extra}).encode()


def decode_member(name: str, raw: bytes | None, age_s: float | None = None) -> Member | None:
    what = f"member {name}"
    data = _json(raw, what)
    if data is None:
        if raw is None:
            warn_malformed(what, raw, "no data")
        return None
    tier = _str(data.get("tier"))
    if tier is None:
        warn_malformed(what, raw, "no tier")
        return None
    reasons = data.get("reasons")
    health = data.get("health")
    return Member(
        name=name,
        tier=tier,
        priority=_int(data.get("priority"), 0),
        healthy=data.get("healthy") is True,
        demote=data.get("demote") is True,
        penalty=_int(data.get("penalty")),
        reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
        health=health if isinstance(health, dict) else {},
        heartbeat_age_s=age_s,
        api=_str(data.get("api")),
        config=decode_config(data.get("config")),
    )


class MemberMemo:
    """decode_member for the agent's snapshot, which takes every member from the watch cache each
    loop (5/s) while each changes every `heartbeat_s`: the same bytes are decoded once (JSON and
    the config digest were a fifth of an idle agent's main loop, py-spy, docs/scale.md); only the
    age, which moves by itself, is set afresh. A malformed member stays None (warned once anyway)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[bytes | None, Member | None]] = {}

    def decode(self, name: str, raw: bytes | None, age_s: float | None = None) -> Member | None:
        last = self._last.get(name)
        if last is not None and last[0] == raw:
            m = last[1]
        else:
            m = decode_member(name, raw)
            self._last[name] = (raw, m)
        return None if m is None else m._replace(heartbeat_age_s=age_s)

    def keep(self, names: Iterable[str]) -> None:
        """Forget members no longer listed (a departed node, a rogue znode): the memo stays small."""
        names = set(names)
        for n in [n for n in self._last if n not in names]:
            del self._last[n]


def encode_member(m: Member) -> bytes:
    return json.dumps({
        "tier": m.tier, "priority": m.priority, "healthy": m.healthy, "demote": m.demote,
        "penalty": m.penalty, "reasons": list(m.reasons), "health": dict(m.health), "api": m.api,
        **({"config": m.config.to_json()} if m.config is not None else {}),
    }).encode()


def decode_request(role: str, raw: bytes | None, version: int = 0) -> Request | None:
    """A request we cannot read exactly is ignored: a garbled target must not become "any
    node", and a request without a time would never expire."""
    what = f"request for role {role}"
    data = _json(raw, what)
    if data is None:
        return None
    kind = data.get("kind")
    if kind not in ("switchover", "failover"):
        warn_malformed(what, raw, f"unknown kind {kind!r}")
        return None
    to = data.get("to")
    if not (to is None or _str(to)):
        warn_malformed(what, raw, "to must be a node name or null")
        return None
    at = data.get("at")
    if not plausible_time(at):
        warn_malformed(what, raw, "at must be a time (seconds since the epoch)")
        return None
    not_before = data.get("not_before")
    if not (not_before is None or plausible_time(not_before)):
        warn_malformed(what, raw, "not_before must be a time (seconds since the epoch) or null")
        return None
    return Request(role, kind, to, _str(data.get("by")) or "?", float(at), version,
                   None if not_before is None else float(not_before))


def parse_constraint_name(name: str) -> tuple[str, str | None] | None:
    """(node, role) of a constraint znode name; role None for a node standby."""
    parts = name.split("@")
    if parts[0] == "standby" and len(parts) == 2 and parts[1]:
        return parts[1], None
    if parts[0] == "ban" and len(parts) == 3 and parts[1] and parts[2]:
        return parts[2], parts[1]
    return None


def decode_constraint(name: str, raw: bytes | None) -> Constraint | None:
    """A constraint znode: the name says what (`standby@NODE`, `ban@ROLE@NODE`), the body who
    and until when. One we cannot read exactly is ignored, with a warning."""
    what = f"constraint {name}"
    parsed = parse_constraint_name(name)
    if parsed is None:
        warn_malformed(what, raw, "name is neither standby@NODE nor ban@ROLE@NODE")
        return None
    node, role = parsed
    data = _json(raw, what)
    if data is None:
        return None
    at, until = data.get("at"), data.get("until")
    if not plausible_time(at) or not (until is None or plausible_time(until)):
        warn_malformed(what, raw, "at/until must be times (seconds since the epoch)")
        return None
    return Constraint(node, role, _str(data.get("by")) or "?", float(at), None if until is None else float(until))


def encode_constraint(by: str, at: float, until: float | None) -> bytes:
    return json.dumps({"by": by, "at": at, "until": until}).encode()


def encode_request(kind: str, to: str | None, by: str, at: float, not_before: float | None = None) -> bytes:
    body: dict[str, Any] = {"kind": kind, "to": to, "by": by, "at": at}
    if not_before is not None:
        body["not_before"] = not_before
    return json.dumps(body).encode()
