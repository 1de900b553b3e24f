"""The replicator's holder side: copies every message of the holder's Maildir tree to one peer,
one message per request, and keeps it mirrored (moves new/ -> cur/, flag changes, deletions).

One thread, one loop, every wait bounded: collect local changes (inotify names the Maildir that
changed, a periodic full scan catches anything missed) -> (re)connect with backoff -> push a
bounded batch. On every (re)connection the peer's listing is the truth: what only the peer has is
pulled back first (mail the old holder accepted but had not replicated when it died), then what
only we have is announced and pushed. The diff is the pure `plan()`.

A `stale` answer means a newer holder exists: the sender stops for good and says so.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from . import metrics
from .inotify import (IN_CREATE, IN_DELETE, IN_ISDIR, IN_MOVED_FROM, IN_MOVED_TO, IN_ONLYDIR, IN_Q_OVERFLOW,
                      Inotify)
from .maildir import MAX_DEPTH, OWN_PREFIX, MaildirStore, Meta, MsgPath, is_maildir
from .marker import MarkerCache, StaleToken
from .protocol import Client, ProtocolError, Rejected

log = logging.getLogger(__name__)

ANNOUNCE_CHUNK = 2000
CATCHUP_CONNECT_S = 0.5  # a live peer on the store LAN answers a SYN in well under a millisecond
MASS_DELETE = 100  # more deletions than this (and > 10 %) in one scan look like a lost spool, not a user
MSG_MASK = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
TREE_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR


@dataclass(frozen=True)
class Plan:
    push: tuple[str, ...]
    move: tuple[str, ...]
    delete: tuple[str, ...]


def plan(local: Mapping[str, MsgPath], acked: Mapping[str, MsgPath]) -> Plan:
    """What the peer needs to mirror `local`, given what it acknowledged (`acked`): new messages
    to push (oldest name first: Maildir names start with the delivery time), renames, deletions."""
    push = tuple(sorted((k for k in local if k not in acked), key=lambda k: local[k].name))
    move = tuple(k for k, m in local.items() if k in acked and acked[k] != m)
    delete = tuple(k for k in acked if k not in local)
    return Plan(push, move, delete)


@dataclass
class PullResult:
    pulled: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # rel -> why


def pull_missing(client: Client, store: MaildirStore, marker: MarkerCache, token: int, node: str,
                 peer: Mapping[str, MsgPath], local: dict[str, MsgPath], label: tuple[str, str]) -> PullResult:
    """Copy every message the peer has and we lack into our Maildir (Maildir-safe), checking our
    own marker first: a holder that is no longer the newest must not write. Updates `local`."""
    out = PullResult()
    for key, m in peer.items():
        if key in local:
            continue
        marker.check(token, node)
        try:
            ans, body = client.call("get", path=m.rel)
            got = MsgPath.parse(ans.get("path", m.rel))
            meta = Meta(len(body), float(ans.get("mtime", time.time())), int(ans.get("uid", 0)),
                        int(ans.get("gid", 0)), int(ans.get("mode", 0o600)))
            store.deliver(got, body, meta)
        except Rejected as err:
            if err.code == "stale":
                raise
            out.failed[m.rel] = str(err)
            continue
        except OSError as err:
            if isinstance(err, (ConnectionError, TimeoutError)):
                raise
            out.failed[m.rel] = f"local write: {err}"
            continue
        local[key] = got
        out.pulled.append(got.rel)
        metrics.PULLED.labels(*label).inc()
    return out


class Sender:
    def __init__(self, root: Path, peer: tuple[str, int], token: int, node: str, name: str = "spool",
                 scan_interval_s: float = 5.0, use_inotify: bool = True, connect_timeout_s: float = 2.0,
                 io_timeout_s: float = 30.0, replicate_deletes: bool = False) -> None:
        self.root = Path(root)
        self.peer = peer
        self.token, self.node, self.name = token, node, name
        self.scan_interval_s = scan_interval_s
        self.use_inotify = use_inotify
        self.connect_timeout_s, self.io_timeout_s = connect_timeout_s, io_timeout_s
        self.replicate_deletes = replicate_deletes
        self.store = MaildirStore(self.root)
        self.marker = MarkerCache(self.root)
        self.label = (name, f"{peer[0]}:{peer[1]}")
        self.state = "new"
        self.detail = ""
        self.local: dict[str, MsgPath] = {}
        self.acked: dict[str, MsgPath] = {}
        self.to_push: dict[str, float] = {}  # key -> mtime (wall) of the message, oldest first
        self.to_move: set[str] = set()
        self.to_delete: set[str] = set()
        self.announced: set[str] = set()
        self.pulled: list[str] = []
        self.sent = 0
        self.sent_bytes = 0
        self.client: Client | None = None
        self._lock = threading.Lock()  # lag() reads while the thread writes
        self._stop_at: float | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._ino: Inotify | None = None
        self._wd: dict[int, tuple[str, str, str]] = {}  # wd -> ("msg", maildir, sub) | ("tree", dir, "")
        self._watched: set[str] = set()
        self._next_full = 0.0

    # ------------------------------------------------------------------ control

    def start(self) -> "Sender":
        self._thread = threading.Thread(target=self._run, name=f"replicator-tx-{self.name}", daemon=True)
        self.state = "starting"
        self._thread.start()
        return self

    def stop(self, drain_timeout_s: float = 5.0) -> bool:
        """Push what is pending for up to drain_timeout_s, then stop. True when nothing is left."""
        self._stop_at = time.monotonic() + max(0.0, drain_timeout_s)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(drain_timeout_s + 0.5)
            client = self.client
            if self._thread.is_alive() and client is not None:
                try:  # blocked in a push to a peer that went silent: cut it, stop is bounded
                    client.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(2.0)
        return self.lag()[0] == 0

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def lag(self) -> tuple[int, float]:
        """(messages not yet acknowledged by the peer, age in seconds of the oldest of them)."""
        with self._lock:
            if not self.to_push:
                return 0, 0.0
            return len(self.to_push), max(0.0, time.time() - min(self.to_push.values()))

    def wait_synced(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.client is not None and self.lag()[0] == 0 and not self.to_move and not self.to_delete:
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        backoff, next_try = 0.1, 0.0
        try:
            self._setup_watch()
            self._full_scan()
            while True:
                now = time.monotonic()
                if self._stop_at is not None and (not self._work() or now >= self._stop_at):
                    break
                busy = self.client is not None and self._work()
                if busy:
                    wait = 0.0
                elif self.client is None:
                    wait = min(0.1, max(0.0, next_try - now))
                else:
                    wait = 0.1
                self._collect(wait)
                if self.client is None and time.monotonic() >= next_try:
                    try:
                        self._connect()
                        backoff = 0.1
                    except (OSError, ProtocolError, Rejected) as err:
                        if isinstance(err, Rejected) and err.code == "stale":
                            raise
                        self._disconnect(f"connect: {err}")
                        next_try = time.monotonic() + backoff
                        backoff = min(backoff * 2, 2.0)
                if self.client is not None:
                    try:
                        self._push_some(0.2)
                    except (OSError, ProtocolError, Rejected) as err:
                        if isinstance(err, Rejected) and err.code == "stale":
                            raise
                        self._disconnect(f"push: {err}")
                        next_try = time.monotonic() + backoff
        except (Rejected, StaleToken) as err:
            self.state, self.detail = "stale", str(err)
            log.error("replicator %s -> %s: stopped, a newer holder exists: %s", self.name, self.label[1], err)
        except Exception as err:  # the thread must report, not vanish
            self.state, self.detail = "failed", repr(err)
            log.exception("replicator %s -> %s: failed", self.name, self.label[1])
        finally:
            if self.client is not None:
                self.client.close()
                self.client = None
            if self._ino is not None:
                self._ino.close()
            if self.state not in ("stale", "failed"):
                self.state = "stopped"
            metrics.CONNECTED.labels(*self.label).set(0)
            self._update_metrics()

    def _work(self) -> bool:
        return bool(self.to_push or self.to_move or self.to_delete)

    def _disconnect(self, why: str) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.state != "disconnected":
            log.warning("replicator %s -> %s: %s", self.name, self.label[1], why)
        self.state, self.detail = "disconnected", why
        metrics.CONNECTED.labels(*self.label).set(0)

    def _connect(self) -> None:
        self.state = "connecting"
        client = Client(*self.peer, self.token, self.node, self.connect_timeout_s)
        try:
            client.sock.settimeout(self.io_timeout_s)
            client.call("hello")
            ans, _ = client.call("list")
            peer = {m.key: m for m in (MsgPath.parse(p) for p in ans.get("paths", []))}
            self._full_scan()
            res = pull_missing(client, self.store, self.marker, self.token, self.node, peer, self.local, self.label)
        except BaseException:
            client.close()
            raise
        if res.pulled:
            log.warning("replicator %s: pulled %d messages only %s had", self.name, len(res.pulled), self.label[1])
            self.pulled.extend(res.pulled)
        for rel, why in res.failed.items():
            log.error("replicator %s: could not pull %s from %s: %s", self.name, rel, self.label[1], why)
        for rel in res.failed:  # never plan a deletion of a copy we failed to get
            peer.pop(MsgPath.parse(rel).key, None)
        self.acked = peer
        self.announced = set()
        self.client = client
        self.state, self.detail = "streaming", ""
        metrics.CONNECTED.labels(*self.label).set(1)
        self._replan()
        log.info("replicator %s -> %s: connected, peer has %d, to send %d", self.name, self.label[1],
                 len(peer), len(self.to_push))

    # ------------------------------------------------------------------ pushing

    def _push_some(self, budget_s: float) -> None:
        assert self.client is not None
        c = self.client
        fresh = [k for k in self.to_push if k not in self.announced]
        for i in range(0, len(fresh), ANNOUNCE_CHUNK):
            chunk = fresh[i:i + ANNOUNCE_CHUNK]
            c.call("announce", paths=[self.local[k].rel for k in chunk])
            self.announced.update(chunk)
        for key in list(self.to_move):
            m = self.local.get(key)
            if m is not None:
                try:
                    c.call("move", path=m.rel)
                    self.acked[key] = m
                except Rejected as err:
                    if err.code != "not-found":
                        raise
                    self.acked.pop(key, None)
                    self._queue_push(key)
            self.to_move.discard(key)
        for key in list(self.to_delete):
            m = self.acked.get(key)
            if m is not None:
                c.call("delete", path=m.rel)
                self.acked.pop(key, None)
            self.to_delete.discard(key)
        deadline = time.monotonic() + budget_s
        while self.to_push and time.monotonic() < deadline:
            key = next(iter(self.to_push))
            m = self.local.get(key)
            if m is None:
                with self._lock:
                    self.to_push.pop(key, None)
                continue
            try:
                meta, data = self.store.read(m)
            except FileNotFoundError:
                self._scan_maildir(m.maildir)  # moved or deleted since we saw it: look again
                if self.local.get(key) == m:
                    self.local.pop(key, None)
                    with self._lock:
                        self.to_push.pop(key, None)
                continue
            c.call("push", data, path=m.rel, mtime=meta.mtime, uid=meta.uid, gid=meta.gid, mode=meta.mode)
            self.acked[key] = m
            with self._lock:
                self.to_push.pop(key, None)
            self.sent += 1
            self.sent_bytes += len(data)
            metrics.SENT.labels(*self.label).inc()
            metrics.SENT_BYTES.labels(*self.label).inc(len(data))
        self._update_metrics()

    def _update_metrics(self) -> None:
        n, age = self.lag()
        metrics.LAG_MESSAGES.labels(*self.label).set(n)
        metrics.LAG_SECONDS.labels(*self.label).set(age)

    # ------------------------------------------------------------------ watching

    def _queue_push(self, key: str) -> None:
        m = self.local.get(key)
        if m is None:
            return
        try:
            mtime = os.stat(self.store.path(m)).st_mtime
        except OSError:
            mtime = time.time()
        with self._lock:
            self.to_push.setdefault(key, mtime)

    def _replan(self) -> None:
        p = plan(self.local, self.acked)
        wanted = set(p.push)
        with self._lock:
            for k in [k for k in self.to_push if k not in wanted]:
                del self.to_push[k]
        for k in p.push:
            if k not in self.to_push:
                self._queue_push(k)
        self.to_move = set(p.move)
        self.to_delete = set()
        if self.replicate_deletes and self.client is not None and p.delete:
            if len(p.delete) > max(MASS_DELETE, len(self.acked) // 10):
                log.error("replicator %s: %d messages vanished at once from %s; not deleting them on the peer "
                          "(unmounted or replaced spool?)", self.name, len(p.delete), self.root)
            else:
                self.to_delete = set(p.delete)
        self._update_metrics()

    def _setup_watch(self) -> None:
        if not self.use_inotify:
            return
        try:
            self._ino = Inotify()
        except OSError as err:
            log.warning("replicator %s: no inotify (%s): scanning every %gs", self.name, err, self.scan_interval_s)
            self._ino = None

    def _watch(self, path: Path, kind: str, md: str, sub: str = "") -> None:
        if self._ino is None or str(path) in self._watched:
            return
        try:
            wd = self._ino.add_watch(str(path), MSG_MASK if kind == "msg" else TREE_MASK)
        except OSError as err:
            if err.errno == 28:  # ENOSPC: fs.inotify.max_user_watches
                log.warning("replicator %s: inotify watch limit reached; scanning every %gs", self.name,
                            self.scan_interval_s)
                self._ino.close()
                self._ino = None
            return
        self._wd[wd] = (kind, md, sub)
        self._watched.add(str(path))

    def _add_watches(self) -> None:
        """Watch new/ and cur/ of every Maildir and every directory above them (new mailboxes)."""
        if self._ino is None:
            return
        base = len(self.root.parts)
        for dirpath, dirnames, _ in os.walk(self.root):
            here = Path(dirpath)
            if len(here.parts) - base > MAX_DEPTH:
                dirnames[:] = []
                continue
            rel = "" if here == self.root else str(here.relative_to(self.root))
            self._watch(here, "tree", rel)
            if is_maildir(here):
                for sub in ("new", "cur"):
                    self._watch(here / sub, "msg", rel, sub)
                dirnames[:] = [d for d in dirnames if d not in ("tmp", "new", "cur")]
            dirnames[:] = [d for d in dirnames if not d.startswith(OWN_PREFIX)]

    def _full_scan(self) -> None:
        self._add_watches()
        self.local = self.store.messages()
        self._next_full = time.monotonic() + self.scan_interval_s
        self._replan()

    def _scan_maildir(self, md: str) -> None:
        fresh = self.store.maildir_messages(md)
        for k in [k for k, m in self.local.items() if m.maildir == md and k not in fresh]:
            del self.local[k]
        self.local.update(fresh)

    def _collect(self, timeout_s: float) -> None:
        if self._ino is None:
            self._wake.wait(timeout_s)
            self._wake.clear()
            if time.monotonic() >= self._next_full:
                self._full_scan()
            return
        events = self._ino.read(timeout_s)
        touched: set[str] = set()
        full = time.monotonic() >= self._next_full
        for ev in events:
            if ev.mask & IN_Q_OVERFLOW:
                full = True
                continue
            where = self._wd.get(ev.wd)
            if where is None:
                continue
            kind, md, sub = where
            if kind == "tree":
                if ev.mask & IN_ISDIR and not ev.name.startswith(OWN_PREFIX):
                    full = True  # a new mailbox or folder: find it and watch it
                continue
            if not ev.name or ev.name.startswith(".") or ev.mask & IN_ISDIR:
                continue
            # the event names the file: no directory listing per message (mailboxes can be large)
            m = MsgPath(md, sub, ev.name)
            if ev.mask & (IN_CREATE | IN_MOVED_TO):
                self.local[m.key] = m
                touched.add(m.key)
            elif self.local.get(m.key) == m:  # IN_DELETE / IN_MOVED_FROM of the name we know
                del self.local[m.key]
                touched.add(m.key)
        if full:
            self._full_scan()
        elif touched:
            self._replan_keys(touched)

    def _replan_keys(self, keys: set[str]) -> None:
        """plan() restricted to the keys that changed: O(changes), not O(mailbox)."""
        deletions = []
        for key in keys:
            m, a = self.local.get(key), self.acked.get(key)
            if m is None:
                with self._lock:
                    self.to_push.pop(key, None)
                self.to_move.discard(key)
                if a is not None:
                    deletions.append(key)
            elif a is None:
                self._queue_push(key)
            elif a != m:
                self.to_move.add(key)
            else:
                self.to_move.discard(key)
        if deletions and self.replicate_deletes and self.client is not None:
            if len(deletions) > max(MASS_DELETE, len(self.acked) // 10):
                log.error("replicator %s: %d messages vanished at once; not deleting them on the peer",
                          self.name, len(deletions))
            else:
                self.to_delete.update(deletions)
        self._update_metrics()


@dataclass
class CatchUp:
    """What a promotion copied from one old holder (or why it could not)."""

    peer: str
    reachable: bool
    pulled: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    detail: str = ""


def catch_up(root: Path, peer: tuple[str, int], token: int, node: str, name: str = "spool",
             timeout_s: float = 10.0, connect_timeout_s: float = CATCHUP_CONNECT_S) -> CatchUp:
    """Promotion: copy every message the old holder has and we lack, before we accept mail.
    Raises StaleToken / Rejected(stale) if we are not the newest holder after all. The connect
    timeout is short: a powered-off old holder must not delay the failover by much."""
    store, marker = MaildirStore(Path(root)), MarkerCache(Path(root))
    label = (name, f"{peer[0]}:{peer[1]}")
    try:
        client = Client(*peer, token, node, min(connect_timeout_s, timeout_s))
    except OSError as err:
        return CatchUp(label[1], False, detail=f"unreachable: {err}")
    with client:
        client.sock.settimeout(timeout_s)
        try:
            client.call("hello")
            ans, _ = client.call("list")
            theirs = {m.key: m for m in (MsgPath.parse(p) for p in ans.get("paths", []))}
            res = pull_missing(client, store, marker, token, node, theirs, store.messages(), label)
        except (OSError, ProtocolError) as err:
            return CatchUp(label[1], False, detail=f"connection lost during catch-up: {err}")
    return CatchUp(label[1], True, res.pulled, res.failed)
