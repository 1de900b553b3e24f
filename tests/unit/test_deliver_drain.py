"""The delivery agent's drain mode (a former holder's queue, hacluster.spool.deliver --forward): a
message this spool already holds (record + copy) is not sent again; anything else is handed to the
relay by SMTP, and a relay that refuses or is down makes it exit 75 (Postfix retries, never drops).
The relay here is a real SMTP listener on loopback that records what it received."""

from __future__ import annotations

import socket
import socketserver
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from hacluster.spool.deliver import DeliveryError, deliver, drain_one, parse_relay

MSG = (b"Message-ID: <drained@client.example>\nFrom: a@client.example\nTo: user@lab.example\n"
       b"Subject: left in the queue\n\n.leading dot\nbody\n")


class _Sink(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept (or, with code 451, refuse) one message per session."""

    def handle(self) -> None:
        srv: "_Server" = self.server  # type: ignore[assignment]
        w = self.wfile.write
        w(b"220 sink ESMTP\r\n")
        data: list[bytes] = []
        env: dict[str, object] = {"rcpt": []}
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith((b"EHLO", b"HELO")):
                w(b"250 sink\r\n")
            elif cmd.startswith(b"MAIL FROM:"):
                env["from"] = line.strip()[10:].decode()
                w(b"250 ok\r\n")
            elif cmd.startswith(b"RCPT TO:"):
                env["rcpt"].append(line.strip()[8:].decode())  # type: ignore[union-attr]
                w(b"250 ok\r\n")
            elif cmd == b"DATA":
                if srv.refuse:
                    w(b"451 try later\r\n")
                    continue
                w(b"354 go\r\n")
                while True:
                    ln = self.rfile.readline()
                    if ln in (b".\r\n", b""):
                        break
                    data.append(ln[1:] if ln.startswith(b"..") else ln)
                srv.got.append((env["from"], env["rcpt"], b"".join(data)))
                w(b"250 queued\r\n")
            elif cmd == b"QUIT":
                w(b"221 bye\r\n")
                return
            else:
                w(b"250 ok\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    refuse = False
    got: list[tuple[object, object, bytes]]


@pytest.fixture()
def sink(serve: Callable[[_Server], _Server]) -> _Server:
    srv = serve(_Server(("127.0.0.1", 0), _Sink))
    srv.got = []
    return srv


def _relay(srv: _Server) -> str:
    return f"[127.0.0.1]:{srv.server_address[1]}"


def test_parse_relay() -> None:
    assert parse_relay("[198.51.100.20]:25") == ("198.51.100.20", 25)
    assert parse_relay("[fd00:51::20]:2525") == ("fd00:51::20", 2525)
    assert parse_relay("relay.example:587") == ("relay.example", 587)
    assert parse_relay("[198.51.100.20]") == ("198.51.100.20", 25)
    with pytest.raises(DeliveryError):
        parse_relay("[198.51.100.20]:smtp")


def test_held_here_is_not_forwarded(tmp_path: Path, sink: _Server) -> None:
    base = tmp_path / "mail"
    base.mkdir()
    deliver(base, "user", MSG)  # delivered (record + copy) before the power-off removed the queue file
    outcome, unique = drain_one(base, "user", _relay(sink), "a@client.example", "user@lab.example", MSG)
    assert outcome == "here" and (base / "user" / "new" / unique).exists()
    assert sink.got == []


def test_not_held_here_is_forwarded_with_its_envelope(tmp_path: Path, sink: _Server) -> None:
    base = tmp_path / "mail"
    base.mkdir()
    deliver(base, "other", MSG)  # another mailbox's copy does not count
    outcome, _ = drain_one(base, "user", _relay(sink), "a@client.example", "user@lab.example", MSG)
    assert outcome == "forwarded"
    [(mail_from, rcpt, data)] = sink.got
    assert mail_from == "<a@client.example>" and rcpt == ["<user@lab.example>"]
    assert data.replace(b"\r\n", b"\n") == MSG  # dot-stuffing and CRLF undone: the same message


def test_copy_gone_means_forward(tmp_path: Path, sink: _Server) -> None:
    """A record whose copy is absent (crash between the two writes, user deleted it) is no proof."""
    base = tmp_path / "mail"
    base.mkdir()
    _, unique = deliver(base, "user", MSG)
    (base / "user" / "new" / unique).unlink()
    assert drain_one(base, "user", _relay(sink), "", "user@lab.example", MSG)[0] == "forwarded"
    assert sink.got[0][0] == "<>"  # a bounce keeps its null sender


def test_refused_or_down_is_tempfail_through_the_command(tmp_path: Path, sink: _Server) -> None:
    base = tmp_path / "mail"
    base.mkdir()
    sink.refuse = True
    cmd = [sys.executable, "-m", "hacluster.spool.deliver", "--base", str(base), "--mailbox", "user",
           "--forward", _relay(sink), "--sender=a@client.example", "--recipient=user@lab.example"]
    out = subprocess.run(cmd, input=MSG, capture_output=True, timeout=60)
    assert out.returncode == 75 and b"451" in out.stdout, out
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"[127.0.0.1]:{s.getsockname()[1]}"
    out = subprocess.run(cmd[:7] + ["--forward", dead] + cmd[9:], input=MSG, capture_output=True, timeout=60)
    assert out.returncode == 75, out
    sink.refuse = False
    out = subprocess.run(cmd, input=MSG, capture_output=True, timeout=60)
    assert out.returncode == 0 and b"drain: <drained@client.example> to user forwarded" in out.stdout, out
    assert len(sink.got) == 1
