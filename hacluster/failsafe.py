"""Failsafe mode (spec `failsafe: true`; docs/safety.md "Failsafe mode"; ha.py rules 13-14).

While ZooKeeper is unreachable, the holder asks every other node of its tier, as the spec lists
them, over the agents' authenticated API (POST /failsafe) whether it may go on. Two halves:

* `answer`: a peer's reply, pure, from its own state. It confirms only if failsafe is on here, it
  cannot reach ZooKeeper either, holds nothing of the role, sees no other holder (its last lease
  read from ZooKeeper, and its promises) -- and then promises not to acquire the role until
  max(our lease_s, the asker's) has passed on its own clock. The agent records the promise before
  the reply leaves, under the lock its acquisitions take.
* `Poller`: the holder's side, all peers in parallel, bounded by the time left to the holder's
  deadline (at least request_timeout_s). The send time is read before the first request goes
  out; ha.py extends the holder from it (rule 13).
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Mapping, NamedTuple

from . import clock
from .coord.model import Lease
from .ha import FailsafePoll, PeerAnswer, Promise
from .spec import ClusterSpec
from hacluster.http.switchover_body import BadBody
from .timing import MAX_LEASE_S

log = logging.getLogger(__name__)

PATH = "/failsafe"


class Question(NamedTuple):
    """The holder's request body: it holds `role` at `term`, acting on a lease of `lease_s`."""

    role: str
    holder: str
    term: int
    lease_s: float

    def body(self) -> dict[str, Any]:
        return {"role": self.role, "holder": self.holder, "term": self.term, "lease_s": self.lease_s}


def parse_question(data: Any, spec: ClusterSpec) -> Question:
    """Validate POST /failsafe's body against our spec: a known role and node, sane numbers.
    A question we cannot confirm (not our tier, asked by ourselves) is answered, not rejected:
    see `misdirected`."""
    if not isinstance(data, dict):
        raise BadBody("body must be a JSON object {role, holder, term, lease_s}")
    extra = set(data) - {"role", "holder", "term", "lease_s"}
    if extra:
        raise BadBody(f"unknown field {sorted(extra)[0]!r} (allowed: role, holder, term, lease_s)", sorted(extra)[0])
    role, holder, term, lease_s = (data.get(k) for k in ("role", "holder", "term", "lease_s"))
    if not isinstance(role, str) or role not in spec.roles:
        raise BadBody(f"role: no such role {str(role)[:80]!r}", "role")
    if not isinstance(holder, str) or holder not in spec.nodes:
        raise BadBody(f"holder: no such node {str(holder)[:80]!r}", "holder")
    if isinstance(term, float) and term.is_integer():  # JSON Schema's integer: 7.0 is one
        term = int(term)
    if not isinstance(term, int) or isinstance(term, bool) or not 0 <= term < 2**53:
        raise BadBody("term must be an integer in [0, 2**53)", "term")
    if (not isinstance(lease_s, (int, float)) or isinstance(lease_s, bool)
            or not 0 < lease_s <= MAX_LEASE_S):  # NaN fails this too
        raise BadBody(f"lease_s must be a number in (0, {MAX_LEASE_S:g}]", "lease_s")
    return Question(role, holder, int(term), float(lease_s))


def misdirected(q: Question, spec: ClusterSpec, me: str) -> str | None:
    """Why this question is not ours to confirm: only the other nodes of a role's tier are asked."""
    tier = spec.roles[q.role].tier
    if spec.nodes[me].tier != tier:
        return f"{me} does not serve role {q.role}"
    if q.holder == me:
        return f"{me} is the asker"
    if spec.nodes[q.holder].tier != tier:
        return f"{q.holder} is not of tier {tier}"
    return None


class Reply(NamedTuple):
    confirmed: bool
    reason: str  # why not; or what we promised
    promise: Promise | None = None  # to record before replying (confirmed only)

    def body(self, node: str, q: Question, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"node": node, "role": q.role, "term": q.term, "confirmed": self.confirmed,
                               "reason": self.reason}
        if self.promise is not None:
            out["promise_s"] = round(self.promise.until - now, 6)
        return out


#: after our own reconnect to ZooKeeper, this many leases in which we still answer as if it were
#: unreachable (see `settled`)
RECONNECT_GRACE_LEASES = 2.0


def settled(reachable: bool, reconnected_at: float | None, now: float, lease_s: float) -> bool:
    """Whether a peer counts as connected for its answer: ZooKeeper reachable, and not just back.

    When ZooKeeper returns, the peers and the holder reconnect at their own pace (a retry
    backoff, a busy machine). A peer back first that refused at once ended the holder's extension
    before the holder could renew by CAS (bench zk-outage, load ~60: the VIP down 2.7 s at
    ZooKeeper's return). For RECONNECT_GRACE_LEASES leases after our own reconnect we answer as
    during the outage; a promise restrains only us, so this is safe, and a holder cut off from
    ZooKeeper alone (its peers never lost it) is still refused at once."""
    if not reachable:
        return False
    return reconnected_at is None or now - reconnected_at >= RECONNECT_GRACE_LEASES * lease_s


