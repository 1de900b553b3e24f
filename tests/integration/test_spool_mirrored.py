"""Mirrored spool over a real TCP replicator on 127.0.0.1 between two real directories.

The old holder (store1) runs as separate processes (`python -m hacluster.spool serve|send`) so it
can be killed with SIGKILL mid-stream; the standby/new holder (store2) is the MirroredSpool
resource in this process, as the agent runs it. Counting is by Maildir unique name and content
hash: every message accepted by store1 must end up on store2 exactly once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from hacluster.resources.base import OCF
from hacluster.resources.spool import MirroredSpool
from hacluster.spool import metrics
from hacluster.spool.maildir import ensure_maildir, unique_of
from hacluster.spool.marker import read_marker
from hacluster.spool.protocol import Client, Rejected
from hacluster.spool.sender import Sender
from .waiting import wait_for as _wait_for

pytestmark = pytest.mark.timeout(120)

BOXES = ("example.org/alice", "example.org/bob")


# --------------------------------------------------------------------------- helpers


class Procs:
    """Subprocesses of one test, killed at teardown whatever happened."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def spawn(self, *args: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "hacluster.spool", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def serve(self, path: Path, node: str, port: int = 0) -> tuple[subprocess.Popen, int]:
        p = self.spawn("serve", "--path", str(path), "--listen", f"127.0.0.1:{port}", "--node", node)
        line = p.stdout.readline()  # "listening HOST:PORT" once bound
        assert line.startswith("listening"), line + p.stderr.read()
        return p, int(line.rsplit(":", 1)[1])

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    try:
        yield ps
    finally:
        ps.close()


@pytest.fixture
def spools(tmp_path: Path) -> Iterator[list[MirroredSpool]]:
    made: list[MirroredSpool] = []
    try:
        yield made
    finally:
        for s in made:
            s.close()


def deliver(root: Path, i: int, size: int) -> str:
    """What Postfix's virtual(8) does: write under tmp/, fsync, link into new/, unlink."""
    md = root / BOXES[i % len(BOXES)]
    name = f"{1_700_000_000 + i}.M{i}P4242.store1"
    body = f"Message-ID: <{i}@test>\n\n".encode() + os.urandom(size)
    with open(md / "tmp" / name, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.link(md / "tmp" / name, md / "new" / name)
    os.unlink(md / "tmp" / name)
    return f"{BOXES[i % len(BOXES)]}/new/{name}"


def inventory(root: Path) -> dict[str, list[str]]:
    """key (mailbox/unique) -> content hashes of every copy found (a duplicate shows as 2)."""
    out: dict[str, list[str]] = {}
    for box in BOXES:
        for sub in ("new", "cur"):
            d = root / box / sub
            for name in os.listdir(d) if d.is_dir() else []:
                out.setdefault(f"{box}/{unique_of(name)}", []).append(hashlib.sha256((d / name).read_bytes()).hexdigest())
    return out


def make_root(path: Path) -> Path:
    for box in BOXES:
        ensure_maildir(path / box)
    return path


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.01) -> Any:
    return _wait_for(pred, timeout, what, interval)  # this file polls faster than the default


def standby(spools: list[MirroredSpool], root: Path, peer_port: int, **kw) -> MirroredSpool:
    s = MirroredSpool("spool", root, "store2", [("127.0.0.1", peer_port)], ("127.0.0.1", 0),
                      catchup_timeout_s=3.0, scan_interval_s=0.5, **kw)
    spools.append(s)
    s.open_receiver()
    return s


# --------------------------------------------------------------------------- failover


