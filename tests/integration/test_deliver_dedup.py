"""Real Postfix delivering through the store's delivery agent (pipe(8) -> hacluster.spool.deliver,
the service the lab's stores run): the same message submitted twice (as a relay resends a message
whose 250 it never saw, with the store's new Received: line) lands once, and the maillog's
status=sent line says the second was suppressed; mail without a Message-ID is delivered every
time; a Maildir that standard readers (Dovecot, virtual(8)'s layout) understand."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

from .loopback_postfix import LoopbackPostfix, start_postfix

SMTP_PORT = 26325


def _send(port: int, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.sendmail("sender@client.example", ["inbox@lab.example"], data)


def _wait_delivered(pf: LoopbackPostfix, n_status: int, timeout_s: float = 60.0) -> str:
    """The maillog once it shows `n_status` final outcomes of the hadeliver service."""
    end = time.monotonic() + timeout_s
    while True:
        log = (pf.base / "maillog").read_text(errors="replace") if (pf.base / "maillog").exists() else ""
        done = [ln for ln in log.splitlines() if "relay=hadeliver" in ln and "status=" in ln]
        failed = [ln for ln in done if "status=sent" not in ln]
        if failed or len(done) >= n_status or time.monotonic() > end:
            assert not [ln for ln in done if "status=sent" not in ln], log[-3000:]
            return log
        time.sleep(0.2)


def test_postfix_delivers_a_resent_message_once() -> None:
    pf = start_postfix(SMTP_PORT, deliver_domain="lab.example", prefix="ho-dd-", hadeliver=True)
    try:
        msg = (b"Message-ID: <twice@client.example>\r\nFrom: sender@client.example\r\n"
               b"To: inbox@lab.example\r\nSubject: resent\r\n\r\nthe same body\r\n")
        _send(pf.port, msg)
        _send(pf.port, msg)
        # same Message-ID, another body (dot-stuffed line, a line longer than Postfix's 2048-byte
        # records): another message, delivered whole
        other = msg.replace(b"the same body", b"a\r\n\r\n..dot\r\n" + b"z" * 5000)
        _send(pf.port, other)
        no_id = b"From: sender@client.example\r\nTo: inbox@lab.example\r\nSubject: no id\r\n\r\nbody\r\n"
        _send(pf.port, no_id)
        _send(pf.port, no_id)
        log = _wait_delivered(pf, 5)
        boxes = {sub: sorted((pf.maildir / sub).iterdir()) for sub in ("new", "cur")}
        texts = [p.read_bytes() for p in boxes["new"]]
        assert sum(b"<twice@client.example>" in t for t in texts) == 2, log[-3000:]
        assert sum(b"\n..dot\n" + b"z" * 5000 in t for t in texts) == 1  # smtplib stuffed it, smtpd unstuffed
        assert sum(b"Subject: no id" in t for t in texts) == 2  # never suppressed without a Message-ID
        assert log.count("duplicate suppressed: <twice@client.example> to inbox") == 1
        assert all(t.startswith(b"Delivered-To: inbox@lab.example\n") or b"\nDelivered-To:" in t for t in texts)
        assert all(p.stat().st_uid == Path(pf.maildir).stat().st_uid for p in boxes["new"])
        assert all(",S=" in p.name and ":" not in p.name for p in boxes["new"])  # Maildir names as Dovecot writes
        assert "duplicate suppressed" in (pf.base / "deliver.log").read_text()
    finally:
        pf.stop()