def answer(q: Question, *, enabled: bool, connected: bool, holding: bool, lease: Lease | None,
           promise: Promise | None, own_lease_s: float, now: float) -> Reply:
    """A peer's answer from its own state (see the module docstring); pure."""
    if not enabled:
        return Reply(False, "failsafe is off on this node")
    if connected:
        return Reply(False, "ZooKeeper is reachable from here: renew through it")
    if holding:
        return Reply(False, f"this node holds {q.role}")
    # another holder at a term the asker's does not supersede. An older term naming another node
    # (often ourselves, demoted) does not block: the asker's term was written by CAS after that
    # lease ran out, and any failsafe extension of it ended with the promises it rested on, which
    # the asker waited out before acquiring (rule 14) -- the asker is newer than what we read
    if lease is not None and lease.exists and lease.holder is not None and lease.holder != q.holder \
            and lease.term >= q.term:
        return Reply(False, f"last lease read names {lease.holder} (term {lease.term})")
    if lease is not None and lease.exists and lease.term > q.term:
        return Reply(False, f"last lease read has a newer term {lease.term}")
    if promise is not None and now < promise.until and (promise.holder, promise.term) != (q.holder, q.term):
        return Reply(False, f"promised {promise.holder} (term {promise.term}) already")
    until = now + max(own_lease_s, q.lease_s)
    if promise is not None and (promise.holder, promise.term) == (q.holder, q.term):
        until = max(until, promise.until)
    return Reply(True, f"promised not to acquire for {until - now:.3f}s", Promise(q.holder, q.term, until))


def read_answer(peer: str, q: Question, status: int, raw: bytes) -> PeerAnswer:
    """A peer's HTTP reply as ha.py sees it: confirmed only if it answers exactly our question."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return PeerAnswer(peer, False, 0.0, f"HTTP {status}, not JSON")
    if not isinstance(data, dict):
        return PeerAnswer(peer, False, 0.0, f"HTTP {status}, not a JSON object")
    if status != 200:
        return PeerAnswer(peer, False, 0.0, f"HTTP {status}: {str(data.get('error', ''))[:100]}")
    if (data.get("node"), data.get("role"), data.get("term")) != (peer, q.role, q.term):
        return PeerAnswer(peer, False, 0.0, "answered another question")
    promise_s = data.get("promise_s", 0.0)
    if data.get("confirmed") is not True or not isinstance(promise_s, (int, float)) or isinstance(promise_s, bool) \
            or not 0 < promise_s <= MAX_LEASE_S:
        return PeerAnswer(peer, False, 0.0, str(data.get("reason", "refused"))[:100])
    return PeerAnswer(peer, True, float(promise_s))


def client_tls(spec: ClusterSpec) -> ssl.SSLContext | None:
    """HTTPS to the peers when the API serves HTTPS: the server certificate is checked against
    api.tls_client_ca (else the system's CAs), and ours is presented as the client certificate.
    A handshake that fails is a missing answer: no extension, never a wrong one."""
    api = spec.api
    if not api.tls_cert:
        return None
    ctx = ssl.create_default_context(cafile=api.tls_client_ca or None)
    ctx.load_cert_chain(api.tls_cert, api.tls_key)
    return ctx


class Poller:
    """The holder's side: ask every peer at once, wait at most `timeout`, return what came back."""

    def __init__(self, spec: ClusterSpec, me: str, token: str | None) -> None:
        self.spec = spec
        self.me = me
        self.token = token
        self.tls = client_tls(spec)
        self.timeout = spec.timing.request_timeout_s
        self.peers = tuple(n for n, node in spec.nodes.items() if node.tier == spec.nodes[me].tier and n != me)
        roles = sum(1 for r in spec.roles.values() if r.tier == spec.nodes[me].tier)
        # one worker per request of a poll, and as many again for requests of the last poll still
        # waiting out their timeout (a frozen peer): a poll never queues behind the previous one
        self.pool = ThreadPoolExecutor(max_workers=max(1, 2 * len(self.peers) * max(1, roles)),
                                       thread_name_prefix="failsafe")

    def url(self, peer: str) -> str:
        node = self.spec.nodes[peer]
        host = node.api_address or node.address
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.spec.api.port}{PATH}"

    def ask(self, peer: str, q: Question, timeout: float | None = None) -> PeerAnswer:
        req = urllib.request.Request(self.url(peer), json.dumps(q.body()).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self.tls) as resp:
                return read_answer(peer, q, resp.status, resp.read(65536))
        except urllib.error.HTTPError as err:
            return read_answer(peer, q, err.code, err.read(65536))
        except (OSError, ValueError) as err:  # refused, timed out, TLS, a reset mid-reply
            return PeerAnswer(peer, False, 0.0, f"no answer ({type(err).__name__})")

    def poll(self, questions: Mapping[str, Question], timeout: float | None = None) -> dict[str, FailsafePoll]:
        """role -> this loop's poll. Answers later than `timeout` (default request_timeout_s)
        count as missing. A longer timeout is safe: every answer was computed after `sent_at`,
        which is all the extension rests on; the agent passes the time left to its deadline."""
        if self.token is None:
            return {}  # no token: the peers would refuse us (401/403), and we could not extend
        limit = max(self.timeout, timeout or 0.0)
        sent_at = clock.now()  # before the first request leaves: the extension counts from here
        futs = {(role, p): self.pool.submit(self.ask, p, q, limit) for role, q in questions.items() for p in self.peers}
        wait(futs.values(), timeout=limit + 0.02)
        out: dict[str, FailsafePoll] = {}
        for role in questions:
            answers = {p: f.result() for (r, p), f in futs.items() if r == role and f.done()}
            out[role] = FailsafePoll(sent_at, answers)
        return out

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
