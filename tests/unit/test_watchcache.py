"""coord/watchcache.py against a fake kazoo client whose answers and watch events the test
delivers by hand, in the orders the real one can produce (tests/integration/test_zk_watch.py
runs it on a real ZooKeeper)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from kazoo.exceptions import ConnectionLoss, NoNodeError

from hacluster.coord.watchcache import WatchCache


class Pending:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] = []
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False

    def rawlink(self, cb: Callable[[Any], None]) -> None:
        self.callbacks.append(cb)
        if self.done:
            cb(self)

    def get(self, timeout: float | None = None) -> Any:
        assert self.done
        if self.error is not None:
            raise self.error
        return self.value

    def answer(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.done = value, error, True
        for cb in self.callbacks:
            cb(self)


class FakeZk:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Pending]] = []
        self.watches: dict[str, Callable[[Any], None]] = {}

    def _send(self, kind: str, path: str, watch: Callable[[Any], None]) -> Pending:
        p = Pending()
        self.sent.append((kind, path, p))
        self.watches[path] = watch
        return p

    def get_async(self, path: str, watch: Callable[[Any], None]) -> Pending:
        return self._send("get", path, watch)

    def get_children_async(self, path: str, watch: Callable[[Any], None]) -> Pending:
        return self._send("children", path, watch)

    def exists_async(self, path: str, watch: Callable[[Any], None]) -> Pending:
        return self._send("exists", path, watch)

    def fire(self, path: str) -> None:
        self.watches.pop(path)("event")


@pytest.fixture
def zk() -> FakeZk:
    return FakeZk()


def test_a_read_is_kept_until_its_watch_fires(zk: FakeZk) -> None:
    c = WatchCache(lambda: zk)
    c.get_async("/a")
    zk.sent[-1][2].answer((b"1", "stat1"))
    assert c.get_async("/a").get() == (b"1", "stat1") and len(zk.sent) == 1
    zk.fire("/a")
    r = c.get_async("/a")
    assert len(zk.sent) == 2
    zk.sent[-1][2].answer((b"2", "stat2"))
    assert r.get() == (b"2", "stat2") and c.get_async("/a").get() == (b"2", "stat2")


def test_an_event_during_the_read_makes_the_next_snapshot_read_again(zk: FakeZk) -> None:
    c = WatchCache(lambda: zk)
    c.get_async("/a")
    zk.fire("/a")  # the znode changed after the read was sent; the answer may predate the change
    zk.sent[-1][2].answer((b"old", "s"))
    c.get_async("/a")
    assert len(zk.sent) == 2


def test_a_concurrent_reader_shares_the_pending_read(zk: FakeZk) -> None:
    c = WatchCache(lambda: zk)
    a, b = c.get_async("/a"), c.get_async("/a")
    assert a is b and len(zk.sent) == 1


def test_forget_drops_everything_and_a_late_answer_is_not_kept(zk: FakeZk) -> None:
    c = WatchCache(lambda: zk)
    c.get_async("/a")
    c.forget()  # connection state changed while the read was under way
    zk.sent[0][2].answer((b"x", "s"))
    c.get_async("/a")
    assert len(zk.sent) == 2


def test_a_failed_read_is_not_kept(zk: FakeZk) -> None:
    c = WatchCache(lambda: zk)
    r = c.get_async("/a")
    zk.sent[-1][2].answer(error=ConnectionLoss())
    with pytest.raises(ConnectionLoss):
        r.get()
    c.get_async("/a")
    assert len(zk.sent) == 2


def test_a_missing_znode_is_watched_with_exists_and_its_creation_is_noticed(zk: FakeZk) -> None:
    c = WatchCache(lambda: zk)
    c.get_async("/req")
    zk.sent[-1][2].answer(error=NoNodeError())
    assert [k for k, _, _ in zk.sent] == ["get", "exists"]  # getData on no znode leaves no watch
    zk.sent[-1][2].answer(None)  # still absent: the exists watch stands
    assert c.exists_async("/req").get() is None and len(zk.sent) == 2
    with pytest.raises(NoNodeError):
        c.get_async("/req").get()
    zk.fire("/req")  # created
    c.get_async("/req")
    assert len(zk.sent) == 3


def test_a_znode_created_between_get_and_exists_is_read_again(zk: FakeZk) -> None:
    c = WatchCache(lambda: zk)
    c.get_async("/req")
    zk.sent[-1][2].answer(error=NoNodeError())
    zk.sent[-1][2].answer("stat")  # exists found it: created in between
    c.get_async("/req")
    assert len(zk.sent) == 3


def test_children_and_data_of_one_path_are_kept_apart(zk: FakeZk) -> None:
    c = WatchCache(lambda: zk)
    c.get_children_async("/m")
    zk.sent[-1][2].answer(["n1"])
    c.get_async("/m")
    zk.sent[-1][2].answer((b"", "s"))
    assert c.get_children_async("/m").get() == ["n1"] and c.get_async("/m").get() == (b"", "s")
    assert c.reads == 2


def test_a_followed_path_is_read_again_at_once_and_every_answer_is_handed_on(zk: FakeZk) -> None:
    seen: list[tuple[Any, Any]] = []
    c = WatchCache(lambda: zk)
    c.follow("/lease", lambda data, stat: seen.append((data, stat)))
    assert len(zk.sent) == 1  # read now
    zk.sent[-1][2].answer((b"1", "s1"))
    assert seen == [(b"1", "s1")]
    zk.fire("/lease")  # a renewal: re-read at once, not at the next snapshot
    assert len(zk.sent) == 2
    zk.sent[-1][2].answer((b"2", "s2"))
    assert seen[-1] == (b"2", "s2")
    # the snapshot takes the same answer from memory: one read per change, not two
    assert c.get_async("/lease").get() == (b"2", "s2") and len(zk.sent) == 2


def test_a_followed_path_that_vanishes_is_handed_on_as_none_and_its_creation_read(zk: FakeZk) -> None:
    seen: list[tuple[Any, Any]] = []
    c = WatchCache(lambda: zk)
    c.follow("/lease", lambda data, stat: seen.append((data, stat)))
    zk.sent[-1][2].answer(error=NoNodeError())
    assert seen == [(None, None)] and zk.sent[-1][0] == "exists"
    zk.sent[-1][2].answer(None)
    zk.fire("/lease")  # created
    assert zk.sent[-1][0] == "get"
    zk.sent[-1][2].answer((b"new", "s"))
    assert seen[-1] == (b"new", "s")


def test_followed_paths_are_read_again_after_a_reconnection_and_a_failing_callback_is_contained(zk: FakeZk) -> None:
    calls: list[Any] = []

    def bad(data: Any, stat: Any) -> None:
        calls.append(data)
        raise RuntimeError("callback bug")

    c = WatchCache(lambda: zk)
    c.follow("/lease", bad)
    c.get_async("/other")
    zk.sent[0][2].answer((b"1", "s"))  # the callback raises: kazoo's thread goes on, the answer is kept
    assert calls == [b"1"] and c.get_async("/lease").get() == (b"1", "s")
    c.forget()
    c.reread_followed()
    assert [p for _, p, _ in zk.sent] == ["/lease", "/other", "/lease"]  # only the followed one at once


def test_member_memo_decodes_equal_bytes_once_and_sets_the_age_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshot's members (coord/model.py MemberMemo): the same bytes give the same member
    as decode_member, with this snapshot's age; new bytes are decoded again; a malformed member
    stays None; unlisted members are forgotten."""
    from hacluster.coord import model
    from hacluster.coord.model import Member, MemberMemo, decode_member, encode_member

    calls: list[str] = []
    real = model.decode_member
    monkeypatch.setattr(model, "decode_member", lambda n, raw, age_s=None: calls.append(n) or real(n, raw, age_s))
    memo = MemberMemo()
    raw = encode_member(Member("n1", "store", 100, True, False, 0, (), {"disk": {"ok": True}}, None, "10.0.0.1:8080"))
    first = memo.decode("n1", raw, 0.5)
    assert first == decode_member("n1", raw, 0.5)
    again = memo.decode("n1", bytes(raw), 1.7)  # equal bytes, another object (a fresh read)
    assert again == decode_member("n1", raw, 1.7) and calls == ["n1"]
    changed = encode_member(decode_member("n1", raw)._replace(healthy=False, reasons=("standby",)))
    got = memo.decode("n1", changed, 0.1)
    assert got is not None and not got.healthy and got.reasons == ("standby",) and calls == ["n1", "n1"]
    assert memo.decode("n2", b"\xff", 0.0) is None and memo.decode("n2", b"\xff", 0.2) is None
    assert calls == ["n1", "n1", "n2"]
    memo.keep(["n2"])
    assert memo.decode("n1", changed, 0.3) == got._replace(heartbeat_age_s=0.3) and calls[-1] == "n1"
