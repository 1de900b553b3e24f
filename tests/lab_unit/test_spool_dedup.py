"""Duplicate suppression at delivery (hacluster.spool.dedup, hacluster.spool.deliver): the key, the
record's window, the never-lose rule (a record whose copy is gone lets the mail through), mail
without a Message-ID, and parallel deliveries of one message from several processes."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from hacluster_lab.lab.mailload import scan_maildirs
from hacluster.spool.dedup import RECORDS, DedupStore, body_digest, dedup_key, message_id
from hacluster.spool.deliver import DeliveryError, deliver, main
from hacluster.spool.maildir import find_maildirs

MSG = b"Received: from relay1 (id AAA)\nMessage-ID: <m1@client.lab.example>\nSubject: s\n\nbody line\n"


def copies(base: Path, box: str = "alice") -> list[str]:
    return sorted(p.name for sub in ("new", "cur") for p in (base / box / sub).glob("*") if (base / box / sub).is_dir())


def test_message_id_folded_absent_and_empty() -> None:
    assert message_id(b"Subject: x\nMessage-ID:\n <a@b>\n\nbody") == "<a@b>"
    assert message_id(b"message-id: <a@b>\r\n\r\nbody") == "<a@b>"
    assert message_id(b"Subject: x\n\nMessage-ID: <in@body>\n") is None  # the body is not a header
    assert message_id(b"Message-ID:   \nSubject: x\n\nb") is None


def test_key_ignores_headers_a_hop_adds_but_not_body_mailbox_or_id() -> None:
    resent = MSG.replace(b"id AAA", b"id BBB")  # the store's new Received: line on the resend
    assert dedup_key(resent, "alice") == dedup_key(MSG, "alice")
    assert dedup_key(MSG.replace(b"\n", b"\r\n"), "alice") == dedup_key(MSG, "alice")
    assert dedup_key(MSG, "bob") != dedup_key(MSG, "alice")
    assert dedup_key(MSG.replace(b"body line", b"body lime"), "alice") != dedup_key(MSG, "alice")
    assert dedup_key(MSG.replace(b"<m1@", b"<m2@"), "alice") != dedup_key(MSG, "alice")
    assert dedup_key(b"Subject: none\n\nbody\n", "alice") is None
    assert body_digest(MSG)[1] == len(b"body line\n")


def test_second_delivery_within_window_is_discarded(tmp_path: Path) -> None:
    assert deliver(tmp_path, "alice", MSG, now=1000.0)[0] == "delivered"
    outcome, first = deliver(tmp_path, "alice", MSG.replace(b"AAA", b"BBB"), now=1500.0)
    assert outcome == "duplicate" and copies(tmp_path) == [first]
    assert deliver(tmp_path, "bob", MSG, now=1500.0)[0] == "delivered"  # another mailbox: its own copy


def test_after_the_window_it_is_delivered_again(tmp_path: Path) -> None:
    deliver(tmp_path, "alice", MSG, window_s=60, now=1000.0)
    assert deliver(tmp_path, "alice", MSG, window_s=60, now=1061.0)[0] == "delivered"
    assert len(copies(tmp_path)) == 2


def test_without_message_id_never_suppressed(tmp_path: Path) -> None:
    msg = b"Subject: no id\n\nsame body\n"
    assert [deliver(tmp_path, "alice", msg)[0] for _ in range(3)] == ["delivered"] * 3
    assert len(copies(tmp_path)) == 3


def test_record_whose_copy_is_gone_never_causes_a_loss(tmp_path: Path) -> None:
    """A record replicated ahead of its message, a crash between the writes, a deleted copy: the
    mail is delivered, and the replaced record points at the new copy."""
    _o, first = deliver(tmp_path, "alice", MSG)
    (tmp_path / "alice" / "new" / first).unlink()
    outcome, second = deliver(tmp_path, "alice", MSG)
    assert outcome == "delivered" and copies(tmp_path) == [second]
    assert deliver(tmp_path, "alice", MSG)[0] == "duplicate"


def test_copy_moved_to_cur_with_flags_still_counts(tmp_path: Path) -> None:
    _o, first = deliver(tmp_path, "alice", MSG)
    (tmp_path / "alice" / "new" / first).rename(tmp_path / "alice" / "cur" / f"{first}:2,S")
    assert deliver(tmp_path, "alice", MSG)[0] == "duplicate"


def test_sweep_bounds_the_records(tmp_path: Path) -> None:
    store = DedupStore(tmp_path, window_s=60)
    for i in range(5):
        deliver(tmp_path, "alice", MSG.replace(b"m1", f"m{i + 10}".encode()), window_s=60, now=1000.0 + i)
    assert len(os.listdir(tmp_path / RECORDS / "new")) == 5
    assert store.sweep(now=1062.5, force=True) == 3
    assert len(os.listdir(tmp_path / RECORDS / "new")) == 2


def test_records_are_replicated_like_mail_and_invisible_to_the_audit(tmp_path: Path) -> None:
    deliver(tmp_path, "alice", MSG)
    assert RECORDS in find_maildirs(tmp_path)  # the mirrored replicator copies them
    found = scan_maildirs({"store1": tmp_path})
    assert list(found) == ["<m1@client.lab.example>"] and len(found["<m1@client.lab.example>"]) == 1


@pytest.mark.parametrize("bad", ["../etc", ".hidden", RECORDS, "a/b", "", "new"])
def test_bad_mailbox_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DeliveryError):
        deliver(tmp_path, bad, MSG)


def test_cli_defers_when_the_base_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(MSG)))
    assert main(["--base", str(tmp_path / "absent"), "--mailbox", "alice"]) == 75
    assert "deferred" in capsys.readouterr().out


def _deliver_one(base: str) -> str:
    return deliver(Path(base), "alice", MSG)[0]


def test_parallel_deliveries_of_one_message_make_one_copy(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(6) as pool:
        outcomes = pool.map(_deliver_one, [str(tmp_path)] * 12)
    assert sorted(outcomes).count("delivered") == 1 and len(copies(tmp_path)) == 1


WRITER = r"""
import os, subprocess, sys
base, log, half = sys.argv[1], sys.argv[2], int(sys.argv[3])
msg = b"Message-ID: <cut@x>\n\n" + b"y" * 200000
p = subprocess.Popen([sys.executable, "-m", "hacluster.spool.deliver", "--base", base, "--mailbox", "alice",
                      "--log", log], stdin=subprocess.PIPE)