def test_sender_killed_mid_stream_then_promotion_catches_up(tmp_path: Path, procs: Procs,
                                                             spools: list[MirroredSpool]) -> None:
    a, b = make_root(tmp_path / "store1"), make_root(tmp_path / "store2")
    _, port_a = procs.serve(a, "store1")  # store1's receiver: serves list/get to a new holder
    s2 = standby(spools, b, port_a)
    sender = procs.spawn("send", "--path", str(a), "--peer", f"127.0.0.1:{s2.receiver.port}", "--token", "1",
                         "--node", "store1", "--scan-interval-s", "0.5")
    n, accepted, stop = 600, [], threading.Event()

    def mta() -> None:  # store1 keeps accepting mail until it is demoted
        for i in range(n):
            if stop.is_set():
                return
            accepted.append(deliver(a, i, 20_000))

    t = threading.Thread(target=mta)
    t.start()
    try:
        wait_for(lambda: s2.receiver.stats["stored"] >= 150, 30, "150 messages replicated")
        sender.send_signal(signal.SIGKILL)  # the replicator dies mid-stream
        sender.wait(10)
        copied_before = s2.receiver.stats["stored"]
    finally:
        t.join(60)
    assert len(accepted) == n and copied_before < n
    # store1 is demoted (its MTA stops accepting); store2 is promoted with the next term
    s2.set_fencing_token(2)
    assert s2.start() == OCF.SUCCESS
    rep = s2.last_promotion
    assert rep["unreachable"] == {} and rep["failed"] == {} and rep["missing"] == []
    have = inventory(b)
    assert sorted(have) == sorted(inventory(a)), "lost or extra messages"
    assert all(len(v) == 1 for v in have.values()), "duplicates"
    assert have == inventory(a), "content differs"
    assert len(rep["pulled"]) == n - copied_before
    assert read_marker(a).token == 2  # store1's receiver learned that a newer holder exists
    # the old holder's replicator, restarted with its old term, is refused and gives up
    again = procs.spawn("send", "--path", str(a), "--peer", f"127.0.0.1:{s2.receiver.port}", "--token", "1",
                        "--node", "store1")
    assert again.wait(20) == 1 and "stale" in again.stderr.read()
    assert inventory(b) == have


def test_old_holder_powered_off_reports_exactly_what_is_missing_then_recovers(
        tmp_path: Path, procs: Procs, spools: list[MirroredSpool]) -> None:
    a, b = make_root(tmp_path / "store1"), make_root(tmp_path / "store2")
    n = 1500
    for i in range(n):  # accepted before the sender (re)connects: all announced at connect
        deliver(a, i, 20_000)
    serve_a, port_a = procs.serve(a, "store1")
    s2 = standby(spools, b, port_a)
    sender = procs.spawn("send", "--path", str(a), "--peer", f"127.0.0.1:{s2.receiver.port}", "--token", "1",
                         "--node", "store1")
    wait_for(lambda: s2.receiver.stats["stored"] >= 200, 30, "200 messages replicated")
    for p in (sender, serve_a):  # power off store1: sender and receiver die at once
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    copied = set(inventory(b))
    assert 0 < len(copied) < n
    s2.set_fencing_token(2)
    assert s2.start() == OCF.SUCCESS  # availability first: promote, report what is not here
    rep = s2.last_promotion
    assert list(rep["unreachable"]) == [f"127.0.0.1:{port_a}"] and rep["pulled"] == []
    truly_missing = sorted(set(inventory(a)) - copied)
    assert [f"{m.rsplit('/', 2)[0]}/{unique_of(m.rsplit('/', 1)[1])}" for m in rep["missing"]] == truly_missing
    assert s2.monitor() == OCF.SUCCESS
    # store1 powers on again (same disk, same port): the new holder pulls what only it had
    procs.serve(a, "store1", port_a)
    wait_for(lambda: len(inventory(b)) == n, 60, "all messages on the new holder")
    have = inventory(b)
    assert all(len(v) == 1 for v in have.values()) and have == inventory(a)
    assert sorted(s2.senders[0].pulled) == sorted(rep["missing"])


