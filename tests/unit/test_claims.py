"""The dual-holder checker: claim intervals from claims logs, and overlaps between them.

Every integration test and the election benchmark trust this to say "0 dual holders", so it must
demonstrably find the overlaps that exist, and only those."""

from __future__ import annotations

import json
from pathlib import Path

from hacluster.agent.claims import Claim, claims, overlaps, read_events


def ev(t: float, node: str, event: str, role: str = "store", **kw: object) -> dict:
    return {"t": t, "node": node, "role": role, "event": event, **kw}


def test_detects_a_second_holder_before_the_first_ends() -> None:
    events = [ev(0.0, "n1", "acquired", term=1, until=0.7), ev(0.2, "n1", "renewed", term=1, until=0.9),
              ev(0.8, "n2", "acquired", term=2, until=1.5)]
    bad = overlaps(claims(events))
    assert len(bad) == 1
    a, b = bad[0]
    assert (a.node, a.start, a.end) == ("n1", 0.0, 0.9)
    assert (b.node, b.term, b.start) == ("n2", 2, 0.8)


def test_handover_exactly_at_the_deadline_is_not_an_overlap() -> None:
    events = [ev(0.0, "n1", "acquired", term=1, until=0.7), ev(0.7, "n2", "acquired", term=2, until=1.4)]
    assert overlaps(claims(events)) == []
    # ... but a microsecond earlier it is
    events[1]["t"] = 0.699999
    assert len(overlaps(claims(events))) == 1


def test_release_and_demotion_end_a_claim_early() -> None:
    events = [ev(0.0, "n1", "acquired", term=1, until=0.7), ev(0.1, "n1", "released", term=1),
              ev(0.15, "n2", "acquired", term=2, until=0.85), ev(0.3, "n2", "demoted", term=2, reason="x"),
              ev(0.31, "n3", "acquired", term=3, until=1.0)]
    cl = claims(events)
    assert [(c.node, c.start, c.end) for c in cl] == [("n1", 0.0, 0.1), ("n2", 0.15, 0.3), ("n3", 0.31, 1.0)]
    assert overlaps(cl) == []
    # the demotion logged late (a frozen agent) does not stretch the claim past its deadline
    late = [ev(0.0, "n1", "acquired", term=1, until=0.7), ev(2.5, "n1", "demoted", term=1),
            ev(1.0, "n2", "acquired", term=2, until=1.7)]
    assert overlaps(claims(late)) == []
    assert [c.end for c in claims(late) if c.node == "n1"] == [0.7]


def test_a_killed_holder_is_bounded_by_its_deadline() -> None:
    events = [ev(0.0, "n1", "acquired", term=1, until=0.7), ev(0.2, "n1", "renewed", term=1, until=0.9)]
    assert claims(events) == [Claim("n1", "store", 1, 0.0, 0.9)]
    assert claims(events, now=0.5) == [Claim("n1", "store", 1, 0.0, 0.5)]
    events.append(ev(0.95, "n2", "acquired", term=2, until=1.65))
    assert overlaps(claims(events)) == []
    events.append(ev(0.85, "n3", "acquired", term=2, until=1.55))  # while n1's renewed lease ran
    assert [(a.node, b.node) for a, b in overlaps(claims(events))] == [("n1", "n3"), ("n3", "n2")]


def test_late_renewal_never_shortens_and_stale_until_is_ignored() -> None:
    events = [ev(0.0, "n1", "acquired", term=1, until=0.7), ev(0.2, "n1", "renewed", term=1, until=0.6)]
    assert claims(events)[0].end == 0.7


def test_same_node_reacquiring_is_not_a_dual_holder() -> None:
    events = [ev(0.0, "n1", "acquired", term=1, until=0.7), ev(0.5, "n1", "acquired", term=2, until=1.2)]
    cl = claims(events)
    assert [(c.term, c.start, c.end) for c in cl] == [(1, 0.0, 0.5), (2, 0.5, 1.2)]
    assert overlaps(cl) == []


def test_roles_are_independent() -> None:
    events = [ev(0.0, "n1", "acquired", role="store", until=0.7), ev(0.1, "n2", "acquired", role="fallback", until=0.8)]
    assert overlaps(claims(events)) == []
    events.append(ev(0.2, "n3", "acquired", role="fallback", until=0.9))
    assert [(a.role, a.node, b.node) for a, b in overlaps(claims(events))] == [("fallback", "n2", "n3")]


def test_a_long_claim_overlapping_a_later_short_one_is_found() -> None:
    """Sorted by start, a long claim must still be compared with everything that starts inside it."""
    events = [ev(0.0, "n1", "acquired", until=10.0), ev(1.0, "n2", "acquired", until=2.0), ev(2.0, "n2", "released"),
              ev(5.0, "n3", "acquired", until=6.0)]
    assert sorted((a.node, b.node) for a, b in overlaps(claims(events))) == [("n1", "n2"), ("n1", "n3")]


def test_a_claim_that_ran_out_before_it_was_logged_is_no_claim() -> None:
    """An acquisition acknowledged after its own deadline (a freeze mid-acquire) never held anything."""
    events = [ev(0.0, "n1", "acquired", until=10.0), ev(3.0, "n2", "acquired", until=2.5), ev(3.0, "n2", "demoted")]
    assert overlaps(claims(events)) == []


def test_read_events_merges_logs_and_skips_torn_lines(tmp_path: Path) -> None:
    a, b = tmp_path / "claims-n1.jsonl", tmp_path / "claims-n2.jsonl"
    a.write_text(json.dumps(ev(0.0, "n1", "acquired", until=0.7)) + "\n" + '{"t": 0.5, "node": "n1", "ro')  # SIGKILL
    b.write_text("\n".join(json.dumps(e) for e in [ev(0.6, "n2", "acquired", until=1.3), {"t": 1, "junk": True}, [1]]))
    events = read_events([a, b, tmp_path / "missing.jsonl"])
    assert [(e["t"], e["node"]) for e in events] == [(0.0, "n1"), (0.6, "n2")]
    assert len(overlaps(claims(events))) == 1
