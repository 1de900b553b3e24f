"""SMTP probe against real sockets on 127.0.0.1: a tiny scripted SMTP server per scenario."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator

import pytest

from hacluster.health.checks import Check, CheckRunner
from hacluster.health.policy import evaluate
from hacluster.health.smtp import SmtpProbe

Script = Callable[[socket.socket], None]


class TinySmtp:
    """Accepts connections on 127.0.0.1:<ephemeral> and runs `script` on each (bounded, daemon)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.commands: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(3)
                try:
                    self.script(conn)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def read_cmd(conn: socket.socket, log: list[str]) -> str:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = conn.recv(1)
        if not chunk:
            break
        buf += chunk
    log.append(buf.decode().strip())
    return log[-1]


@pytest.fixture
def server() -> Iterator[Callable[[Script], TinySmtp]]:
    made: list[TinySmtp] = []

    def make(script: Script) -> TinySmtp:
        made.append(TinySmtp(script))
        return made[-1]

    yield make
    for s in made:
        s.close()


def good(banner_delay: float = 0.0) -> Callable[[TinySmtp], Script]:
    def bind(srv: TinySmtp) -> Script:
        def script(conn: socket.socket) -> None:
            time.sleep(banner_delay)
            conn.sendall(b"220-store1.example ESMTP\r\n220 ready\r\n")
            assert read_cmd(conn, srv.commands).startswith("EHLO ")
            conn.sendall(b"250-store1.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n")
            if read_cmd(conn, srv.commands) == "QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
        return script
    return bind


def start(server, bind) -> TinySmtp:
    holder: list[TinySmtp] = []
    srv = server(lambda conn: bind(holder[0])(conn))
    holder.append(srv)
    return srv


def test_good_server(server) -> None:
    srv = start(server, good())
    res = SmtpProbe("127.0.0.1", srv.port, ehlo_name="probe.test")(2.0)
    assert (res.ok, res.severity, res.name) == (True, "ok", "smtp")
    assert res.data["banner"] == "store1.example ESMTP"
    assert res.data["extensions"] == ["PIPELINING", "SIZE", "8BITMIME"]
    assert 0 < res.latency_s < 0.5
    assert set(res.data["phases_s"]) == {"connect", "banner", "ehlo", "quit"}
    time.sleep(0.1)
    assert srv.commands == ["EHLO probe.test", "QUIT"]


def test_slow_banner_is_a_warning(server) -> None:
    srv = start(server, good(banner_delay=0.3))
    res = SmtpProbe("127.0.0.1", srv.port, warn_latency_s=0.2)(2.0)
    assert (res.ok, res.severity, res.data["slow"]) == (True, "warn", True)
    assert 0.3 <= res.latency_s < 1.5 and res.data["phases_s"]["banner"] >= 0.3
    assert evaluate({"smtp": res}).score_penalty == 5


@pytest.mark.parametrize(
    "replies,phase,detail",
    [
        ([b"421 4.3.2 too busy\r\n"], "banner", "expected 220, got 421 4.3.2 too busy"),
        ([b"220 ok\r\n", b"502 5.5.2 no EHLO here\r\n"], "ehlo", "expected 250, got 502 5.5.2 no EHLO here"),
        ([b"220 ok\r\n", b"garbage\r\n"], "ehlo", "bad reply line b'garbage'"),
        ([], "banner", "connection closed by server"),
    ],
)
def test_bad_replies_are_crit(server, replies: list[bytes], phase: str, detail: str) -> None:
    def script(conn: socket.socket) -> None:
        for i, reply in enumerate(replies):
            if i:
                read_cmd(conn, [])
            conn.sendall(reply)

    srv = server(script)
    res = SmtpProbe("127.0.0.1", srv.port)(2.0)
    assert (res.ok, res.severity, res.data["phase"]) == (False, "crit", phase)
    assert res.detail == f"127.0.0.1:{srv.port} {phase}: {detail}"
    v = evaluate({"smtp": res})
    assert (v.healthy, v.demote) == (False, False)


def test_silent_server_times_out_within_deadline(server) -> None:
    srv = server(lambda conn: time.sleep(2))
    t0 = time.monotonic()
    res = SmtpProbe("127.0.0.1", srv.port)(0.3)
    assert 0.3 <= time.monotonic() - t0 < 0.8
    assert (res.severity, res.data["phase"], res.data["timed_out"]) == ("crit", "banner", True)


def test_dribbling_server_cannot_stretch_the_deadline(server) -> None:
    def script(conn: socket.socket) -> None:
        for _ in range(20):  # a multi-line banner, one line every 0.1 s
            conn.sendall(b"220-still talking\r\n")
            time.sleep(0.1)

    srv = server(script)
    t0 = time.monotonic()
    res = SmtpProbe("127.0.0.1", srv.port)(0.5)
    assert time.monotonic() - t0 < 0.9 and res.data["timed_out"]


def test_connection_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    res = SmtpProbe("127.0.0.1", port)(1.0)
    assert (res.severity, res.data["phase"]) == ("crit", "connect")
    assert res.detail == f"127.0.0.1:{port} connect: Connection refused"


def test_runner_debounces_a_real_outage(server) -> None:
    srv = start(server, good())
    runner = CheckRunner(Check("smtp", SmtpProbe("127.0.0.1", srv.port), timeout_s=1, rise=2, fall=2))
    assert runner.run_once().ok
    srv.close()  # the listener goes away
    assert not runner.run_once().ok and runner.effective().ok  # 1/2 failures: still up
    assert not runner.run_once().ok and not runner.effective().ok  # 2/2: down
