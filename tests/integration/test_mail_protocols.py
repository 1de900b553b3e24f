"""`check: submission | smtps | imap | pop3` against real servers: Postfix with TLS on loopback
(587 with STARTTLS required, 465 with implicit TLS), Dovecot serving IMAP and POP3 (implicit TLS
and STARTTLS) on a Maildir. Real handshakes, real greetings and CAPABILITY answers; each failure
names its phase; a certificate close to expiry is a warning; with ca_file the chain and the name
are verified."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster.health.mailproto import MailProtocolProbe
from hacluster_lab.lab.dovecot import PASSWORD, DovecotPorts, dovecot_cmd, write_instance

from .loopback_postfix import start_postfix
from hacluster_lab.lab.tlscert import self_signed

pytestmark = pytest.mark.timeout(120)

PORT = 26000 + os.getpid() % 1000 * 5  # five loopback ports of our own; the test runs in its namespace


def wait_port(port: int, what: str, log: object = "") -> None:
    end = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            assert time.monotonic() < end, f"{what} never listened on {port}\n{log() if callable(log) else log}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def certs() -> Iterator[tuple[Path, Path]]:
    d = Path(tempfile.mkdtemp(prefix="h-mp-cert-", dir="/var/tmp"))
    d.chmod(0o755)
    try:
        yield self_signed(d, "localhost", days=30)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def postfix_tls(certs: tuple[Path, Path]) -> Iterator[tuple[int, int, int]]:
    """Postfix: plain smtpd on PORT (STARTTLS offered), submission on PORT+1 (TLS required), smtps
    on PORT+2 (wrapper mode)."""
    cert, key = certs
    pf = start_postfix(PORT, prefix="h-mp-pf-")
    try:
        with open(Path(pf.config_dir) / "main.cf", "a") as f:
            f.write(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\nsmtpd_tls_security_level = may\n")
        with open(Path(pf.config_dir) / "master.cf", "a") as f:
            f.write("tlsmgr unix - - n 1000? 1 tlsmgr\n"  # TLS needs it (entropy, session cache)
                    f"127.0.0.1:{PORT + 1} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt\n"
                    f"127.0.0.1:{PORT + 2} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n")
        out = subprocess.run(["postfix", "-c", pf.config_dir, "reload"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        wait_port(PORT + 1, "submission", pf.log)
        wait_port(PORT + 2, "smtps", pf.log)
        yield PORT, PORT + 1, PORT + 2
    finally:
        pf.stop()


def test_submission_and_smtps_on_real_postfix(postfix_tls: tuple[int, int, int], certs: tuple[Path, Path]) -> None:
    plain, sub, smtps = postfix_tls
    r = MailProtocolProbe("submission", port=sub)(5.0)
    assert r.severity == "ok", r.detail
    assert r.data["tls_version"] in ("TLSv1.2", "TLSv1.3") and 29 < r.data["cert_days_left"] <= 30
    assert any(c.upper().startswith("AUTH") or c.upper() == "PIPELINING" for c in r.data["capabilities"])
    r = MailProtocolProbe("smtps", port=smtps)(5.0)
    assert r.severity == "ok" and r.data["tls"] is True and r.data["tls_version"], r.detail
    # verified: the right name passes, a wrong one fails in the handshake
    cert, _ = certs
    assert MailProtocolProbe("smtps", port=smtps, ca_file=str(cert), server_name="localhost")(5.0).ok
    bad = MailProtocolProbe("smtps", port=smtps, ca_file=str(cert), server_name="mail.example")(5.0)
    assert not bad.ok and "TLS handshake" in bad.detail, bad.detail
    # implicit TLS against a STARTTLS port: the handshake fails, named
    bad = MailProtocolProbe("smtps", port=sub)(3.0)
    assert not bad.ok and "TLS handshake" in bad.detail, bad.detail
    # the certificate expires in 30 days: a warning with warn_cert_days 60, still ok
    warn = MailProtocolProbe("submission", port=plain, warn_cert_days=60)(5.0)
    assert warn.ok and warn.severity == "warn" and "expires in" in warn.detail
    # nothing listening: crit at connect
    dead = MailProtocolProbe("submission", port=PORT + 4)(2.0)
    assert not dead.ok and dead.severity == "crit" and ": connect:" in dead.detail, dead.detail


@pytest.fixture(scope="module")
def dovecot(certs: tuple[Path, Path]) -> Iterator[tuple[DovecotPorts, Path]]:
    """Real Dovecot on loopback over a standard Maildir (what Postfix's virtual(8) writes)."""
    cert, key = certs
    base = Path(tempfile.mkdtemp(prefix="h-mp-dc-", dir="/var/tmp"))
    base.chmod(0o755)
    mail = pwd.getpwnam("mail")
    mail_base = base / "mail"
    box = mail_base / "anna"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1733300000.M1P1.lab").write_bytes(b"From: b@example.org\r\nSubject: hello\r\n\r\nbody\r\n")
    for p in [mail_base, box, *box.iterdir(), *(box / "new").iterdir()]:
        os.chown(p, mail.pw_uid, mail.pw_gid)
    ports = DovecotPorts(PORT + 10, PORT + 11, PORT + 12, PORT + 13)
    conf = write_instance(base / "dovecot", "127.0.0.1", mail_base, mail.pw_uid, mail.pw_gid, cert, key, ports)
    log = base / "dovecot" / "dovecot.log"
    proc = subprocess.Popen(dovecot_cmd(conf), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for p in (ports.imap, ports.imaps, ports.pop3, ports.pop3s):
            wait_port(p, "dovecot", lambda: (log.read_text() if log.exists() else "") + (
                proc.stdout.read().decode() if proc.poll() is not None and proc.stdout else ""))
        yield ports, box
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        shutil.rmtree(base, ignore_errors=True)


def test_imap_and_pop3_on_real_dovecot(dovecot: tuple[DovecotPorts, Path]) -> None:
    ports, box = dovecot
    for proto, port, tls in (("imap", ports.imaps, True), ("imap", ports.imap, "starttls"),
                             ("pop3", ports.pop3s, True), ("pop3", ports.pop3, "starttls")):
        r = MailProtocolProbe(proto, port=port, tls=tls)(5.0)
        assert r.severity == "ok", (proto, tls, r.detail)
        assert r.data["tls_version"] in ("TLSv1.2", "TLSv1.3"), r.data
        caps = [c.upper() for c in r.data["capabilities"]]
        if proto == "imap":
            assert "IMAP4REV1" in caps and ("AUTH=PLAIN" in caps or "SASL-IR" in caps), caps
        else:
            assert any(c.startswith("SASL") or c == "USER" or c.startswith("UIDL") for c in caps), caps
    # plaintext IMAP against the imaps port: the greeting never comes in clear
    bad = MailProtocolProbe("imap", port=ports.imaps, tls=False)(2.0)
    assert not bad.ok and "greeting" in bad.detail, bad.detail
    # a POP3 probe on the IMAP port: the wrong greeting, named
    bad = MailProtocolProbe("pop3", port=ports.imap, tls=False)(2.0)
    assert not bad.ok and "no POP3 greeting" in bad.detail, bad.detail
    # and Dovecot reads the Maildir: a real login and FETCH over TLS (what the drill does through the VIP)
    import imaplib
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with imaplib.IMAP4_SSL("127.0.0.1", ports.imaps, ssl_context=ctx, timeout=10) as m:
        m.login("anna", PASSWORD)
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK" and data == [b"1"], data
        typ, msg = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"hello" in msg[0][1]