def test_require_catchup_refuses_promotion_without_the_old_holder(tmp_path: Path, spools: list[MirroredSpool]) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    s2 = standby(spools, make_root(tmp_path / "store2"), dead_port, require_catchup=True)
    s2.set_fencing_token(5)
    assert s2.start() == OCF.ERR_GENERIC
    assert s2.monitor() == OCF.NOT_RUNNING


# --------------------------------------------------------------------------- fencing on the wire


def test_stale_token_is_rejected_over_tcp(tmp_path: Path, spools: list[MirroredSpool]) -> None:
    a, b = make_root(tmp_path / "store1"), make_root(tmp_path / "store2")
    s2 = standby(spools, b, 1)
    with Client("127.0.0.1", s2.receiver.port, 3, "store1") as c:
        c.call("hello")
    s2.receiver.raise_token(4, "store2")  # store2 promoted meanwhile
    with Client("127.0.0.1", s2.receiver.port, 3, "store1") as c, pytest.raises(Rejected) as err:
        c.call("push", b"late mail", path="example.org/alice/new/1.M1.store1")
    assert err.value.code == "stale" and err.value.answer["highest"] == 4
    deliver(a, 1, 100)
    stale = Sender(a, ("127.0.0.1", s2.receiver.port), 3, "store1").start()
    wait_for(lambda: stale.state == "stale" and not stale.alive(), 10, "the stale sender to give up")
    assert inventory(b) == {}
    assert s2.receiver.stats["stale"] >= 2


# --------------------------------------------------------------------------- mirroring, lag


def _gauge(name: str, peer: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"spool": "spool", "peer": peer}) or 0.0


def test_lag_metrics_and_mirroring_of_moves(tmp_path: Path, spools: list[MirroredSpool]) -> None:
    a, b = make_root(tmp_path / "store1"), make_root(tmp_path / "store2")
    peer = MirroredSpool("spool", b, "store2", [], ("127.0.0.1", 0))
    spools.append(peer)
    rx = peer.open_receiver()
    port = rx.port
    holder = MirroredSpool("spool", a, "store1", [("127.0.0.1", port)], None, scan_interval_s=0.2)
    spools.append(holder)
    holder.set_fencing_token(1)
    assert holder.start() == OCF.SUCCESS
    label = f"127.0.0.1:{port}"
    for i in range(20):
        deliver(a, i, 1000)
    wait_for(lambda: len(inventory(b)) == 20 and holder.lag() == (0, 0.0), 20, "20 messages mirrored")
    assert _gauge("hacluster_replication_lag_messages", label) == 0
    # the standby goes away: lag grows in messages and seconds
    rx.close()
    for i in range(20, 25):
        deliver(a, i, 1000)
    wait_for(lambda: holder.lag()[0] == 5, 10, "lag of 5")
    time.sleep(0.3)
    n, age = holder.lag()
    assert n == 5 and age >= 0.3
    wait_for(lambda: _gauge("hacluster_replication_lag_messages", label) == 5, 5, "lag gauge")
    assert _gauge("hacluster_replication_lag_seconds", label) > 0
    assert holder.monitor() == OCF.SUCCESS  # a lagging replica alerts (metric), it does not fail the holder
    # back on the same port: lag drains to zero; a message read by the user moves to cur/ on both
    peer.receiver = None
    peer.listen = ("127.0.0.1", port)
    peer.open_receiver()
    wait_for(lambda: len(inventory(b)) == 25 and holder.lag()[0] == 0, 20, "catch-up after reconnect")
    md = a / BOXES[0]
    name = sorted(os.listdir(md / "new"))[0]
    os.rename(md / "new" / name, md / "cur" / f"{name}:2,S")
    wait_for(lambda: (b / BOXES[0] / "cur" / f"{name}:2,S").exists(), 10, "the move mirrored")
    assert not (b / BOXES[0] / "new" / name).exists()
    assert inventory(b) == inventory(a)
    assert holder.stop() == OCF.SUCCESS and holder.monitor() == OCF.NOT_RUNNING
