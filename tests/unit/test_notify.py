"""Notifier against real sockets and real processes: small SMTP servers on loopback addresses
(127.0.0.21/.22 stand for the relays MX 10/20), a black-hole server that accepts and never answers,
a sendmail stand-in script, the outbox, and keepalived-style notify scripts."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from email import message_from_bytes
from pathlib import Path
from typing import Iterator

import pytest

from hacluster.notify import Notifier, normalise_state, relay_targets, script_problems
from hacluster.spec import parse_spec

RELAY1, RELAY2 = "127.0.0.21", "127.0.0.22"


def spec_text(order: str = "normal") -> str:
    r1 = "{name: relay1, tier: relay, interface: lo, addresses: [127.0.0.21/8], mx_preference: 10}"
    r2 = "{name: relay2, tier: relay, interface: lo, addresses: [127.0.0.22/8], priority: 150, mx_preference: 20}"
    relays = f"  - {r2}\n  - {r1}" if order == "reversed" else f"  - {r1}\n  - {r2}"
    return f"""\
cluster: notifytest
mail: {{domain: lab.example, admin: ops@lab.example}}
zookeeper: {{hosts: ["127.0.0.1:2181"]}}
roles:
  store: {{tier: store}}
nodes:
{relays}
  - {{name: store1, tier: store, interface: lo, addresses: [127.0.0.24/8], priority: 100}}
