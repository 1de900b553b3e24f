"""The ZooKeeper side of the agent and the operator CLI: connect, read one snapshot, and the few
writes that change the cluster (lease CAS, heartbeat, requests, maintenance, history).

Every call here is bounded by a timeout; nothing blocks the agent loop longer than
`request_timeout_s`. Connection-state listeners only set fields (they run on kazoo's thread).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from kazoo.client import KazooClient
from kazoo.exceptions import (BadVersionError, KazooException, NoAuthError, NodeExistsError, NoNodeError,
                              NotEmptyError)
from kazoo.handlers.threading import KazooTimeoutError, SequentialThreadingHandler
from kazoo.protocol.states import KazooState, KeeperState
from kazoo.security import ACL, ANYONE_ID_UNSAFE, Permissions, make_digest_acl

from .. import clock
from ..errors import UserError
from ..ha_local import Seen, carry_promise, first_seen
from ..spec import ClusterSpec
from .model import (Cluster, Constraint, Lease, Member, Promise, Request, decode_constraint, decode_lease,
                    MemberMemo, decode_request, encode_constraint, encode_lease, encode_member, encode_request,
                    lease_term_hint, parse_constraint_name, plausible_time, warn_malformed)
from .paths import Paths
from .outcome import AcquireResult, Acquired, Adopted, Lost, Renewed, RenewResult, Unreachable
from .watchcache import WatchCache

log = logging.getLogger(__name__)

#: what counts as "ZooKeeper did not answer in time / is unreachable"
ZK_ERRORS = (KazooException, KazooTimeoutError, OSError)

#: how often a snapshot re-reads the cluster root's ACL (credentials on; it has no watch)
ACL_REREAD_S = 2.0


def read_auth(spec: ClusterSpec) -> tuple[str, str] | None:
    """The digest credentials `user:password` from zookeeper.auth_file (must be mode 0600)."""
    f = spec.zookeeper.auth_file
    if not f:
        return None
    p = Path(f)
    try:
        st = p.stat()
        text = p.read_text().strip()
    except OSError as err:
        raise UserError(f"{f}: cannot read ZooKeeper credentials: {err.strerror}") from None
    if st.st_mode & 0o077:
        raise UserError(f"{f}: ZooKeeper credentials must not be readable by group/others (chmod 600)")
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise UserError(f"{f}:1: credentials must be one line `user:password`")
    return user, password


def acl_text(acls: Iterable[ACL]) -> str:
    """`scheme:id:perms` like zkCli's getAcl, for log lines and errors."""
    letters = ((Permissions.CREATE, "c"), (Permissions.DELETE, "d"), (Permissions.READ, "r"),
               (Permissions.WRITE, "w"), (Permissions.ADMIN, "a"))
    return ", ".join(f"{a.id.scheme}:{a.id.id}:{''.join(c for bit, c in letters if a.perms & bit)}" for a in acls)


def check_tls_files(spec: ClusterSpec) -> None:
    """zookeeper.tls names readable files: else one clear error now, not a TLS handshake failing
    on every connection attempt (which looks like an unreachable ensemble)."""
    tls = spec.zookeeper.tls
    if tls is None:
        return
    for what, f in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
        if f is None:
            continue
        try:
            with open(f, "rb") as fh:
                fh.read(1)
        except OSError as err:
            raise UserError(f"{f}: zookeeper.tls.{what}: cannot read: {err.strerror}") from None


class DeadServerHandler(SequentialThreadingHandler):  # type: ignore[misc]  # kazoo ships no type information
    """kazoo's connections with TCP_USER_TIMEOUT, so a silently dead server is left within a lease.

    kazoo notices a server that vanished without a FIN/RST (powered off, partitioned) only when a
    ping goes unanswered -- but its loop checks that only when idle, and an agent is never idle
    (a renewal every loop). It then waits for TCP to give up on the write: 18 s in the lab's
    zookeeper-leader-loss drill, longer than the session, so the holder demoted and nobody could
    take over. With TCP_USER_TIMEOUT the kernel drops a connection whose sent data stays
    unacknowledged this long (ACKs come from the server's kernel, so a busy JVM does not trip it)
    and kazoo reconnects to another server while the session is still alive.
    """

    def __init__(self, user_timeout_s: float) -> None:
        super().__init__()
        self.user_timeout_ms = max(200, int(user_timeout_s * 1000))

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        sock = super().create_connection(*args, **kwargs)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, self.user_timeout_ms)
        return sock