p.stdin.write(msg[:half] if half else msg)
p.stdin.flush()
if half:
    os._exit(0)  # the writer dies mid-message, like pipe(8) killed by a demote's Postfix stop
p.stdin.close()
sys.exit(p.wait())
"""


@pytest.mark.parametrize("half", [0, 65536])
def test_input_cut_by_a_dying_writer_stores_nothing(tmp_path: Path, half: int) -> None:
    """EOF from a dead pipe(8) is not the end of the message: no truncated copy (and so no second,
    different copy when the queue delivers it again); a writer that finishes gets its delivery."""
    import subprocess
    import sys
    import time

    log = tmp_path / "deliver.log"
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), str(log), str(half)], timeout=30,
                   cwd=Path(__file__).parents[2])
    end = time.monotonic() + 20
    while time.monotonic() < end and not (log.exists() and log.read_text()):
        time.sleep(0.05)
    text = log.read_text()
    if half:
        assert "deferred: input cut after 65536 bytes" in text and copies(tmp_path) == [], text
    else:
        assert "delivered <cut@x>" in text and len(copies(tmp_path)) == 1


def test_record_is_written_before_the_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dying between the two writes must leave a record without a copy (the retry delivers), never
    a copy without a record (the retry would be a duplicate)."""
    from hacluster.spool import deliver as deliver_mod

    def die(box: Path, name: str) -> None:
        raise SystemExit("killed between the record and the Maildir link")

    monkeypatch.setattr(deliver_mod, "commit_maildir", die)
    with pytest.raises(SystemExit):
        deliver(tmp_path, "alice", MSG)
    assert copies(tmp_path) == [] and len(os.listdir(tmp_path / RECORDS / "new")) == 1
    monkeypatch.undo()
    assert deliver(tmp_path, "alice", MSG)[0] == "delivered"  # Postfix's retry: delivered once
    assert deliver(tmp_path, "alice", MSG)[0] == "duplicate" and len(copies(tmp_path)) == 1
