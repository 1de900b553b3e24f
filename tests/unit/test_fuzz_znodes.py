"""Property tests for the znode decoders (hacluster/coord/model.py): whatever bytes a rogue or
buggy client writes, decoding gives a well-typed object or "absent" (None / a lease held by '?'),
never an exception; and what our own agents write always decodes back to itself.

The safety-relevant property: a lease payload decodes as *free* (holder None) only when it is
exactly what a holder's release writes; everything else malformed is "held by '?'", which a
candidate must wait out like a silent holder.
"""

from __future__ import annotations

import json
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hacluster.coord.model import (MAX_TERM, Lease, Member, Request, decode_lease, decode_member, decode_request, encode_lease,
                                   encode_member, encode_request, lease_term_hint)

KEYS = ["holder", "term", "seq", "handoff_to", "released_by", "tier", "priority", "healthy", "demote", "penalty",
        "reasons", "health", "api", "kind", "to", "by", "at", "lease_s", "margin_s", "config", "x"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
           | st.sampled_from(["node1", "store", "switchover", "failover", "", "?"]))
jsonish = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), c, max_size=6),
                       max_leaves=25)
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


def dumps(v: object) -> bytes:
    return json.dumps(v, allow_nan=True).encode()


DEEP = [b"[" * 100_000, b"{\"a\":" * 50_000, b"[" * 100_000 + b"]" * 100_000]

raw_payloads = st.one_of(
    st.binary(max_size=300),
    jsonish.map(dumps),
    # one of our own payloads with a field changed, dropped or added
    st.tuples(st.sampled_from(["lease", "member", "request"]), st.sampled_from(KEYS), jsonish, st.booleans()).map(
        lambda t: dumps(_mutate(*t))),
    st.sampled_from([b"", b"null", b"NaN", b"-Infinity", b"\xef\xbb\xbf{}", b"{\"term\": 1e999}", *DEEP]),
)


def _mutate(kind: str, key: str, value: object, drop: bool) -> dict:
    base = {"lease": json.loads(encode_lease("node1", 3, 1, lease_s=1.0, margin_s=0.3)),
            "member": json.loads(encode_member(Member("node1", "store", 100, True, False))),
            "request": json.loads(encode_request("switchover", "node2", "cli", 1.7e9))}[kind]
    if drop:
        base.pop(key, None)
    else:
        base[key] = value
    return base


def is_release(raw: bytes) -> bool:
    """Exactly the shape of a holder's release (encode_lease(None, term, 0, ..., released_by=X))."""
    try:
        d = json.loads(raw.decode())
    except (ValueError, RecursionError):
        return False
    return (isinstance(d, dict) and "holder" in d and d["holder"] is None and isinstance(d.get("term"), int)
            and not isinstance(d.get("term"), bool) and d["term"] >= 0 and isinstance(d.get("released_by"), str)
            and d["released_by"] != "")


@settings(max_examples=600, deadline=None)
@given(raw_payloads, st.integers(-1, 10**6))
@example(DEEP[0], 0)
@example(b'{"holder": "node1", "term": 1' + b"0" * 400 + b', "seq": 0}', 3)  # float() of it overflows
@example(dumps({"holder": "node1", "term": 2**53 + 1, "seq": 0}), 3)
def test_lease_decodes_to_a_lease_and_is_free_only_when_released(raw: bytes, version: int) -> None:
    lease = decode_lease("store", raw, version, 1.0, 5)
    assert isinstance(lease, Lease) and lease.version == version and lease.observed_at == 1.0
    assert isinstance(lease.term, int) and not isinstance(lease.term, bool) and 0 <= lease.term <= MAX_TERM
    float(lease.term)  # the term gauge
    assert isinstance(lease.seq, int) and not isinstance(lease.seq, bool)
    assert lease.holder is None or (isinstance(lease.holder, str) and lease.holder)
    assert lease.handoff_to is None or (isinstance(lease.handoff_to, str) and lease.handoff_to)
    if lease.holder is None:
        assert is_release(raw), raw[:200]
    hint = lease_term_hint(raw)
    assert isinstance(hint, int) and 0 <= hint <= MAX_TERM
    if lease.holder not in (None, "?"):
        assert hint == lease.term or lease.term == 0
    # a promise is both numbers or neither, and always one a candidate can wait out (rule 11)
    assert (lease.lease_s is None) == (lease.margin_s is None)
    if lease.promise is not None:
        assert isinstance(lease.lease_s, float) and 0 < lease.lease_s <= 3600 and 0 <= lease.margin_s < lease.lease_s


@settings(max_examples=600, deadline=None)
@given(raw_payloads | st.none(), names)
def test_member_decodes_to_a_member_or_none(raw: bytes | None, name: str) -> None:
    m = decode_member(name, raw, 0.5)
    if m is None:
        return
    assert isinstance(m, Member) and m.name == name and isinstance(m.tier, str) and m.tier
    assert all(isinstance(getattr(m, f), int) and not isinstance(getattr(m, f), bool) for f in ("priority", "penalty"))
    assert m.healthy in (True, False) and m.demote in (True, False)
    assert isinstance(m.reasons, tuple) and all(isinstance(r, str) for r in m.reasons)
    assert isinstance(m.health, dict) and (m.api is None or isinstance(m.api, str))
    assert isinstance(m.score, int)


@settings(max_examples=600, deadline=None)
@given(raw_payloads | st.none(), st.integers(0, 100))
@example(dumps({"kind": "switchover", "to": None, "at": 10**400}), 0)
@example(b'{"kind": "failover", "to": "n", "at": NaN}', 0)
def test_request_decodes_to_a_request_or_none(raw: bytes | None, version: int) -> None:
    r = decode_request("store", raw, version)
    if r is None:
        return
    assert isinstance(r, Request) and r.kind in ("switchover", "failover") and r.version == version
    assert r.to is None or (isinstance(r.to, str) and r.to)
    assert isinstance(r.at, float) and math.isfinite(r.at) and 0 < r.at < 1e11 and isinstance(r.by, str) and r.by


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), names), st.integers(0, MAX_TERM), st.integers(0, 2**62), st.one_of(st.none(), names), names)
def test_what_agents_write_reads_back_the_same(holder: str | None, term: int, seq: int, handoff: str | None, by: str) -> None:
    extra = {"released_by": by} if holder is None else {}
    lease = decode_lease("r", encode_lease(holder, term, seq, handoff, **extra), 4, 0.0)
    assert (lease.holder, lease.term, lease.seq, lease.handoff_to, lease.version) == (holder, term, seq, handoff, 4)
    assert lease_term_hint(encode_lease(holder, term, seq)) == term
    m = Member(by, "store", term % 1000, True, False, seq % 50, ("a", "b"), {"k": [1]}, None, None)
    assert decode_member(by, encode_member(m)) == m
    req = decode_request("r", encode_request("failover", handoff, by, 1e9 + term % 10**9), 2)
    assert req == Request("r", "failover", handoff, by, 1e9 + term % 10**9, 2)
