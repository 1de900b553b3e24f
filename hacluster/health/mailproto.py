"""`check: imap | pop3 | submission | smtps`: the store VIP serves more than SMTP (seeds: POP3,
IMAP, submission on 587 with STARTTLS and 465 with TLS). Each probe makes a real TLS handshake
and speaks the protocol's opening: greeting, CAPABILITY (IMAP), CAPA (POP3), EHLO (SMTP), then
logs out. Like the SMTP probe it uses one deadline for every phase and names the phase that
failed ("imap: no CAPABILITY answer", "pop3: TLS handshake: ...").

    - {check: imap, port: 993, tls: true}            # implicit TLS (imaps)
    - {check: pop3, port: 110, tls: starttls}        # STLS upgrade
    - {check: submission, port: 587}                 # STARTTLS by default
    - {check: smtps, port: 465}                      # implicit TLS by default

`tls`: true (handshake on connect), starttls (upgrade after the greeting: STARTTLS must be
offered) or false. Without `ca_file` the certificate is not verified (a store's own self-signed
certificate must not fail its health) but its expiry is read: fewer than `warn_cert_days` left is
a warning. With `ca_file` the chain and `server_name` are verified.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from .checks import CheckResult, result

PROTOCOLS = ("imap", "pop3", "submission", "smtps")
DEFAULTS: dict[str, tuple[int, bool | str]] = {"imap": (993, True), "pop3": (995, True), "submission": (587, "starttls"),
                                               "smtps": (465, True)}
_MAX_LINE = 64 * 1024


class ProtocolError(Exception):
    """The server answered, but not as the protocol says (the message names the phase)."""


class _Lines:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.buf = sock, deadline, b""

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        return left

    def line(self) -> str:
        while b"\n" not in self.buf:
            if len(self.buf) > _MAX_LINE:
                raise ProtocolError("line longer than 64 KiB")
            self.sock.settimeout(self._left())
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ProtocolError("connection closed by server")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        return raw.rstrip(b"\r").decode("utf-8", "replace")

    def send(self, text: str) -> None:
        self.sock.settimeout(self._left())
        self.sock.sendall(text.encode("ascii") + b"\r\n")

    def upgrade(self, ctx: ssl.SSLContext, server_name: str | None) -> None:
        if self.buf:
            raise ProtocolError("data after the STARTTLS answer (possible injection)")
        self.sock.settimeout(self._left())
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_name)


def _smtp_reply(c: _Lines) -> tuple[int, list[str]]:
    lines: list[str] = []
    while True:
        ln = c.line()
        if len(ln) < 3 or not ln[:3].isdigit():
            raise ProtocolError(f"bad SMTP reply {ln[:80]!r}")
        lines.append(ln[4:])
        if ln[3:4] != "-":
            return int(ln[:3]), lines


def _imap_tagged(c: _Lines, tag: str) -> tuple[str, list[str]]:
    untagged: list[str] = []
    while True:
        ln = c.line()
        if ln.startswith(tag + " "):
            return ln[len(tag) + 1:], untagged
        untagged.append(ln)


def _pop_multi(c: _Lines) -> list[str]:
    out: list[str] = []
    while (ln := c.line()) != ".":
        out.append(ln)
    return out


@dataclass(frozen=True)
class MailProtocolProbe:
    protocol: str
    host: str = "127.0.0.1"
    port: int | None = None
    tls: bool | str | None = None
    ca_file: str | None = None
    server_name: str | None = None
    ehlo_name: str = "hacluster-probe"
    warn_cert_days: float = 14.0
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")
        if not self.name:
            object.__setattr__(self, "name", self.protocol)

    @property
    def mode(self) -> bool | str:
        return DEFAULTS[self.protocol][1] if self.tls is None else self.tls

    def _ctx(self) -> ssl.SSLContext:
        if self.ca_file:
            return ssl.create_default_context(cafile=self.ca_file)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        port = self.port or DEFAULTS[self.protocol][0]
        data: dict[str, Any] = {"port": port, "tls": self.mode, "phase": "connect"}
        try:
            caps = self._talk(time.monotonic() + timeout_s, port, data)
        except (OSError, ssl.SSLError, ProtocolError) as err:
            what = "timed out" if isinstance(err, socket.timeout) else (str(err) or type(err).__name__)
            return result(self.name, "crit", f"{self.protocol} {self.host}:{port}: {data['phase']}: {what}",
                          time.monotonic() - t0, **data)
        data["capabilities"] = caps[:40]
        days = data.get("cert_days_left")
        tls_text = f", {data['tls_version']}" if data.get("tls_version") else ", no TLS"
        if days is not None and days < self.warn_cert_days:
            return result(self.name, "warn", f"{self.protocol} {self.host}:{port}: certificate expires in {days:.0f} days",
                          time.monotonic() - t0, ok=True, **data)
        return result(self.name, "ok", f"{self.protocol} {self.host}:{port} answers{tls_text}", time.monotonic() - t0, **data)

    def _tls_done(self, c: _Lines, data: dict[str, Any]) -> None:
        s = c.sock
        assert isinstance(s, ssl.SSLSocket)
        data["tls_version"] = s.version()
        data["cipher"] = (s.cipher() or ("?",))[0]
        der = s.getpeercert(binary_form=True)
        if der:
            try:
                from cryptography import x509

                cert = x509.load_der_x509_certificate(der)
                data["cert_days_left"] = round((cert.not_valid_after_utc.timestamp() - time.time()) / 86400, 1)
                data["cert_subject"] = cert.subject.rfc4514_string()[:200]
            except Exception:  # noqa: BLE001 -- the expiry is extra information, never a failure
                pass

    def _talk(self, deadline: float, port: int, data: dict[str, Any]) -> list[str]:
        left = max(0.001, deadline - time.monotonic())
        sock = socket.create_connection((self.host, port), timeout=left)
        c = _Lines(sock, deadline)
        try:
            mode = self.mode
            if mode is True:
                data["phase"] = "TLS handshake"
                c.upgrade(self._ctx(), self.server_name or self.host)
                self._tls_done(c, data)
            return getattr(self, "_" + ("smtp" if self.protocol in ("submission", "smtps") else self.protocol))(c, data,
                                                                                                               mode)
        finally:
            try:
                c.sock.close()
            except OSError:
                pass

    def _starttls(self, c: _Lines, data: dict[str, Any]) -> None:
        data["phase"] = "TLS handshake (after STARTTLS)"
        c.upgrade(self._ctx(), self.server_name or self.host)
        self._tls_done(c, data)

    def _imap(self, c: _Lines, data: dict[str, Any], mode: bool | str) -> list[str]:
        data["phase"] = "greeting"
        g = c.line()
        if not g.startswith(("* OK", "* PREAUTH")):
            raise ProtocolError(f"no IMAP greeting: {g[:80]!r}")

        def capability(tag: str) -> list[str]:
            data["phase"] = "CAPABILITY"
            c.send(f"{tag} CAPABILITY")
            status, untagged = _imap_tagged(c, tag)
            caps = next((u[len("* CAPABILITY "):].split() for u in untagged if u.upper().startswith("* CAPABILITY ")), None)
            if not status.upper().startswith("OK") or caps is None:
                raise ProtocolError(f"no CAPABILITY answer: {status[:80]!r}")
            if "IMAP4REV1" not in (x.upper() for x in caps) and "IMAP4REV2" not in (x.upper() for x in caps):
                raise ProtocolError("CAPABILITY lacks IMAP4rev1")
            return caps

        caps = capability("h1")
        if mode == "starttls":
            if "STARTTLS" not in (x.upper() for x in caps):
                raise ProtocolError("STARTTLS not offered")
            data["phase"] = "STARTTLS"
            c.send("h2 STARTTLS")
            status, _ = _imap_tagged(c, "h2")
            if not status.upper().startswith("OK"):
                raise ProtocolError(f"STARTTLS refused: {status[:80]!r}")
            self._starttls(c, data)
            caps = capability("h3")
        data["phase"] = "LOGOUT"
        c.send("h9 LOGOUT")
        return caps

    def _pop3(self, c: _Lines, data: dict[str, Any], mode: bool | str) -> list[str]:
        data["phase"] = "greeting"
        g = c.line()
        if not g.startswith("+OK"):
            raise ProtocolError(f"no POP3 greeting: {g[:80]!r}")

        def capa() -> list[str]:
            data["phase"] = "CAPA"
            c.send("CAPA")
            ans = c.line()
            if not ans.startswith("+OK"):
                raise ProtocolError(f"CAPA refused: {ans[:80]!r}")
            return _pop_multi(c)

        caps = capa()
        if mode == "starttls":
            if "STLS" not in (x.split()[0].upper() for x in caps if x):
                raise ProtocolError("STLS not offered")
            data["phase"] = "STLS"
            c.send("STLS")
            ans = c.line()
            if not ans.startswith("+OK"):
                raise ProtocolError(f"STLS refused: {ans[:80]!r}")
            self._starttls(c, data)
            caps = capa()
        data["phase"] = "QUIT"
        c.send("QUIT")
        return caps

    def _smtp(self, c: _Lines, data: dict[str, Any], mode: bool | str) -> list[str]:
        data["phase"] = "banner"
        code, lines = _smtp_reply(c)
        if code != 220:
            raise ProtocolError(f"banner {code} {' '.join(lines)[:80]!r}")

        def ehlo() -> list[str]:
            data["phase"] = "EHLO"
            c.send(f"EHLO {self.ehlo_name}")
            code, lines = _smtp_reply(c)
            if code != 250:
                raise ProtocolError(f"EHLO answered {code}")
            return lines[1:]

        caps = ehlo()
        if mode == "starttls":
            if "STARTTLS" not in (x.upper() for x in caps):
                raise ProtocolError("STARTTLS not offered")
            data["phase"] = "STARTTLS"
            c.send("STARTTLS")
            code, _ = _smtp_reply(c)
            if code != 220:
                raise ProtocolError(f"STARTTLS answered {code}")
            self._starttls(c, data)
            caps = ehlo()
        data["phase"] = "QUIT"
        c.send("QUIT")
        return caps