class Coordinator:
    """One ZooKeeper session for one agent (or one CLI invocation)."""

    def __init__(self, spec: ClusterSpec, identity: str, *, request_timeout: float | None = None) -> None:
        self.spec = spec
        self.identity = identity
        # Paths adds the leading "/" (the chroot's own one made every path start "//": kazoo
        # normalised it away, but log lines and errors showed it)
        self.paths = Paths(spec.zookeeper.chroot.strip("/") + "/" + spec.name if spec.zookeeper.chroot != "/" else spec.name)
        self.timeout = request_timeout or spec.timing.request_timeout_s
        auth = read_auth(spec)
        check_tls_files(spec)
        self.acl: list[ACL] | None = None  # for new znodes: the cluster root's ACL (see _adopt_acl)
        self.own_acl: ACL | None = None
        auth_data = None
        if auth:
            # only the cluster's credentials may read or change its znodes
            self.own_acl = make_digest_acl(auth[0], auth[1], all=True)
            self.acl = [self.own_acl]
            auth_data = [("digest", f"{auth[0]}:{auth[1]}")]
        self._auth_data = auth_data
        self.state = KazooState.LOST
        self.state_changed = threading.Event()
        self.cache = WatchCache(lambda: self.zk)  # the snapshot's watched reads (coord/watchcache.py)
        self._members = MemberMemo()  # the snapshot's decoded members, by their bytes
        self._leases: dict[str, tuple[Any, Any, float, Lease]] = {}  # role -> (data, stat, seen, decoded)
        self._acl_read_at = -ACL_REREAD_S
        self.zk = self._client()
        self._observed: dict[str, Seen] = {}  # role -> (mzxid or -1, first seen)
        self._max_term: dict[str, int] = {}  # role -> highest term this process ever saw
        self._written: dict[str, set[int]] = {}  # role -> terms this process wrote as holder
        self._promised: dict[str, tuple[float, float]] = {}  # role -> last promise read in a lease record
        # our own validity promise, written into every lease record we write (docs/safety.md)
        self.promise = Promise(lease_s=spec.timing.lease_s, margin_s=spec.timing.margin_s)
        self.heartbeat_carried = False  # the last renew() wrote its `member` too (one multi)
        self._obs_lock = threading.Lock()

    # ------------------------------------------------------------------ session

    def _client(self) -> KazooClient:
        """A fresh kazoo client (start() makes another after a failed attempt: a closed one
        cannot be started again)."""
        tls = self.spec.zookeeper.tls
        zk = KazooClient(
            hosts=self.spec.zookeeper.connect_string,
            handler=DeadServerHandler(self.spec.timing.lease_s),
            timeout=self.spec.zookeeper.session_timeout_s,
            connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5},
            auth_data=self._auth_data,
            default_acl=self.acl,
            # zookeeper.tls: the servers' secureClientPort, their certificate checked against `ca`
            **({"use_ssl": True, "verify_certs": True, "ca": tls.ca, "certfile": tls.cert, "keyfile": tls.key}
               if tls is not None else {}),
        )
        zk.add_listener(self._on_state)
        return zk

    def _on_state(self, state: KazooState) -> None:
        self.cache.forget()  # reconnected or not: the first snapshot after any change reads everything
        if state == KazooState.CONNECTED:
            self.cache.reread_followed()  # the leases at once, as a DataWatch did after a reconnection
        self.state = state
        self.state_changed.set()

    @property
    def connected(self) -> bool:
        return bool(self.state == KazooState.CONNECTED)  # kazoo is untyped: the comparison is Any to mypy

    @property
    def session_id(self) -> int | None:
        """ZooKeeper's id of our current session (None before the first): a new one means our
        ephemeral member znode is gone and the heartbeat must be written at once."""
        cid = self.zk.client_id
        return cid[0] if cid else None

    def start(self, timeout: float = 10.0) -> None:
        """Connect and make the cluster's znodes. UserError exit 1: unreachable, try again (the
        client is replaced, so start() may be called again); exit 2: access denied."""
        try:
            self.zk.start(timeout=timeout)
        except ZK_ERRORS as err:
            self._discard()
            raise UserError(f"cannot reach ZooKeeper at {self.spec.zookeeper.connect_string} within {timeout:g}s ({err or type(err).__name__})", 1) from None
        self.state = KazooState.CONNECTED
        try:
            if self.acl is not None:  # set together with own_acl: we have credentials
                self._secure_root(self.acl)
            for path in self.paths.all_dirs():
                self.zk.ensure_path(path, acl=self.acl)
            self.zk.get_children(self.paths.root)  # existing znodes pass ensure_path unread: probe one
        except NoAuthError:
            self.stop()
            f = self.spec.zookeeper.auth_file
            how = (f"the credentials in {f} are not the cluster's" if f else
                   "the cluster's znodes are protected: set zookeeper.auth_file to its credentials")
            raise UserError(f"ZooKeeper {self.paths.root}: access denied (NoAuth): {how} (docs/security.md)", 2) from None
        except ZK_ERRORS as err:  # connected, then lost it or a request timed out (no quorum yet)
            self._discard()
            raise UserError(f"ZooKeeper at {self.spec.zookeeper.connect_string}: connected, but setting up "
                            f"{self.paths.root} failed ({err!r})", 1) from None

    def _discard(self) -> None:
        """Drop a client whose start failed and make a fresh one for the next attempt."""
        try:
            self.zk.stop()
            self.zk.close()
        except Exception:  # pragma: no cover - best effort
            pass
        self.state = KazooState.LOST
        self.cache.forget()
        self.zk = self._client()

    def _secure_root(self, acl: list[ACL]) -> None:
        """The chroot may be shared by several clusters, each with its own credentials: where we
        create it, anyone may only CREATE in it (a cluster root); the cluster root and everything
        below carry the cluster's digest ACL, so nobody else reads or changes any of it."""
        chroot = self.spec.zookeeper.chroot
        if chroot != "/":
            self.zk.ensure_path(chroot, acl=[*acl, ACL(Permissions.CREATE, ANYONE_ID_UNSAFE)])
        self.zk.ensure_path(self.paths.root, acl=acl)
        acls, _ = self.zk.get_acls(self.paths.root)
        loose = [a for a in acls if a.id.scheme != "digest" and a.perms & ~Permissions.READ]
        if loose:
            log.warning("ZooKeeper %s: its ACL lets others change the cluster (%s); znodes made before "
                        "credentials were configured stay open: lock them with setAcl -R (docs/security.md)",
                        self.paths.root, acl_text(loose))
        self._adopt_acl(acls)

    def _adopt_acl(self, acls: list[ACL]) -> None:
        """New znodes get the cluster root's ACL, re-read by the snapshot every ACL_REREAD_S: during a credential
        rotation it lists the old and the new identity, so agents still on the old file and those
        already on the new one can read what the others create. Our own entry is always in it."""
        own = self.own_acl
        if own is not None and acls:
            self.acl = list(acls) if own in acls else [own, *acls]

    def stop(self) -> None:
        try:
            self.zk.stop()
            self.zk.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass

    def _write_ok(self, what: str) -> bool:
        """Lease writes only while connected: kazoo queues requests made while it reconnects and
        sends them once it is back, long after we gave up on them. A renewal landing seconds late
        is harmless to safety (its deadline came from its send time) but changes the lease, so
        every candidate waits a whole lease more before the role can be placed again.

        kazoo's own state is checked too: it turns CONNECTING *before* kazoo fails the queued
        requests, our listener's copy only after, so a request sent in between would stay queued.
        A write can still slip through that gap or be applied without its reply reaching us: the
        agent gives back any lease znode that names it for a term it no longer holds
        (Agent._give_back, docs/safety.md "Late acknowledgements")."""
        if self.connected and self.zk.client_state == KeeperState.CONNECTED:
            return True
        log.debug("%s: not sent, ZooKeeper is %s", what, self.zk.client_state)
        return False

    def reachable(self, timeout: float) -> bool:
        """ZooKeeper answers a read within `timeout` (failsafe mode: a peer asked to confirm).

        kazoo's CONNECTED is not enough: after every server went silent (powered off, the switch
        to the ZooKeeper hosts gone) it stays CONNECTED until TCP_USER_TIMEOUT (a lease) drops the
        socket -- longer than a holder that noticed first (its renewal timed out) has before its
        deadline, so a peer judging by kazoo's state refused every whole-ZooKeeper outage. A read
        that does not come back in time counts as unreachable; mistaking a slow ZooKeeper for an
        unreachable one only makes the peer promise (safe: it then may not acquire), never
        acquire (docs/safety.md "Failsafe mode").

        A sync, not a read: a follower serves reads from its own copy for up to syncLimit after
        the quorum is gone (it has not noticed yet), so a read said "reachable" in exactly the
        window where the holder's renewals failed, and the peer refused it (the failsafe drill saw
        the VIP go down for 10.8 s); a sync goes through the leader and fails without a quorum."""
        if not (self.connected and self.zk.client_state == KeeperState.CONNECTED):
            return False
        try:
            self.zk.sync_async(self.paths.root).get(timeout=timeout)
        except ZK_ERRORS:
            return False
        return True

    def wrote_term(self, role: str, term: int) -> bool:
        """True if this process wrote a lease of this term as holder (acquired or tried to: an
        acquisition whose reply was lost may have landed all the same)."""
        with self._obs_lock:
            return term in self._written.get(role, ())

    def _wait(self, async_result: Any, timeout: float | None = None) -> Any:
        return async_result.get(timeout=timeout or self.timeout)

    # ------------------------------------------------------------------ snapshot

    def observe(self, role: str, ident: int, t: float) -> float:
        """Remember when this process first saw this version of the lease (mzxid, or -1 when
        missing); return that first-seen time. `t` must be taken *after* the read returned."""
        with self._obs_lock:
            seen = self._observed[role] = first_seen(self._observed.get(role), ident, t)  # ha_local.py rule 40
            return seen.at

    def note_term(self, role: str, raw: bytes | int | None) -> None:
        """Remember the highest term seen, even in a scribbled lease: the fencing token handed out
        by our next acquisition must exceed every term any holder may still act on."""
        term = raw if isinstance(raw, int) else lease_term_hint(raw)
        with self._obs_lock:
            if term > self._max_term.get(role, 0):
                self._max_term[role] = term

    def max_term(self, role: str) -> int:
        with self._obs_lock:
            return self._max_term.get(role, 0)

    def _with_promise(self, lease: Lease) -> Lease:
        """Remember the last validity promise read in a well-formed record; a missing or scribbled
        lease carries it on, so the holder that wrote it is still waited out for as long as it
        promised (ha.py rule 11), not just for our own lease_s."""
        with self._obs_lock:
            last, out = carry_promise(self._promised.get(lease.role), lease)  # ha_local.py rule 43
            if last is not None:
                self._promised[lease.role] = last
        return out

    def watch_leases(self, roles: Iterable[str], on_release: Callable[[], None] | None = None) -> None:
        """Note lease changes the moment ZooKeeper reports them, so a candidate's wait starts at
        the holder's last renewal, not at our next poll (that poll delay would add up to a loop).
        `on_release` (must not block: it runs on kazoo's thread) is called when a holder releases,
        so a hand-off target acts at once instead of at its next loop."""
        for role in roles:
            def on_change(data: bytes | None, stat: Any, event: Any = None, role: str = role) -> None:
                self.observe(role, stat.mzxid if stat is not None else -1, clock.now())
                self.note_term(role, data)
                if on_release is not None and data and b'"holder": null' in data:
                    on_release()
            try:
                # through the snapshot's cache: one read per lease change, not one for a kazoo
                # DataWatch and another for the snapshot (coord/watchcache.py, docs/scale.md)
                self.cache.follow(self.paths.lease(role), on_change)
            except ZK_ERRORS:
                log.warning("%s: cannot watch the lease; falling back to polling", role)

    def snapshot(self, roles: Iterable[str], timeout: float | None = None, cached: bool = False) -> Cluster:
        """Members, leases, requests, maintenance and constraints, the reads pipelined. `cached`
        (the agent's loop): what no watch reported changed since it was last read comes from
        memory (coord/watchcache.py), so a write by another client shows once its watch event
        has arrived (milliseconds) rather than at the very next read."""
        zk: Any = self.cache if cached else self.zk
        timeout = timeout or self.timeout * 2
        deadline = time.monotonic() + timeout
        roles = list(roles)
        try:
            names = self._wait(zk.get_children_async(self.paths.members), timeout)
            member_q = {n: zk.get_async(self.paths.member(n)) for n in names}
            lease_q = {r: zk.get_async(self.paths.lease(r)) for r in roles}
            req_q = {r: zk.get_async(self.paths.request(r)) for r in roles}
            maint_q = zk.exists_async(self.paths.maintenance)
            cons_q = zk.get_children_async(self.paths.constraints)
            acl_q = None
            if self.own_acl is not None and (not cached or time.monotonic() - self._acl_read_at >= ACL_REREAD_S):
                # an ACL has no watch: re-read it now and then (a rotation is adopted within this)
                self._acl_read_at = time.monotonic()
                acl_q = self.zk.get_acls_async(self.paths.root)
            now_wall = time.time()
            members: dict[str, Member] = {}
            for n, q in member_q.items():
                try:
                    data, stat = q.get(timeout=max(0.01, deadline - time.monotonic()))
                except NoNodeError:
                    continue
                except NoAuthError:  # made by someone whose ACL leaves us out (a botched rotation)
                    warn_malformed(f"member {n}", None, "not readable with our credentials")
                    continue
                m = self._members.decode(n, data, max(0.0, now_wall - stat.mtime / 1000))
                node = self.spec.nodes.get(n)
                if m is None:
                    continue
                if node is None:
                    warn_malformed(f"member {n}", data, "not a node of the cluster spec")
                elif m.tier != node.tier:
                    warn_malformed(f"member {n}", data, f"tier {m.tier!r}, but the spec says {node.tier!r}")
                else:
                    members[n] = m
            self._members.keep(member_q)
            leases: dict[str, Lease] = {}
            for r, q in lease_q.items():
                try:
                    data, stat = q.get(timeout=max(0.01, deadline - time.monotonic()))
                    seen = self.observe(r, stat.mzxid, clock.now())
                    last = self._leases.get(r)
                    if last is not None and last[:3] == (data, stat, seen):
                        lease = last[3]  # the same version, seen since the same time: decoded before
                    else:
                        self.note_term(r, data)
                        lease = decode_lease(r, data, stat.version, seen, stat.mtime)._replace(zxid=stat.mzxid)
                        self._leases[r] = (data, stat, seen, lease)
                    leases[r] = self._with_promise(lease)
                except NoNodeError:
                    leases[r] = self._with_promise(decode_lease(r, None, -1, self.observe(r, -1, clock.now())))
            requests: dict[str, Request] = {}
            for r, q in req_q.items():
                try:
                    data, stat = q.get(timeout=max(0.01, deadline - time.monotonic()))
                except NoNodeError:
                    continue
                except NoAuthError:
                    warn_malformed(f"request for role {r}", None, "not readable with our credentials")
                    continue
                req = decode_request(r, data, stat.version)
                if req is not None:
                    requests[r] = req
            maintenance = maint_q.get(timeout=max(0.01, deadline - time.monotonic())) is not None
            constraints = self._constraints(zk, cons_q, deadline)
            if acl_q is not None:
                try:
                    self._adopt_acl(acl_q.get(timeout=max(0.01, deadline - time.monotonic()))[0])
                except ZK_ERRORS:
                    pass  # keep the ACL we had
        except ZK_ERRORS as err:
            log.debug("snapshot failed: %r", err)
            return Cluster({}, {}, {}, False, connected=False)
        return Cluster(members, leases, requests, maintenance, connected=self.connected, constraints=constraints)

    # ------------------------------------------------------------------ membership

    def heartbeat(self, me: Member, timeout: float | None = None) -> bool:
        """Rewrite our ephemeral member znode (create it after a session loss). `timeout`: a
        failsafe holder's bound (ha_local.py rule 44), else request_timeout_s."""
        path = self.paths.member(self.identity)
        data = encode_member(me)
        if not self._write_ok("heartbeat"):
            return False
        try:
            try:
                self._wait(self.zk.set_async(path, data), timeout)
            except NoNodeError:
                self._wait(self.zk.create_async(path, data, acl=self.acl, ephemeral=True), timeout)
            return True
        except NodeExistsError:
            return True
        except ZK_ERRORS as err:
            log.debug("heartbeat failed: %r", err)
            return False

    def leave(self) -> None:
        if not self.connected:
            return
        try:
            self._wait(self.zk.delete_async(self.paths.member(self.identity)))
        except ZK_ERRORS:
            pass

    # ------------------------------------------------------------------ the lease

    def acquire(self, role: str, seen: Lease) -> AcquireResult:
        """Take the lease if it is still exactly the version we waited out (or released):
        Acquired (t_send read before the write was sent), Lost (the lease changed or another
        writer won the race) or Unreachable (coord/outcome.py)."""
        path = self.paths.lease(role)
        if not self._write_ok(f"{role}: acquire"):
            return Unreachable("writes held back")
        try:
            self._wait(self.zk.sync_async(path))
            try:
                data, stat = self._wait(self.zk.get_async(path))
                fresh = decode_lease(role, data, stat.version, 0.0)
            except NoNodeError:
                fresh, stat = decode_lease(role, None, -1, 0.0), None
            # the same znode version is not the same write if the znode was deleted and re-created
            # meanwhile (versions restart at 0); the mzxid, which our wait was measured on, is
            changed = stat is not None and (fresh.holder != seen.holder or seen.zxid and stat.mzxid != seen.zxid)
            if fresh.version != seen.version or changed:
                log.info("%s: lease changed under us (version %d -> %d); not acquiring", role, seen.version, fresh.version)
                return Lost()
            if stat is not None:
                self.note_term(role, data)
            # a malformed lease decodes as term 0: the fencing token must still go up
            term = max(fresh.term, seen.term, self.max_term(role)) + 1
            body = encode_lease(self.identity, term, 0, acquired_at=time.time(), **self.promise)
            t_send = clock.now()
            if not self._write_ok(f"{role}: acquire"):
                return Unreachable("writes held back")
            with self._obs_lock:
                self._written.setdefault(role, set()).add(term)
            if stat is None:
                self.zk.ensure_path(self.paths.roles + "/" + role, acl=self.acl)
                self._wait(self.zk.create_async(path, body, acl=self.acl))
                version = 0
            else:
                version = self._wait(self.zk.set_async(path, body, version=stat.version)).version
            self.note_term(role, term)
            return Acquired(term, version, t_send)
        except (BadVersionError, NodeExistsError):
            log.info("%s: lost the race for the lease", role)
            return Lost()
        except ZK_ERRORS as err:
            log.warning("%s: acquire failed: %r", role, err)
            return Unreachable(repr(err))

    def renew(self, role: str, term: int, seq: int, version: int, member: Member | None = None,
              timeout: float | None = None) -> RenewResult:
        """CAS-renew: Renewed (version, t_send), Adopted (our earlier, timed-out renewal is
        there: no extension), Lost (someone else's write is there: demote now) or Unreachable
        (try again next loop); coord/outcome.py. `timeout`: a failsafe holder's bound for the
        write (ha_local.py rule 44).

        With `member`, our heartbeat rides along in the same multi: one ZooKeeper transaction
        instead of two (an idle holder's periodic heartbeat refresh, docs/safety.md "What an idle
        holder writes"). t_send is read before the multi is sent, as before a plain set, so the
        deadline is the same. A multi is all or nothing: if only the heartbeat part failed (our
        member znode is gone), the renewal is sent again alone at once, with its own t_send."""
        path = self.paths.lease(role)
        t_send = clock.now()
        if not self._write_ok(f"{role}: renew"):
            return Unreachable("writes held back")
        body = encode_lease(self.identity, term, seq, **self.promise)
        self.heartbeat_carried = False  # set when `member` went out with an acknowledged renewal
        try:
            if member is None:
                stat = self._wait(self.zk.set_async(path, body, version=version), timeout)
                return Renewed(stat.version, t_send)
            tx = self.zk.transaction()
            tx.set_data(path, body, version=version)
            tx.set_data(self.paths.member(self.identity), encode_member(member))
            lease_res, member_res = self._wait(tx.commit_async(), timeout)
            self.heartbeat_carried = not isinstance(member_res, Exception)
            if isinstance(lease_res, (BadVersionError, NoNodeError)):
                raise lease_res
            if isinstance(member_res, Exception):  # the heartbeat part failed: nothing was written
                log.debug("%s: heartbeat part of the renewal refused (%r); renewing alone", role, member_res)
                return self.renew(role, term, seq, version, timeout=timeout)
            if isinstance(lease_res, Exception):
                raise lease_res
            return Renewed(int(lease_res.version), t_send)
        except (BadVersionError, NoNodeError):
            # maybe our own earlier (timed-out) renewal landed: adopt it, without extending
            try:
                data, stat = self._wait(self.zk.get_async(path))
            except ZK_ERRORS as err:
                return Unreachable(repr(err))
            cur = decode_lease(role, data, stat.version, 0.0)
            if cur.holder == self.identity and cur.term == term:
                return Adopted(stat.version)
            return Lost()
        except ZK_ERRORS as err:
            log.debug("%s: renew failed: %r", role, err)
            return Unreachable(repr(err))

    def release(self, role: str, term: int, version: int, handoff_to: str | None,
                reason: str | None = None) -> bool:
        """Mark the lease free (after our resources are stopped), naming a preferred successor.
        A CAS on `version`, the version our own last write returned: if anybody wrote since,
        nothing is changed. The history's "released" entry is created in the same transaction,
        so it always precedes the successor's "acquired" (a separate write could land after it);
        when nothing was released the caller records the transition itself."""
        if not self._write_ok(f"{role}: release"):
            log.info("%s: ZooKeeper unreachable; the lease will expire instead of being released", role)
            return False
        tx = self.zk.transaction()
        tx.set_data(self.paths.lease(role), encode_lease(None, term, 0, handoff_to, released_by=self.identity,
                                                              **self.promise),
                    version=version)
        tx.create(self.paths.history + "/h-", self._history_body("released", role, term=term, reason=reason,
                                                                 handoff_to=handoff_to),
                  acl=self.acl, sequence=True)
        try:
            results = self._wait(tx.commit_async())
        except ZK_ERRORS as err:
            log.info("%s: release write failed (%r); the lease will expire instead", role, err)
            return False
        errors = [r for r in results if isinstance(r, Exception)]
        if any(isinstance(r, (BadVersionError, NoNodeError)) for r in errors):
            log.info("%s: the lease changed since our write (version %d); nothing to release", role, version)
            return False
        if errors:
            log.info("%s: release write failed (%r); the lease will expire instead", role, errors[0])
            return False
        return True

    # ------------------------------------------------------------------ requests, maintenance, history

    def put_request(self, role: str, kind: str, to: str | None, by: str, not_before: float | None = None) -> None:
        path = self.paths.request(role)
        data = encode_request(kind, to, by, time.time(), not_before)
        try:
            self.zk.set(path, data)
        except NoNodeError:
            self.zk.create(path, data, acl=self.acl, makepath=True)

    def clear_request(self, role: str, version: int | None = None) -> None:
        try:
            self._wait(self.zk.delete_async(self.paths.request(role), version=-1 if version is None else version))
        except ZK_ERRORS:
            pass

    def _constraints(self, zk: Any, children_q: Any, deadline: float) -> tuple[Constraint, ...]:
        """The placement constraints (none when the folder is missing: a cluster made before them)."""
        try:
            names = children_q.get(timeout=max(0.01, deadline - time.monotonic()))
        except NoNodeError:
            return ()
        qs = {n: zk.get_async(self.paths.constraint(n)) for n in sorted(names)}
        out = []
        for n, q in qs.items():
            try:
                data, _ = q.get(timeout=max(0.01, deadline - time.monotonic()))
            except NoNodeError:
                continue
            except NoAuthError:
                warn_malformed(f"constraint {n}", None, "not readable with our credentials")
                continue
            con = decode_constraint(n, data)
            if con is not None:
                out.append(con)
        return tuple(out)

    def put_constraint(self, node: str, role: str | None, by: str, until: float | None) -> Constraint:
        """Set (or replace) a standby (role None) or ban constraint."""
        con = Constraint(node, role, by, time.time(), until)
        path = self.paths.constraint(con.name)
        data = encode_constraint(con.by, con.at, con.until)
        try:
            self.zk.set(path, data)
        except NoNodeError:
            self.zk.create(path, data, acl=self.acl, makepath=True)
        return con

    def clear_constraints(self, node: str | None = None, role: str | None = None, standby: bool = False) -> list[str]:
        """Remove matching constraints: `standby` for node standby, else bans of `role` (of `node`
        only, when given). Returns the names removed."""
        try:
            names = self.zk.get_children(self.paths.constraints)
        except NoNodeError:
            return []
        removed = []
        for n in sorted(names):
            parsed = parse_constraint_name(n)
            if parsed is None:
                continue
            c_node, c_role = parsed
            hit = (c_role is None and standby and c_node == node) or (
                c_role is not None and not standby and c_role == role and node in (None, c_node))
            if hit:
                try:
                    self.zk.delete(self.paths.constraint(n))
                    removed.append(n)
                except NoNodeError:
                    pass
        return removed

    def set_maintenance(self, on: bool, by: str) -> None:
        if on:
            try:
                self.zk.create(self.paths.maintenance, json.dumps({"by": by, "at": time.time()}).encode(), acl=self.acl)
            except NodeExistsError:
                pass
        else:
            try:
                self.zk.delete(self.paths.maintenance)
            except (NoNodeError, NotEmptyError):
                pass

    def record(self, event: str, role: str | None = None, **fields: Any) -> None:
        """Append one transition to the history (sequential znode); never raises."""
        try:
            self.zk.create_async(self.paths.history + "/h-", self._history_body(event, role, **fields), acl=self.acl,
                                 sequence=True)
        except ZK_ERRORS:
            log.debug("history write failed", exc_info=True)

    def _history_body(self, event: str, role: str | None, **fields: Any) -> bytes:
        return json.dumps({"at": time.time(), "node": self.identity, "event": event, "role": role, **fields}).encode()

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last `limit` transitions, oldest first. Entries someone else scribbled (not JSON,
        fields of the wrong type, names not ours) are skipped with a log line."""
        names = [n for n in self.zk.get_children(self.paths.history) if n.startswith("h-") and n[2:].isdigit()]
        names = sorted(names, key=lambda n: int(n[2:]))[-limit:]
        out = []
        for n in names:
            try:
                data, _ = self.zk.get(self.paths.history + "/" + n)
            except NoNodeError:
                continue
            except NoAuthError:
                warn_malformed(f"history entry {n}", None, "not readable with our credentials")
                continue
            try:
                item = json.loads(data)
            except (ValueError, RecursionError):  # also bad UTF-8; RecursionError: "[[[[..." too deep
                item = None
            at = item.get("at") if isinstance(item, dict) else None
            ok = (isinstance(item, dict) and plausible_time(at)  # 1e400 / NaN broke the CLI's date formatting
                  and all(item.get(k) is None or isinstance(item.get(k), str) for k in ("node", "event", "role")))
            if not ok:
                warn_malformed(f"history entry {n}", data, "not a transition record")
                continue
            item["seq"] = int(n[2:])
            out.append(item)
        return out

    def trim_history(self, keep: int = 1000, batch: int = 1000) -> int:
        """Delete all but the newest `keep` transitions, the oldest first and at most `batch` per
        call (ours by name, h-<sequence>; anything else under /history is left alone). Idempotent,
        and one listing when there is nothing to delete; never raises. Returns how many went."""
        try:
            names = self._wait(self.zk.get_children_async(self.paths.history))
        except ZK_ERRORS as err:
            log.debug("history trim: listing failed: %r", err)
            return 0
        seqs = sorted((n for n in names if n.startswith("h-") and n[2:].isdigit()), key=lambda n: int(n[2:]))
        old = seqs[:max(0, len(seqs) - keep)][:batch]
        pending = [self.zk.delete_async(self.paths.history + "/" + n) for n in old]
        deleted = 0
        for q in pending:
            try:
                self._wait(q)
                deleted += 1
            except NoNodeError:  # another agent trimmed it first
                pass
            except ZK_ERRORS as err:
                log.debug("history trim: delete failed: %r", err)
        return deleted
