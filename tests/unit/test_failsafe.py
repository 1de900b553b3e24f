"""Failsafe mode, the peer's side (hacluster/failsafe.py): what a node confirms to a holder cut off
from ZooKeeper, and how the holder reads the answers. Each refusal below is a safety rule: a
confirmation promises the holder nobody of the tier will acquire for a lease."""

from __future__ import annotations

import json

import pytest

from hacluster.coord.model import Lease
from hacluster.failsafe import Question, answer, misdirected, parse_question, read_answer
from hacluster.ha import Promise
from hacluster.spec import parse_spec
from hacluster.http.switchover_body import BadBody

SPEC = parse_spec("""\
cluster: t
failsafe: true
zookeeper: {hosts: ["127.0.0.1:2181"]}
roles:
  store: {tier: store}
  mx: {tier: relay}
nodes:
  - {name: s1, tier: store, interface: lo, addresses: [127.0.0.2/8]}
  - {name: s2, tier: store, interface: lo, addresses: [127.0.0.3/8]}
  - {name: r1, tier: relay, interface: lo, addresses: [127.0.0.4/8]}
""")
NOW = 50.0
Q = Question("store", "s1", 7, 1.0)
LEASE = Lease("store", "s1", 7, 3, 12)


def ask(**kw: object):
    base = dict(enabled=True, connected=False, holding=False, lease=LEASE, promise=None, own_lease_s=1.0, now=NOW)
    return answer(Q, **{**base, **kw})  # type: ignore[arg-type]


def test_confirms_and_promises_a_lease_from_now() -> None:
    r = ask()
    assert r.confirmed and r.promise == Promise("s1", 7, NOW + 1.0)
    body = r.body("s2", Q, NOW)
    assert body["promise_s"] == pytest.approx(1.0) and body["confirmed"] is True


@pytest.mark.parametrize("kw,why", [
    ({"enabled": False}, "failsafe is off"),
    ({"connected": True}, "ZooKeeper is reachable"),
    ({"holding": True}, "holds store"),
    ({"lease": LEASE._replace(holder="s2", term=8)}, "names s2"),
    ({"lease": LEASE._replace(term=8)}, "newer term 8"),
    ({"promise": Promise("s3", 9, NOW + 0.5)}, "promised s3"),
])
def test_refuses(kw: dict, why: str) -> None:
    """Each condition of a confirmation: without it, a refusal turns into a promise."""
    r = ask(**kw)
    assert not r.confirmed and r.promise is None and why in r.reason, r


def test_unknown_or_released_lease_and_an_expired_promise_do_not_block() -> None:
    assert ask(lease=None).confirmed
    assert ask(lease=LEASE._replace(holder=None)).confirmed
    assert ask(lease=LEASE._replace(term=6)).confirmed  # our view is older than the holder's
    # ours names another node (here: ourselves, demoted) at an older term: the asker took over
    # after it by CAS, and we never saw that write (ZooKeeper went down right after it)
    assert ask(lease=LEASE._replace(holder="s2", term=6)).confirmed
    assert not ask(lease=LEASE._replace(holder="s2", term=7)).confirmed
    assert ask(promise=Promise("s3", 9, NOW)).confirmed


def test_a_promise_lasts_the_longer_lease_and_never_shrinks() -> None:
    assert ask(own_lease_s=5.0).promise == Promise("s1", 7, NOW + 5.0)
    assert answer(Q._replace(lease_s=3.0), enabled=True, connected=False, holding=False, lease=None, promise=None,
                  own_lease_s=1.0, now=NOW).promise == Promise("s1", 7, NOW + 3.0)
    assert ask(promise=Promise("s1", 7, NOW + 9.0)).promise == Promise("s1", 7, NOW + 9.0)


@pytest.mark.parametrize("body,field", [
    ([1], None),
    ({"role": "store", "holder": "s1", "term": 1, "lease_s": 1, "x": 1}, "x"),
    ({"role": "nope", "holder": "s1", "term": 1, "lease_s": 1}, "role"),
    ({"role": "store", "holder": "s9", "term": 1, "lease_s": 1}, "holder"),
    ({"role": "store", "holder": "s1", "term": True, "lease_s": 1}, "term"),
    ({"role": "store", "holder": "s1", "term": -1, "lease_s": 1}, "term"),
    ({"role": "store", "holder": "s1", "term": 1, "lease_s": 0}, "lease_s"),
    ({"role": "store", "holder": "s1", "term": 1, "lease_s": 10**400}, "lease_s"),
    ({"role": "store", "holder": "s1", "term": 1}, "lease_s"),
])
def test_questions_not_of_this_cluster_are_400(body: object, field: str | None) -> None:
    with pytest.raises(BadBody) as err:
        parse_question(body, SPEC)
    assert err.value.field == field


