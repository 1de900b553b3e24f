"""`postqueue -j` parser (real output, garbage, property test) and the queue check's judgement."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hacluster.health.queue import (SHAPE_COLUMNS, QueueCheck, QueueShape, QueueSnapshot, age_bucket, format_shape,
                                    parse_postqueue_json, queue_view, recipient_domain, shape_view)

# Captured from `postqueue -c DIR -j` of a real Postfix 3.7.11 instance (relayhost [127.0.0.1]:1,
# nothing listening; one message put on hold with postsuper -h).
REAL = """\
{"queue_name": "deferred", "queue_id": "0F800164246", "arrival_time": 1795739108, "message_size": 250, "forced_expire": false, "sender": "a@example.org", "recipients": [{"address": "x@example.com", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:1: Connection refused"}, {"address": "u1@example.net", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:1: Connection refused"}]}
{"queue_name": "deferred", "queue_id": "109C1164247", "arrival_time": 1795739108, "message_size": 250, "forced_expire": false, "sender": "a@example.org", "recipients": [{"address": "x@example.com", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:1: Connection refused"}, {"address": "u2@example.net", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:1: Connection refused"}]}
{"queue_name": "hold", "queue_id": "0F30B164245", "arrival_time": 1795739108, "message_size": 250, "forced_expire": false, "sender": "a@example.org", "recipients": [{"address": "x@example.com", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:1: Connection refused"}, {"address": "u0@example.net", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:1: Connection refused"}]}
"""
REFUSED = "connect to 127.0.0.1[127.0.0.1]:1: Connection refused"


def test_real_output() -> None:
    snap = parse_postqueue_json(REAL, now=1795739108 + 90)
    assert snap == QueueSnapshot(
        counts={"deferred": 2, "hold": 1}, total=3, oldest_arrival=1795739108.0, oldest_age_s=90.0,
        top_deferral_reasons=((REFUSED, 6),), bad_lines=0,
        # 90 s old: the 0-5 minute column; every message has one recipient in each domain
        shape=QueueShape(total=(3, 0, 0, 0, 0, 0, 0, 0), rows=(("example.com", (3, 0, 0, 0, 0, 0, 0, 0)),
                                                              ("example.net", (3, 0, 0, 0, 0, 0, 0, 0))),
                         other=None, destinations=2))


def msg(queue: str, arrival: object, *reasons: object) -> str:
    return json.dumps({"queue_name": queue, "queue_id": "X", "arrival_time": arrival,
                       "recipients": [{"address": "a@b", **({"delay_reason": r} if r is not None else {})}
                                      for r in reasons]})


@pytest.mark.parametrize(
    "text,counts,oldest,reasons,bad",
    [
        ("", {}, None, (), 0),
        ("\n\n", {}, None, (), 0),
        (msg("active", 100) + "\n" + msg("incoming", 50) + "\n" + msg("maildrop", 70),
         {"active": 1, "incoming": 1, "maildrop": 1}, 50.0, (), 0),
        # garbage lines are counted and skipped
        ("postqueue: warning: Mail system is down\n" + msg("deferred", 10, "r1") + "\n{not json\n[1,2]\n\"str\"\n",
         {"deferred": 1}, 10.0, (("r1", 1),), 4),
        # missing / wrong-typed fields
        (json.dumps({"queue_id": "A"}) + "\n" + json.dumps({"queue_name": 5}) + "\n" + json.dumps({"queue_name": ""}),
         {}, None, (), 3),
        (msg("deferred", "yesterday", None, 7, "") + "\n" + msg("deferred", True) + "\n" + msg("deferred", float("nan")),
         {"deferred": 3}, None, (), 0),
        (json.dumps({"queue_name": "deferred", "recipients": "nobody"}) + "\n"
         + json.dumps({"queue_name": "deferred", "recipients": [1, None, {"delay_reason": ["x"]}]}),
         {"deferred": 2}, None, (), 0),
        # ranking: count desc, then text; top 5 only
        ("\n".join(msg("deferred", 1, *([f"r{i}"] * i)) for i in range(1, 8)),
         {"deferred": 7}, 1.0, (("r7", 7), ("r6", 6), ("r5", 5), ("r4", 4), ("r3", 3)), 0),
        ("\n".join([msg("deferred", 1, "b"), msg("deferred", 1, "a")]), {"deferred": 2}, 1.0, (("a", 1), ("b", 1)), 0),
        ("[" * 100000, {}, None, (), 1),  # deep nesting -> RecursionError inside json, counted as bad
    ],
)
def test_parser_cases(text: str, counts: dict, oldest: float | None, reasons: tuple, bad: int) -> None:
    snap = parse_postqueue_json(text, now=1000.0)
    assert dict(snap.counts) == counts
    assert snap.total == sum(counts.values())
    assert snap.oldest_arrival == oldest
    assert snap.oldest_age_s == (None if oldest is None else 1000.0 - oldest)
    assert snap.top_deferral_reasons == reasons
    assert snap.bad_lines == bad


def test_long_reason_is_truncated() -> None:
    snap = parse_postqueue_json(msg("deferred", 1, "x" * 500), now=2)
    assert snap.top_deferral_reasons == (("x" * 200, 1),)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["queue_name", "arrival_time", "recipients", "delay_reason", "address", "x"]), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=400), st.lists(_JSONISH.map(json.dumps), max_size=8).map("\n".join)))
def test_parser_never_raises(text: str) -> None:
    snap = parse_postqueue_json(text, now=0.0)
    assert snap.total == sum(snap.counts.values()) >= 0
    assert snap.bad_lines >= 0


def snapshot(total: int, age: float | None = None) -> QueueSnapshot:
    return QueueSnapshot({"deferred": total} if total else {}, total, None, age, (), 0)


@pytest.mark.parametrize(
    "samples,severity,growing,detail",
    [
        # (seconds, total) sampled every step; window 300 s, growth_min 100
        ([(0, 0)], "ok", False, "queue empty"),
        ([(0, 10), (100, 500)], "ok", False, "queue deferred=500"),  # only 100 s of history: no trend yet
        ([(0, 10), (100, 60), (160, 150)], "warn", True, "queue deferred=150: grew by 140 in 300s"),
        ([(0, 10), (200, 90)], "ok", False, "queue deferred=90"),
        ([(0, 500), (200, 520), (400, 700)], "warn", True, "queue deferred=700: grew by 180 in 300s"),
        ([(0, 500), (400, 520), (800, 700)], "ok", False, "queue deferred=700"),  # samples too far apart
        ([(0, 2000)], "warn", False, "queue deferred=2000: 2000 messages > 1000"),
    ],
)
def test_judge_growth_and_limits(samples: list, severity: str, growing: bool, detail: str) -> None:
    now = [0.0]
    check = QueueCheck(clock=lambda: now[0])
    for t, total in samples:
        now[0] = float(t)
        res = check.judge(snapshot(total), 0.01)
    assert (res.severity, res.ok, res.data["growing"], res.detail) == (severity, True, growing, detail)


def test_judge_old_message() -> None:
    res = QueueCheck().judge(snapshot(3, age=5 * 3600.0), 0.0)
    assert res.severity == "warn" and res.data["too_old"] and res.detail.endswith("oldest 5.0 h > 4.0 h")


def test_missing_postqueue_binary_is_a_warning() -> None:
    res = QueueCheck(postqueue="/nonexistent/postqueue")(1.0)
    assert (res.ok, res.severity) == (False, "warn") and res.detail.startswith("cannot run postqueue")


# --------------------------------------------------------------------------- qshape


@pytest.mark.parametrize("age_s,col", [
    (-30, "0-5"), (0, "0-5"), (299.9, "0-5"), (300, "5-10"), (599, "5-10"), (600, "10-20"), (1199, "10-20"),
    (1200, "20-40"), (2400, "40-80"), (4800, "80-160"), (9600, "160-320"), (19199, "160-320"), (19200, "320+"),
    (10 * 86400, "320+"),
])
def test_age_buckets_are_qshapes(age_s: float, col: str) -> None:
    assert SHAPE_COLUMNS[age_bucket(age_s)] == col


@pytest.mark.parametrize("address,domain", [
    ("user@Example.COM", "example.com"), ("a@b@c.example", "c.example"), ("postmaster", "(local)"), ("", "(local)"),
    (None, "(local)"), (7, "(local)"), ("x@", "(local)"), ("x@[192.0.2.1]", "192.0.2.1"), ("x@" + "d" * 300, "d" * 100),
])
def test_recipient_domain(address: object, domain: str) -> None:
    assert recipient_domain(address) == domain


def qmsg(arrival: float, *rcpts: str, queue: str = "deferred") -> str:
    return json.dumps({"queue_name": queue, "arrival_time": arrival, "recipients": [{"address": r} for r in rcpts]})


def test_shape_counts_messages_per_domain_and_age_like_qshape() -> None:
    now = 100000.0
    lines = [
        qmsg(now - 60, "a@one.example", "b@one.example"),  # one message, two recipients, one domain: counts once
        qmsg(now - 7 * 60, "a@one.example", "c@two.example"),  # counts under both domains, once in TOTAL
        qmsg(now - 25 * 60, "x@two.example", queue="hold"),  # every queue counts
        qmsg(now - 400 * 60, "y@three.example", queue="active"),
        json.dumps({"queue_name": "deferred", "recipients": [{"address": "z@four.example"}]}),  # no arrival: left out
    ]
    shape = parse_postqueue_json("\n".join(lines), now=now).shape
    assert shape == QueueShape(
        total=(1, 1, 0, 1, 0, 0, 0, 1),
        rows=(("one.example", (1, 1, 0, 0, 0, 0, 0, 0)), ("two.example", (0, 1, 0, 1, 0, 0, 0, 0)),
              ("three.example", (0, 0, 0, 0, 0, 0, 0, 1))),
        other=None, destinations=3)
    assert shape.to_json()["total"] == [4, 1, 1, 0, 1, 0, 0, 0, 1]
    assert shape.to_json()["rows"][0] == ["one.example", 2, 1, 1, 0, 0, 0, 0, 0, 0]


def test_shape_keeps_the_busiest_destinations_and_sums_the_rest() -> None:
    lines = [qmsg(0, f"u@d{i:02d}.example") for i in range(30) for _ in range(i % 4 + 1)]
    snap = parse_postqueue_json("\n".join(lines), now=10, shape_top=3)
    shape = snap.shape
    assert [d for d, _ in shape.rows] == ["d03.example", "d07.example", "d11.example"]  # 4 each, then by name
    assert shape.destinations == 30 and sum(shape.total) == len(lines) == 73
    assert sum(shape.other) == 73 - 12  # the other 27 destinations, summed
    data = json.dumps(snap.to_json())
    assert len(data) < 1500, "the heartbeat carries this every loop: it must stay small"


def test_heartbeat_size_is_bounded_whatever_the_queue_holds() -> None:
    """10000 messages to 5000 long domains with 5000 distinct long reasons: a few kB at most."""
    lines = [json.dumps({"queue_name": "deferred", "arrival_time": i, "recipients": [
        {"address": f"u@{i % 5000}{'x' * 200}.example", "delay_reason": f"reason {i} " + "r" * 400}]})
        for i in range(10000)]
    snap = parse_postqueue_json("\n".join(lines), now=20000)
    assert snap.total == 10000 and snap.shape.destinations == 5000
    assert len(json.dumps(snap.to_json())) < 4000


def test_queue_view_reads_the_published_check_and_tolerates_garbage() -> None:
    snap = parse_postqueue_json(REAL, now=1795739108 + 90)
    res = QueueCheck(clock=lambda: 0.0).judge(snap, 0.01).to_json()
    v = queue_view({"queue": res})
    assert v["total"] == 3 and v["counts"] == {"deferred": 2, "hold": 1} and v["oldest_age_s"] == 90.0
    assert v["top_deferral_reasons"] == [[REFUSED, 6]] and v["ok"] is True
    assert v["shape"]["rows"] == [["example.com", 3, 3, 0, 0, 0, 0, 0, 0, 0], ["example.net", 3, 3, 0, 0, 0, 0, 0, 0, 0]]
    lines = format_shape(v["shape"])
    assert lines[0].split() == ["T", *SHAPE_COLUMNS]
    assert lines[1].split() == ["TOTAL", "3", "3", "0", "0", "0", "0", "0", "0", "0"]
    assert lines[2].split()[0] == "example.com"
    assert queue_view({}) is None and queue_view({"queue": "x"}) is None
    weird = queue_view({"queue": {"data": {"counts": [1], "total": "3", "top_deferral_reasons": [[1, 2], "x"],
                                           "shape": {"columns": ["a"], "total": [1, -1], "rows": [["d", 1, 1]]}}}})
    assert weird["total"] is None and weird["counts"] == {} and weird["top_deferral_reasons"] == [] and weird["shape"] is None
    assert shape_view({"columns": ["a"], "total": [1, 1], "rows": [["d", 1, 1], ["bad", 1], [3, 1, 1], ["b", True, 1]],
                       "other": "no"}) == {"columns": ["a"], "total": [1, 1], "rows": [["d", 1, 1]], "other": None,
                                           "destinations": 1}


@settings(max_examples=200, deadline=None)
@given(_JSONISH)
def test_queue_view_never_raises(data: object) -> None:
    v = queue_view({"queue": {"severity": "ok", "data": data}})
    assert v is not None and (v["shape"] is None or isinstance(v["shape"]["rows"], list))
    shape_view(data)