"""


SPEC = parse_spec(spec_text(), "notify.yml")


class SmtpServer(socketserver.ThreadingTCPServer):
    """A small but real SMTP server: records (mail from, rcpts, data); `reject_rcpt` answers 550."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, reject_rcpt: bool = False, silent: bool = False) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.reject_rcpt = reject_rcpt
        self.silent = silent  # accept the connection, never say a word
        self.release = threading.Event()
        super().__init__((host, port), SmtpHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class SmtpHandler(socketserver.StreamRequestHandler):
    server: SmtpServer
    timeout = 10

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        if self.server.silent:
            self.server.release.wait(30)
            return
        self.reply("220 relay.test ESMTP")
        sender, rcpts = "", []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode(errors="replace").strip()
            up = cmd.upper()
            if up.startswith(("EHLO", "HELO")):
                self.reply("250 relay.test")
            elif up.startswith("MAIL FROM:"):
                sender, rcpts = cmd[10:].strip().strip("<>"), []
                self.reply("250 ok")
            elif up.startswith("RCPT TO:"):
                if self.server.reject_rcpt:
                    self.reply("550 5.1.1 no such user")
                else:
                    rcpts.append(cmd[8:].strip().strip("<>"))
                    self.reply("250 ok")
            elif up == "DATA":
                self.reply("354 go ahead")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = self.rfile.readline()
                    if not chunk:
                        return
                    data += chunk
                self.server.messages.append((sender, rcpts, data[:-5]))
                self.reply("250 queued")
            elif up == "QUIT":
                self.reply("221 bye")
                return
            elif up == "RSET":
                self.reply("250 ok")
            else:
                self.reply("502 not implemented")


def free_port() -> int:
    """A port free on both relay addresses (the closed one must refuse, not belong to someone)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((RELAY2, 0))
            port = s.getsockname()[1]
        with socket.socket() as t:
            try:
                t.bind((RELAY1, port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port")


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def servers() -> Iterator[list[SmtpServer]]:
    made: list[SmtpServer] = []
    yield made
    for s in made:
        s.close()


def notifier(port: int, tmp_path: Path, **kw) -> Notifier:
    kw.setdefault("smtp_timeout_s", 1.0)
    kw.setdefault("sendmail", None)
    kw.setdefault("outbox", tmp_path / "outbox")
    kw.setdefault("coalesce_s", 0.1)
    n = Notifier(SPEC, "store1", smtp_port=port, **kw)
    n.start()
    return n


def test_relays_in_mx_order() -> None:
    assert relay_targets(SPEC, 2525) == [(RELAY1, 2525), (RELAY2, 2525)]
    # MX preference decides, not the spec order nor the priority
    assert relay_targets(parse_spec(spec_text("reversed"), "x.yml")) == [(RELAY1, 25), (RELAY2, 25)]


def test_mail_goes_to_the_first_relay_in_mx_order(port: int, servers, tmp_path: Path) -> None:
    servers += [SmtpServer(RELAY1, port), SmtpServer(RELAY2, port)]
    n = notifier(port, tmp_path)
    try:
        assert n.event("role", "store", "acquired", "term 7")
        assert n.flush(10)
    finally:
        n.stop()
    assert len(servers[0].messages) == 1 and servers[1].messages == []
    sender, rcpts, data = servers[0].messages[0]
    assert (sender, rcpts) == ("hacluster@lab.example", ["ops@lab.example"])
    msg = message_from_bytes(data)
    assert msg["Subject"] == "[hacluster notifytest] store1: store MASTER"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Hacluster-Node"] == "store1"
    body = msg.get_payload()
    assert "role  store        MASTER  term 7" in body and "hacluster status" in body
    assert n.deliveries[-1].via == "smtp" and n.deliveries[-1].target == f"{RELAY1}:{port}"


def test_next_relay_when_the_first_is_down_or_refuses(port: int, servers, tmp_path: Path) -> None:
    servers.append(SmtpServer(RELAY2, port))  # relay1: nothing listens, connection refused
    n = notifier(port, tmp_path)
    try:
        n.event("role", "store", "demoted", "lease expired")
        assert n.flush(10)
        assert servers[0].messages and n.deliveries[-1].target == f"{RELAY2}:{port}"
        servers.insert(0, SmtpServer(RELAY1, port, reject_rcpt=True))  # relay1 back, but rejects the admin
        n.event("role", "store", "released")
        assert n.flush(10)
    finally:
        n.stop()
    assert servers[0].messages == [] and len(servers[1].messages) == 2
    assert "store FAULT" in message_from_bytes(servers[1].messages[0][2])["Subject"]


def test_a_relay_that_never_answers_costs_one_timeout(port: int, servers, tmp_path: Path) -> None:
    servers += [SmtpServer(RELAY1, port, silent=True), SmtpServer(RELAY2, port)]
    n = notifier(port, tmp_path, smtp_timeout_s=0.5)
    try:
        t0 = time.monotonic()
        n.event("alarm", "raid", "warn", "md1 degraded")
        assert n.flush(10)
        took = time.monotonic() - t0
    finally:
        n.stop()
    assert len(servers[1].messages) == 1
    assert 0.5 <= took < 2.5, took
    assert "raid WARN" in message_from_bytes(servers[1].messages[0][2])["Subject"]


def fake_sendmail(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "sendmail"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


def test_sendmail_when_no_relay_takes_it(port: int, tmp_path: Path) -> None:
    out = tmp_path / "sendmail.out"
    sm = fake_sendmail(tmp_path, f'echo "$@" > {out}.args\ncat > {out}\n')
    n = notifier(port, tmp_path, sendmail=str(sm))
    try:
        n.event("role", "store", "acquired")
        assert n.flush(10)
    finally:
        n.stop()
    assert (out.parent / "sendmail.out.args").read_text().split() == ["-i", "-f", "hacluster@lab.example", "--", "ops@lab.example"]
    assert message_from_bytes(out.read_bytes())["To"] == "ops@lab.example"
    d = n.deliveries[-1]
    assert d.via == "sendmail" and f"{RELAY1}:{port}" in d.error and f"{RELAY2}:{port}" in d.error
    assert not (tmp_path / "outbox").exists()


@pytest.mark.parametrize("script, why", [
    ("echo 'postdrop: cannot open' >&2\nexit 75\n", "exit 75: postdrop: cannot open"),
    ("exec sleep 30\n", "timed out after 0.5s"),
])
def test_outbox_when_sendmail_fails_too(port: int, tmp_path: Path, script: str, why: str) -> None:
    sm = fake_sendmail(tmp_path, script)
    n = notifier(port, tmp_path, sendmail=str(sm), sendmail_timeout_s=0.5)
    try:
        n.event("role", "store", "acquired", "after the relays failed")
        assert n.flush(10)
    finally:
        n.stop()
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1 and not list((tmp_path / "outbox").glob(".*"))
    assert "after the relays failed" in message_from_bytes(files[0].read_bytes()).get_payload()
    assert n.deliveries[-1].via == "outbox" and why in n.deliveries[-1].error


def test_outbox_is_bounded_and_loss_is_reported(port: int, tmp_path: Path) -> None:
    n = notifier(port, tmp_path, outbox_max_files=1)
    try:
        n.event("role", "store", "acquired")
        assert n.flush(10)
        n.event("role", "store", "released")
        assert n.flush(10)
    finally:
        n.stop()
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    assert [d.via for d in n.deliveries] == ["outbox", "lost"]
    assert "holds 1 mails already" in n.deliveries[-1].error


def test_event_never_blocks_and_a_full_queue_drops_and_says_so(port: int, servers, tmp_path: Path) -> None:
    servers += [SmtpServer(RELAY1, port, silent=True), SmtpServer(RELAY2, port)]
    n = notifier(port, tmp_path, smtp_timeout_s=1.0, queue_size=3, coalesce_s=0.0, max_batch=1)
    try:
        t0 = time.monotonic()
        results = [n.event("role", "store", "acquired", f"#{i}") for i in range(10)]
        took = time.monotonic() - t0
        assert took < 0.1, took  # while the worker is stuck on the silent relay
        assert results[:3] == [True] * 3 and not all(results) and n.dropped_total == results.count(False)
        assert n.flush(20)
    finally:
        n.stop()
    bodies = [message_from_bytes(m[2]).get_payload() for m in servers[1].messages]
    assert len(bodies) == results.count(True)
    assert any("event(s) were dropped: the notification queue was full" in b for b in bodies)


def test_events_arriving_together_share_one_mail(port: int, servers, tmp_path: Path) -> None:
    servers += [SmtpServer(RELAY1, port)]
    n = notifier(port, tmp_path, coalesce_s=0.5)
    try:
        for state in ("acquired", "released", "acquired", "demoted"):
            n.event("role", "store", state)
        n.event("alarm", "spool", "crit", "read-only")
        assert n.flush(10)
    finally:
        n.stop()
    assert len(servers[0].messages) == 1
    msg = message_from_bytes(servers[0].messages[0][2])
    assert msg["Subject"] == "[hacluster notifytest] store1: 5 events (store MASTER, ...)"
    body = msg.get_payload()
    assert [ln.split()[4] for ln in body.splitlines() if ln[:2].isdigit()] == ["MASTER", "BACKUP", "MASTER", "FAULT", "CRIT"]


def test_scripts_get_keepalived_arguments(port: int, tmp_path: Path) -> None:
    log = tmp_path / "script.log"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$@|$HACLUSTER_NODE|$HACLUSTER_CLUSTER|$HACLUSTER_DETAIL" >> {log}\n')
    script.chmod(0o755)
    failing = tmp_path / "failing.sh"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    n = notifier(port, tmp_path, admin="", scripts=[str(failing), str(script)])
    try:
        n.event("role", "store", "acquired", "term 3")
        n.event("role", "store", "BACKUP")
        n.event("alarm", "raid", "warn", "md1 degraded")
        assert n.flush(10)
    finally:
        n.stop()
    assert log.read_text().splitlines() == [
        "ROLE store MASTER 100|store1|notifytest|term 3",
        "ROLE store BACKUP 100|store1|notifytest|",
        "ALARM raid WARN 100|store1|notifytest|md1 degraded",
    ]
    assert [rc for _, rc in n.script_runs] == [3, 0, 3, 0, 3, 0]  # a failing script stops nothing
    assert n.deliveries == []  # admin "" disables mail


def test_a_hanging_script_is_killed_with_its_children(port: int, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    script.chmod(0o755)
    n = notifier(port, tmp_path, admin="", scripts=[str(script)], script_timeout_s=0.5)
    try:
        t0 = time.monotonic()
        n.event("role", "store", "acquired")
        assert n.flush(10)
        assert time.monotonic() - t0 < 3
    finally:
        n.stop()
    assert n.script_runs[0][1] is None
    child = int(pid_file.read_text())
    for _ in range(50):
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the script's child {child} survived")


def test_config_helpers(tmp_path: Path) -> None:
    ok = tmp_path / "ok.sh"
    ok.write_text("#!/bin/sh\n")
    ok.chmod(0o755)
    noexec = tmp_path / "noexec.sh"
    noexec.write_text("#!/bin/sh\n")
    assert script_problems([str(ok), str(noexec), "relative.sh", str(tmp_path / "gone")]) == [
        f"{noexec}: not executable (chmod +x)", "relative.sh: notify scripts need an absolute path",
        f"{tmp_path / 'gone'}: no such file"]
    assert normalise_state("role", "acquired") == "MASTER" and normalise_state("role", "stopped") == "STOP"
    assert normalise_state("alarm", "crit") == "CRIT"
    n = Notifier(SPEC, "store1")
    assert n.event("weird", "store", "x") is False  # not started: nothing runs, nothing blocks
    assert n.admin == "ops@lab.example" and n.relays == [(RELAY1, 25), (RELAY2, 25)]
