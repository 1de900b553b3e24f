"""The mail ledger's pure parts: Message-ID parsing, Maildir scans (replicas and shared bases are
one delivery, a second unique name is a duplicate), the counts, queue diagnostics."""

from __future__ import annotations

import ast
import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from hacluster_lab.lab.mailload import SENDER, Delivery, Submission, compute_ledger, distinct_deliveries, grep_queues, maildir_unique, queue_files, read_msgid, scan_maildirs


def _msg(mid: str, body: str = "hello\n") -> bytes:
    return f"Return-Path: <a@b>\nReceived: from x\nMessage-ID: {mid}\nSubject: s\n\n{body}".encode()


def _deliver(base: Path, box: str, name: str, mid: str, sub: str = "new") -> Path:
    d = base / box / sub
    d.mkdir(parents=True, exist_ok=True)
    (base / box / "tmp").mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(_msg(mid))
    return p


def _sub(mid: str, accepted: bool = True, ambiguous: bool = False, target: str = "192.0.2.11") -> Submission:
    return Submission(mid, "user@lab.example", target, accepted, 250 if accepted else None, time.monotonic(),
                      ambiguous=ambiguous)


def test_read_msgid_headers_only(tmp_path: Path) -> None:
    p = tmp_path / "m"
    p.write_bytes(b"Subject: x\r\nmessage-id:   <a.1@client.lab.example>\r\n\r\nMessage-ID: <body@x>\r\n")
    assert read_msgid(p) == "<a.1@client.lab.example>"
    p.write_bytes(b"Subject: x\n\nMessage-ID: <only-in-body@x>\n")
    assert read_msgid(p) is None
    assert read_msgid(tmp_path / "missing") is None


def test_maildir_unique_strips_flags() -> None:
    assert maildir_unique("1700000000.V801I12M3.store1,S=2000:2,S") == "1700000000.V801I12M3.store1,S=2000"
    assert maildir_unique("1700000000.V801I12M3.store1") == "1700000000.V801I12M3.store1"


def test_scan_replica_and_move_are_one_delivery_second_name_is_duplicate(tmp_path: Path) -> None:
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    _deliver(s1, "user", "100.A.store1", "<a@x>")
    _deliver(s2, "user", "100.A.store1:2,S", "<a@x>", sub="cur")  # replica, already read
    _deliver(s1, "user", "101.B.store1", "<b@x>")
    _deliver(s2, "user", "205.C.store2", "<b@x>")  # a second delivery of b
    _deliver(s1, "alice", "102.D.store1", "<other@x>")
    found = scan_maildirs({"store1": s1, "store2": s2}, wanted={"<a@x>", "<b@x>", "<c@x>"})
    assert set(found) == {"<a@x>", "<b@x>"}
    assert distinct_deliveries(found["<a@x>"]) == 1
    assert distinct_deliveries(found["<b@x>"]) == 2
    led = compute_ledger([_sub("<a@x>"), _sub("<b@x>"), _sub("<c@x>")], found)
    assert (led.accepted, led.delivered_once, led.lost, led.duplicates) == (3, 1, 1, 1)
    assert led.lost_msgids == ["<c@x>"] and led.duplicate_msgids == ["<b@x>"]
    assert sorted((c["store"], c["unique"]) for c in led.duplicate_copies["<b@x>"]) == [
        ("store1", "101.B.store1"), ("store2", "205.C.store2")]  # where both copies landed
    assert list(led.duplicate_copies) == ["<b@x>"]  # the replica of a is one delivery, not a copy
    assert led.by_store == {"store1": 2, "store2": 2}


def test_shared_base_is_scanned_once(tmp_path: Path) -> None:
    base = tmp_path / "spool"
    _deliver(base, "user", "1.X.store1", "<a@x>")
    found = scan_maildirs({"store1": base, "store2": base})
    assert [d.store for d in found["<a@x>"]] == ["store1+store2"]
    led = compute_ledger([_sub("<a@x>")], found, holder="store2")
    assert led.stranded == 0 and led.delivered_once == 1


def test_not_accepted_ambiguous_stranded_late() -> None:
    t_late = 1000.0
    found = {
        "<a@x>": [Delivery("store1", "user", "1.a", "/x", 900.0)],
        "<b@x>": [Delivery("store2", "user", "1.b", "/y", 1001.0)],  # only on the old holder, after power-on
        "<amb@x>": [Delivery("store1", "user", "1.c", "/z", 950.0)],  # no 250, but the server had queued it
    }
    subs = [_sub("<a@x>"), _sub("<b@x>"), _sub("<amb@x>", accepted=False, ambiguous=True),
            _sub("<refused@x>", accepted=False)]
    led = compute_ledger(subs, found, holder="store1", late_after=t_late)
    d = led.to_dict()
    assert d["accepted"] == 2 and d["not_accepted"] == 2 and d["ambiguous"] == 1
    assert d["not_accepted_delivered"] == 1 and d["lost"] == 0 and d["duplicates"] == 0
    assert d["stranded"] == 1 and d["stranded_msgids"] == ["<b@x>"] and d["late"] == 1
    assert d["delivered_once"] == 2


def test_queue_files_and_grep(tmp_path: Path) -> None:
    q = tmp_path / "q"
    (q / "active" / "A").mkdir(parents=True)
    (q / "deferred" / "B").mkdir(parents=True)
    (q / "pid").mkdir()
    (q / "active" / "A" / "A1B2").write_bytes(b"\x00junk Message-ID: <lost@x>\x00")
    (q / "deferred" / "B" / "B3C4").write_bytes(b"other")
    (q / "incoming").mkdir()
    (q / "incoming" / "CUT1").write_bytes(b"Message-ID: <cut@x>")  # a transfer cut mid-DATA: mode 0600
    for f in (q / "active" / "A" / "A1B2", q / "deferred" / "B" / "B3C4"):
        f.chmod(0o700)  # complete queue files
    (q / "incoming" / "CUT1").chmod(0o600)
    (q / "pid" / "master.pid").write_text("1")
    assert queue_files({"store1": q, "none": tmp_path / "nope"}) == {"store1": 2, "none": 0}
    assert grep_queues({"store1": q}, {"<lost@x>", "<gone@x>"}) == {"store1": ["<lost@x>"]}


def test_submission_from_dict_ignores_unknown_keys() -> None:
    s = Submission.from_dict({"msgid": "<a@x>", "rcpt": "u@x", "target": None, "accepted": False, "code": None,
                              "t": 1.0, "extra": 1})
    assert s.attempts == 1 and not s.ambiguous
    with pytest.raises(FrozenInstanceError):
        s.accepted = True  # type: ignore[misc]


def test_sender_script_is_python() -> None:
    ast.parse(SENDER)
