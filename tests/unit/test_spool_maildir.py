"""Maildir-safe writes, message identity and the replication plan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hacluster.spool.maildir import BadPath, MaildirStore, Meta, MsgPath, ensure_maildir, find_maildirs
from hacluster.spool.sender import plan


def test_msgpath_identity_survives_flags_and_moves() -> None:
    a = MsgPath.parse("example.org/alice/new/1700000000.M1P2.store1")
    b = MsgPath.parse("example.org/alice/cur/1700000000.M1P2.store1:2,S")
    assert (a.maildir, a.sub) == ("example.org/alice", "new")
    assert a.key == b.key == "example.org/alice/1700000000.M1P2.store1"
    assert b.rel == "example.org/alice/cur/1700000000.M1P2.store1:2,S"
    assert MsgPath.parse("new/x").maildir == ""


@pytest.mark.parametrize("bad", ["", "/abs/new/x", "a/../new/x", "a/tmp/x", "x", "a/new/.hidden",
                                 "a/.hacluster-owner/new/x", "a//new/x", "a/new/" + "x" * 256])
def test_msgpath_rejects_paths_that_escape_or_are_not_mail(bad: str) -> None:
    with pytest.raises(BadPath):
        MsgPath.parse(bad)


def test_deliver_is_maildir_safe_and_keeps_metadata(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path)
    m = MsgPath.parse("d/u/new/1700000000.M1.h")
    meta = Meta(5, 1_600_000_000.5, os.getuid(), os.getgid(), 0o640)
    assert store.deliver(m, b"hello", meta) == "stored"
    f = tmp_path / "d/u/new/1700000000.M1.h"
    st = f.stat()
    assert f.read_bytes() == b"hello" and st.st_mode & 0o777 == 0o640 and st.st_mtime == 1_600_000_000.5
    assert os.listdir(tmp_path / "d/u/tmp") == []  # nothing left in tmp/
    assert store.deliver(m, b"hello", meta) == "exists"  # never a second copy
    cur = MsgPath.parse("d/u/cur/1700000000.M1.h:2,S")
    assert store.deliver(cur, b"hello", meta) == "moved"  # same message, now read: rename, no rewrite
    assert sorted(os.listdir(tmp_path / "d/u/cur")) == ["1700000000.M1.h:2,S"] and not os.listdir(tmp_path / "d/u/new")
    assert store.remove(cur) and not store.remove(cur)


def test_deliver_refuses_to_overwrite_a_foreign_file_of_the_same_name(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path)
    ensure_maildir(tmp_path / "u")
    (tmp_path / "u/new/1.M1.h").write_bytes(b"first")
    store.index("u")  # index built before the foreign write below
    (tmp_path / "u/new/2.M2.h").write_bytes(b"other")
    assert store.deliver(MsgPath.parse("u/new/1.M1.h"), b"second") == "exists"
    assert (tmp_path / "u/new/1.M1.h").read_bytes() == b"first"
    assert set(store.messages()) == {"u/1.M1.h", "u/2.M2.h"}


def test_find_maildirs_includes_folders_and_skips_our_files(tmp_path: Path) -> None:
    for d in ("a.org/alice", "a.org/alice/.Sent", "b.org/bob"):
        ensure_maildir(tmp_path / d)
    (tmp_path / ".hacluster-state").mkdir()
    ensure_maildir(tmp_path / ".hacluster-state" / "x")
    assert find_maildirs(tmp_path) == ["a.org/alice", "a.org/alice/.Sent", "b.org/bob"]


def p(rel: str) -> tuple[str, MsgPath]:
    m = MsgPath.parse(rel)
    return m.key, m


def test_plan_pushes_new_moves_renamed_deletes_gone() -> None:
    local = dict([p("u/new/2.b"), p("u/new/1.a"), p("u/cur/3.c:2,S")])
    acked = dict([p("u/new/3.c"), p("u/new/9.z")])
    pl = plan(local, acked)
    assert pl.push == ("u/1.a", "u/2.b")  # oldest name first
    assert pl.move == ("u/3.c",)
    assert pl.delete == ("u/9.z",)
    assert plan(local, local) == plan({}, {})
