"""Immutable snapshots of cluster state, and the tolerant decoders that build them from znodes.

Everything read from ZooKeeper passes through `decode_*` here: a rogue or buggy client can write
anything into a znode, so a malformed payload becomes "absent" plus a log line, never an
exception in the agent loop.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping, NamedTuple

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

    @property
    def exists(self) -> bool:
        return self.version >= 0


class Request(NamedTuple):
    role: str
    kind: str  # "switchover" | "failover"
    to: str | None
    by: str
    at: float  # wall-clock seconds, for display and expiry
    version: int = 0


class Cluster(NamedTuple):
    """Everything the decision function may look at, read in one go."""

    members: Mapping[str, Member]
    leases: Mapping[str, Lease]
    requests: Mapping[str, Request]
    maintenance: bool
    connected: bool = True  # False: this snapshot is stale (ZooKeeper unreachable)


def _json(raw: bytes | None, what: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        log.warning("ignoring malformed %s: %s", what, err)
        return None
    if not isinstance(data, dict):
        log.warning("ignoring malformed %s: not a JSON object", what)
        return None
    return data


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def decode_lease(role: str, raw: bytes | None, version: int, observed_at: float, mtime_ms: int = 0) -> Lease:
    """A malformed lease is treated as *held by nobody we know*, with its version, so the CAS
    still protects it: a candidate must wait a full lease period before overwriting it."""
    if raw is None:
        return Lease(role, None, 0, 0, -1, None, observed_at, mtime_ms)
    data = _json(raw, f"lease of role {role}")
    if data is None:
        return Lease(role, "?", 0, 0, version, None, observed_at, mtime_ms)
    term = _int(data.get("term"))
    return Lease(role, _str(data.get("holder")), max(term, 0), _int(data.get("seq")), version,
                 _str(data.get("handoff_to")), observed_at, mtime_ms)


def encode_lease(holder: str | None, term: int, seq: int, handoff_to: str | None = None, **extra: Any) -> bytes:
    return json.dumps({"holder": holder, "term": term, "seq": seq, "handoff_to": handoff_to, **extra}).encode()


def decode_member(name: str, raw: bytes | None, age_s: float | None = None) -> Member | None:
    data = _json(raw, f"member {name}")
    if data is None:
        return None
    tier = _str(data.get("tier"))
    if tier is None:
        log.warning("ignoring member %s: no tier", name)
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
    )


def encode_member(m: Member) -> bytes:
    return json.dumps({
        "tier": m.tier, "priority": m.priority, "healthy": m.healthy, "demote": m.demote,
        "penalty": m.penalty, "reasons": list(m.reasons), "health": dict(m.health), "api": m.api,
    }).encode()


def decode_request(role: str, raw: bytes | None, version: int = 0) -> Request | None:
    data = _json(raw, f"request for role {role}")
    if data is None:
        return None
    kind = data.get("kind")
    if kind not in ("switchover", "failover"):
        log.warning("ignoring request for role %s: unknown kind %r", role, kind)
        return None
    at = data.get("at")
    return Request(role, kind, _str(data.get("to")), _str(data.get("by")) or "?",
                   float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else 0.0, version)


def encode_request(kind: str, to: str | None, by: str, at: float) -> bytes:
    return json.dumps({"kind": kind, "to": to, "by": by, "at": at}).encode()
