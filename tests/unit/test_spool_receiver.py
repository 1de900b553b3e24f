"""The receiver's request handling without a socket: fencing first, then Maildir-safe storage."""

from __future__ import annotations

from pathlib import Path

from hacluster.spool.marker import read_marker
from hacluster.spool.receiver import Receiver


def req(op: str, token: int, node: str = "store1", **kw: object) -> dict:
    return {"op": op, "token": token, "node": node, **kw}


def test_stale_token_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    rx = Receiver(tmp_path, "store2")
    ans, _ = rx.handle(req("push", 5, path="u/new/1.a", mtime=1.0, uid=0, gid=0, mode=0o600), b"x")
    assert ans == {"ok": True, "result": "stored"}
    assert read_marker(tmp_path).token == 5 and read_marker(tmp_path).node == "store1"
    rx.raise_token(6, "store2")  # store2 is promoted
    ans, _ = rx.handle(req("push", 5, path="u/new/2.b"), b"y")
    assert ans["ok"] is False and ans["error"] == "stale" and (ans["highest"], ans["owner"]) == (6, "store2")
    assert not (tmp_path / "u/new/2.b").exists()
    for op in ("list", "get", "hello", "announce"):
        assert rx.handle(req(op, 5, path="u/new/1.a", paths=[]), b"")[0]["error"] == "stale"
    assert rx.stats["stale"] == 5
    assert rx.handle(req("hello", 7, node="store1"), b"")[0] == {"ok": True, "node": "store2", "highest": 7}


def test_same_token_from_another_node_is_refused(tmp_path: Path) -> None:
    rx = Receiver(tmp_path, "store2")
    rx.handle(req("hello", 3, node="store1"), b"")
    assert rx.handle(req("hello", 3, node="store3"), b"")[0]["error"] == "stale"


def test_bad_requests_never_touch_the_filesystem(tmp_path: Path) -> None:
    rx = Receiver(tmp_path / "spool", "s")
    for path in ("../../etc/new/x", "/etc/new/passwd", "u/tmp/x", "u/new/../../x"):
        ans, _ = rx.handle(req("push", 1, path=path), b"evil")
        assert ans["error"] == "bad-request", path
    assert rx.handle({"op": "hello"}, b"")[0]["error"] == "bad-request"  # no token
    assert rx.handle(req("frobnicate", 1), b"")[0]["error"] == "bad-request"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [".hacluster-owner", ".hacluster-owner.lock"]


def test_announced_but_never_received_is_what_is_missing(tmp_path: Path) -> None:
    rx = Receiver(tmp_path, "store2")
    rx.handle(req("announce", 1, paths=["u/new/1.a", "u/new/2.b", "u/new/3.c"]), b"")
    rx.handle(req("push", 1, path="u/new/1.a"), b"one")
    rx.handle(req("push", 1, path="u/cur/3.c:2,S"), b"three")  # arrived already moved: still the same message
    assert rx.missing() == ["u/new/2.b"]
    ans, body = rx.handle(req("get", 1, path="u/new/3.c"), b"")
    assert (ans["path"], body) == ("u/cur/3.c:2,S", b"three")
    assert rx.handle(req("get", 1, path="u/new/2.b"), b"")[0]["error"] == "not-found"
    assert sorted(rx.handle(req("list", 1), b"")[0]["paths"]) == ["u/cur/3.c:2,S", "u/new/1.a"]
