"""Znode reads that stay good until ZooKeeper says otherwise: the snapshot re-reads only what changed.

The agent builds a snapshot of the cluster every loop (5/s at the default timing). Reading every
member, lease, request and constraint each time was ~42 ZooKeeper requests/s per idle agent and
most of its idle CPU. Each read here leaves a one-shot watch; until that watch fires the last
answer is still the znode's state, so the next snapshot takes it from memory. ZooKeeper delivers
a watch event before any later read result can show the change, so a cached answer is never
older than a fresh read's would be, give or take the event's way over the same connection.

What keeps it honest:
* a path is marked clean *before* its read is sent; an event arriving while the read is under way
  marks it dirty again, so the next snapshot reads it again (never misses a change);
* every connection state change (suspended, lost, reconnected) forgets everything: after a
  disconnection the first snapshot reads all of it, exactly as before there was a cache;
* a read that failed is not kept; a getData that found no znode leaves no watch in ZooKeeper, so
  an `exists` watch is set in its place (a znode created meanwhile marks the path dirty).

A path can also be *followed* (`follow`, the lease of each role): a change is re-read at once,
not at the next snapshot, and every answer that lands is handed to a callback. The agent used a
kazoo DataWatch for that beside the cache, which read every lease change a second time: the
lease is the most written znode (2.9 renewals/s), so that was a third of an idle cluster's reads
(bench scale, docs/scale.md).

Safety never rests on the cache: an acquisition `sync`s and re-reads the lease before its
version-checked write (coord/session.py), and a holder's deadline comes from its own renewals.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from kazoo.exceptions import NoNodeError

Key = tuple[str, str]  # ("data" | "children", path)
DataCallback = Callable[[Any, Any], None]  # (data, stat) of a followed path; (None, None): no znode

log = logging.getLogger(__name__)


class _Done:
    """An answer from memory with the interface of kazoo's async result."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    def get(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class WatchCache:
    """Watched reads of znode data and children through the current kazoo client."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client  # the Coordinator replaces its client after a failed start
        self._lock = threading.Lock()
        self._entries: dict[Key, Any] = {}  # key -> _Done or the pending kazoo result
        self._watchers: dict[Key, Callable[[Any], None]] = {}
        self._follow: dict[Key, DataCallback] = {}  # followed paths: re-read at once, answers handed on
        self.reads = 0  # reads sent (tests, benches): how much the cache saves

    def forget(self) -> None:
        """Drop everything (connection state changed): the next reads go to ZooKeeper."""
        with self._lock:
            self._entries.clear()

    def _mark(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _changed(self, key: Key) -> None:
        """The znode changed: read it again, at once if it is followed (a candidate's wait starts
        at the change), else at the next snapshot."""
        self._mark(key)
        if key in self._follow:
            try:
                self._read(key)
            except Exception as err:  # pragma: no cover - a closing client
                log.debug("re-reading %s failed: %r", key[1], err)

    def follow(self, path: str, callback: DataCallback) -> None:
        """Keep `path` read: now, again the moment its watch fires, and hand every answer that
        lands (this read's or a snapshot's) to `callback(data, stat)` on kazoo's thread (it must
        not block). A replacement for a kazoo DataWatch that shares the cache's reads."""
        key = ("data", path)
        with self._lock:
            self._follow[key] = callback
        self._read(key)

    def reread_followed(self) -> None:
        """Read every followed path again (after a reconnection: what changed meanwhile may have
        fired no watch, e.g. a new session; the callbacks see the current state at once)."""
        with self._lock:
            keys = list(self._follow)
        for key in keys:
            try:
                self._read(key)
            except Exception as err:  # pragma: no cover - a closing client
                log.debug("re-reading %s failed: %r", key[1], err)

    def _watcher(self, key: Key) -> Callable[[Any], None]:
        # one function object per key: kazoo keeps watchers in a set, so re-reads do not pile up
        w = self._watchers.get(key)
        if w is None:
            def w(event: Any, key: Key = key) -> None:
                self._changed(key)
            self._watchers[key] = w
        return w

    def get_async(self, path: str) -> Any:
        """Like zk.get_async(path): (data, stat), or NoNodeError."""
        return self._read(("data", path))

    def get_children_async(self, path: str) -> Any:
        """Like zk.get_children_async(path): the child names, or NoNodeError."""
        return self._read(("children", path))

    def exists_async(self, path: str) -> Any:
        """Like zk.exists_async(path): the stat or None."""
        res = self._read(("data", path))
        return _Exists(res)

    def _read(self, key: Key) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                return entry
            zk = self._client()
            kind, path = key
            watch = self._watcher(key)
            pending = (zk.get_children_async(path, watch=watch) if kind == "children"
                       else zk.get_async(path, watch=watch))
            self._entries[key] = pending
            self.reads += 1
        pending.rawlink(lambda res, key=key, zk=zk: self._landed(key, res, zk))
        return pending

    def _landed(self, key: Key, res: Any, zk: Any) -> None:
        """Runs on kazoo's thread when a read is answered."""
        try:
            value = res.get(timeout=0)
        except NoNodeError as err:
            done = _Done(error=err)
            self._store(key, res, done)
            self._hand_on(key, (None, None))
            # no znode, no data watch: watch for its creation instead
            try:
                zk.exists_async(key[1], watch=self._watcher(key)).rawlink(
                    lambda r, key=key: self._created(key, r))
            except Exception:  # pragma: no cover - a closing client
                self._mark(key)
            return
        except Exception:
            self._drop(key, res)  # not kept: timed out, connection lost, no access
            return
        self._store(key, res, _Done(value))
        self._hand_on(key, value)

    def _hand_on(self, key: Key, value: Any) -> None:
        cb = self._follow.get(key)
        if cb is None:
            return
        try:
            cb(*value)
        except Exception:  # a callback's bug must not stop kazoo's thread
            log.exception("callback for %s failed", key[1])

    def _created(self, key: Key, res: Any) -> None:
        try:
            if res.get(timeout=0) is None:
                return  # still absent, the exists watch is set
        except Exception:
            pass
        self._changed(key)  # created between the two requests, or the exists failed: read again

    def _store(self, key: Key, pending: Any, done: _Done) -> None:
        with self._lock:
            if self._entries.get(key) is pending:  # not forgotten or marked meanwhile
                self._entries[key] = done

    def _drop(self, key: Key, pending: Any) -> None:
        with self._lock:
            if self._entries.get(key) is pending:
                del self._entries[key]


class _Exists:
    """exists() from a cached getData: the stat, or None for no znode."""

    def __init__(self, res: Any) -> None:
        self.res = res

    def get(self, timeout: float | None = None) -> Any:
        try:
            return self.res.get(timeout=timeout)[1]
        except NoNodeError:
            return None
