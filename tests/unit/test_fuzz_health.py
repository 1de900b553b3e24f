"""Property tests for the health parsers, beyond test_health_mdstat.py / test_health_queue.py
(which feed random text and mdstat-ish pieces): here hypothesis *edits real samples* (the procfs
mdstat fixtures, mdadm --detail, real postqueue -j output), so the parsers get past their first
line, and the checks built on them are driven end to end.

Properties: the parsers give a result or MdstatError naming SOURCE:LINE within the text; the
postqueue summary is exactly what the valid lines say; RaidCheck/QueueCheck turn any garbage
into a CheckResult (a parse failure is ok=False "warn", never "crit": not knowing must not demote
a working store), never an exception.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hacluster.health.mdstat import STATES, MdstatError, parse_mdadm_detail, parse_mdstat
from hacluster.health.queue import QueueCheck, parse_postqueue_json
from hacluster.health.raid import RaidCheck

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mdstat"
MDSTAT = {p.name: p.read_text() for p in sorted(FIXTURES.glob("*.mdstat"))}
DETAIL = (FIXTURES / "mdadm-detail-degraded.txt").read_text()
TOKENS = ["", " ", "\t", "[", "]", "(F)", "(S)", "(W)", "[UU]", "[U_]", "[_U]", "[2/1]", "[9/0]", "[0/0]", "%",
          "100.1%", "-5%", "=", "recovery", "resync", "check", "reshape", "DELAYED", "active", "inactive", "raid1",
          "raid7", "md0 : ", "md0", "/dev/md0:", " : ", ":", "State : ", "clean, degraded", "FAILED", "Not Started",
          "Raid Devices : 99", "Active Devices : -1", "99999999999999999999", "\u0663", "\x00", "\ufeff", "\n",
          "   0   8   1   0   active sync   /dev/sda1", "blocks", "super 1.2", "unused devices: <none>"]

text_edit = st.tuples(st.sampled_from(["delete", "duplicate", "splice", "replace", "swap"]), st.integers(0, 200),
                      st.integers(0, 120), st.sampled_from(TOKENS) | st.text(max_size=6))


def mutate(text: str, edits: list[tuple[str, int, int, str]]) -> str:
    lines = text.splitlines()
    for op, i, col, tok in edits:
        if not lines:
            lines = [tok]
            continue
        i %= len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "splice":
            lines[i] = lines[i][:col] + tok + lines[i][col:]
        elif op == "replace":
            words = lines[i].split(" ")
            words[col % len(words)] = tok
            lines[i] = " ".join(words)
        else:
            j = col % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines) + "\n"


def check_arrays_or_located(parse, text: str) -> None:
    try:
        arrays = parse(text, source="<s>")
    except MdstatError as err:
        m = re.match(r"<s>:(\d+): \S", str(err))
        assert m, f"not SOURCE:LINE: {err}"
        assert 1 <= int(m[1]) <= max(1, len(text.splitlines())), (str(err), len(text.splitlines()))
        assert "\n" not in str(err)
        return
    names = [a.name for a in arrays]
    for a in arrays:
        assert a.state in STATES and a.name.startswith("md")
        assert 0 <= a.disks_active and (a.disks_active <= a.disks_total or a.state == "inactive")
        assert a.progress_pct is None or 0.0 <= a.progress_pct <= 100.0
        assert all(isinstance(d, str) and d for d in (*a.failed_devices, *a.spare_devices))
        json.dumps(a.to_json())
    if parse is parse_mdstat:
        assert len(names) == len(set(names))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(MDSTAT)), st.lists(text_edit, min_size=1, max_size=5))
def test_edited_real_mdstat(name: str, edits: list) -> None:
    check_arrays_or_located(parse_mdstat, mutate(MDSTAT[name], edits))


@settings(max_examples=300, deadline=None)
@given(st.lists(text_edit, min_size=1, max_size=5))
def test_edited_real_mdadm_detail(edits: list) -> None:
    check_arrays_or_located(parse_mdadm_detail, mutate(DETAIL, edits))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(MDSTAT)), st.lists(text_edit, max_size=4), st.binary(max_size=8))
def test_raid_check_never_raises_and_a_parse_failure_never_demotes(tmp_path: Path, name: str, edits: list, junk: bytes) -> None:
    f = tmp_path / "mdstat"
    f.write_bytes(mutate(MDSTAT[name], edits).encode() + junk)
    res = RaidCheck(str(f))(1.0)
    assert res.severity in ("ok", "warn", "crit")
    try:
        arrays = parse_mdstat(f.read_bytes().decode("utf-8", errors="replace"))
    except MdstatError:
        assert (res.severity, res.ok) == ("warn", False) and "cannot parse" in res.detail and str(f) in res.detail
        return
    bad = [a for a in arrays if a.state in ("failed", "inactive")]
    assert (res.severity == "crit") == bool(bad), (res, arrays)


# --------------------------------------------------------------------------- postqueue -j

REAL_QUEUE = [
    {"queue_name": "deferred", "queue_id": "0F800164246", "arrival_time": 1795739108, "message_size": 250,
     "forced_expire": False, "sender": "a@example.org",
     "recipients": [{"address": "x@example.com", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:1: Connection refused"}]},
    {"queue_name": "hold", "queue_id": "0F30B164245", "arrival_time": 1795739100, "message_size": 250,
     "forced_expire": False, "sender": "a@example.org", "recipients": [{"address": "u0@example.net"}]},
    {"queue_name": "active", "queue_id": "1A", "arrival_time": 1795739200, "message_size": 9, "forced_expire": False,
     "sender": "", "recipients": []},
]
values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=8)
record_edit = st.tuples(st.integers(0, 2), st.sampled_from(["queue_name", "arrival_time", "recipients", "delay_reason",
                                                            "sender", "queue_id"]), values, st.booleans())
line_noise = st.sampled_from(["", "postqueue: warning: mail system is down", "{", "[" * 50_000, "null", "[]",
                              '{"queue_name": ""}', "\x00", "\udcff"[:0] + "\ufeff{}"])


def expected(records: list[object], now: float) -> tuple[dict[str, int], float | None]:
    counts: dict[str, int] = {}
    oldest = None
    for r in records:
        q = r.get("queue_name") if isinstance(r, dict) else None
        if not isinstance(q, str) or not q:
            continue
        counts[q] = counts.get(q, 0) + 1
        a = r.get("arrival_time")
        if isinstance(a, (int, float)) and not isinstance(a, bool) and a == a and abs(a) < 1e12:
            oldest = float(a) if oldest is None else min(oldest, float(a))
    return counts, oldest


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 2), record_edit, line_noise), max_size=12))
def test_edited_real_postqueue_output_is_summarised_exactly(items: list) -> None:
    lines: list[str] = []
    records: list[object] = []
    for it in items:
        if isinstance(it, int):
            rec = json.loads(json.dumps(REAL_QUEUE[it]))
        elif isinstance(it, tuple):
            i, key, value, drop = it
            rec = json.loads(json.dumps(REAL_QUEUE[i]))
            target = rec["recipients"][0] if key == "delay_reason" and rec["recipients"] else rec
            if drop:
                target.pop(key, None)
            else:
                target[key] = value
        else:
            lines.append(it)
            continue
        lines.append(json.dumps(rec))
        records.append(rec)
    text = "\n".join(lines)
    snap = parse_postqueue_json(text, now=1795739300.0)
    counts, oldest = expected(records, 1795739300.0)
    assert dict(snap.counts) == counts and snap.total == sum(counts.values())
    assert snap.oldest_arrival == oldest
    assert snap.oldest_age_s == (None if oldest is None else max(0.0, 1795739300.0 - oldest))
    nonblank = sum(1 for ln in text.splitlines() if ln.strip())
    assert snap.bad_lines == nonblank - snap.total
    ranks = [n for _, n in snap.top_deferral_reasons]
    assert ranks == sorted(ranks, reverse=True) and len(ranks) <= 5
    json.dumps(snap.to_json())
    # the check built on it judges whatever it got
    res = QueueCheck(clock=lambda: 1795739300.0).judge(snap, 0.01)
    assert res.severity in ("ok", "warn")