def test_a_good_question() -> None:
    assert parse_question({"role": "store", "holder": "s1", "term": 7, "lease_s": 1}, SPEC) == Q
    assert misdirected(Q, SPEC, "s2") is None
    assert parse_question({"role": "store", "holder": "s1", "term": 7.0, "lease_s": 1}, SPEC) == Q


@pytest.mark.parametrize("q,me,why", [
    (Question("mx", "r1", 1, 1.0), "s2", "does not serve role mx"),
    (Q, "s1", "s1 is the asker"),
    (Q._replace(holder="r1"), "s2", "r1 is not of tier store"),
])
def test_questions_we_cannot_confirm_are_answered_no(q: Question, me: str, why: str) -> None:
    """Well-formed but not ours (the schema allows any role and node): refused, never promised."""
    assert why in (misdirected(q, SPEC, me) or "")


def reply(**kw: object) -> bytes:
    return json.dumps({"node": "s2", "role": "store", "term": 7, "confirmed": True, "reason": "", "promise_s": 1.0,
                       **kw}).encode()


def test_the_holder_counts_only_a_confirmation_of_its_own_question() -> None:
    assert read_answer("s2", Q, 200, reply()).confirmed
    assert read_answer("s2", Q, 200, reply()).promise_s == 1.0
    for status, raw in [(200, reply(confirmed=False)), (200, reply(node="s3")), (200, reply(term=6)),
                        (200, reply(role="mx")), (200, reply(promise_s=None)), (200, reply(promise_s=-1)),
                        (200, reply(confirmed="yes")), (401, reply()), (200, b"garbage"), (200, b"[]")]:
        assert not read_answer("s2", Q, status, raw).confirmed, raw


def test_the_poll_asks_every_peer_at_once_and_waits_no_longer_than_its_timeout() -> None:
    """One peer answers, one accepts the connection and never replies (a frozen agent): the poll
    returns after about request_timeout_s with the first answer confirmed and the other missing
    or failed, sent_at read before it."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from hacluster import clock
    from hacluster.failsafe import Poller

    class Yes(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.headers["Authorization"] == "Bearer tok"
            data = json.dumps({"node": "s2", "role": body["role"], "term": body["term"], "confirmed": True,
                               "reason": "", "promise_s": body["lease_s"]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.3", 0), Yes)
    port = srv.server_address[1]
    frozen = socket.socket()
    frozen.bind(("127.0.0.5", port))
    frozen.listen(8)  # accepts in the kernel, never answers
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    spec = parse_spec(f"""\
cluster: t
failsafe: true
zookeeper: {{hosts: ["127.0.0.1:2181"]}}
api: {{port: {port}}}
roles:
  store: {{tier: store}}
nodes:
  - {{name: s1, tier: store, interface: lo, addresses: [127.0.0.2/8]}}
  - {{name: s2, tier: store, interface: lo, addresses: [127.0.0.3/8]}}
  - {{name: s3, tier: store, interface: lo, addresses: [127.0.0.5/8]}}
""")
    poller = Poller(spec, "s1", "tok")
    try:
        t0 = clock.now()
        polls = poller.poll({"store": Q._replace(lease_s=spec.timing.lease_s)})  # the peer promises what it is asked
        took = clock.now() - t0
        poll = polls["store"]
        assert t0 <= poll.sent_at <= t0 + 0.01
        assert poll.answers["s2"].covers(spec.timing), poll
        assert "s3" not in poll.answers or not poll.answers["s3"].confirmed, poll
        assert spec.timing.request_timeout_s <= took < spec.timing.request_timeout_s + 0.3, took
        assert Poller(spec, "s1", None).poll({"store": Q}) == {}  # no token: nothing asked, nothing extended
    finally:
        poller.stop()
        srv.shutdown()
        frozen.close()


def test_a_peer_just_back_on_zookeeper_answers_as_if_it_were_down_for_two_leases() -> None:
    """ZooKeeper's return: the holder may reconnect later than its peer; the peer must not end the
    holder's extension at once. A holder cut off alone (the peer never lost ZooKeeper) is refused."""
    from hacluster.failsafe import settled

    assert not settled(False, None, NOW, 1.0)
    assert settled(True, None, NOW, 1.0)  # never lost ZooKeeper: the holder alone is cut off
    assert not settled(True, NOW - 0.5, NOW, 1.0) and not settled(True, NOW - 1.99, NOW, 1.0)
    assert settled(True, NOW - 2.0, NOW, 1.0)
