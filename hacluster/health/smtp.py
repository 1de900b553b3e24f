"""SMTP probe: connect, expect a 220 banner, EHLO -> 250, QUIT; all within one deadline.

A raw socket instead of smtplib because smtplib's timeout applies per operation, so a server
dribbling its banner could hold the probe for several timeouts; here every phase shares one
deadline and is timed on its own (connect, banner, EHLO), which is what shows *where* a store
is slow.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from .checks import SMTP, CheckResult, result

_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$")
_MAX_REPLY = 64 * 1024


class SmtpProtocolError(Exception):
    """The peer broke the SMTP reply syntax or closed the connection."""


class _Conn:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.buf = sock, deadline, b""

    def reply(self) -> tuple[int, list[str]]:
        """One (possibly multi-line) reply: (code, text lines)."""
        lines: list[str] = []
        while True:
            while b"\n" not in self.buf:
                if len(self.buf) > _MAX_REPLY:
                    raise SmtpProtocolError("reply longer than 64 KiB")
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("deadline passed")
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise SmtpProtocolError("connection closed by server")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\n", 1)
            raw = raw.rstrip(b"\r")
            m = _REPLY_LINE.match(raw)
            if not m:
                raise SmtpProtocolError(f"bad reply line {raw[:80]!r}")
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) == b" ":
                return int(m.group(1)), lines

    def send(self, line: str) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(remaining)
        self.sock.sendall(line.encode("ascii") + b"\r\n")


@dataclass(frozen=True)
class SmtpProbe:
    """Probe an SMTP listener; crit unless 220 + EHLO 250 arrive in time, warn when slow."""

    host: str = "127.0.0.1"
    port: int = 25
    ehlo_name: str = "hacluster-probe.invalid"
    warn_latency_s: float = 0.5
    name: str = SMTP

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        phases: dict[str, float] = {}
        data: dict[str, Any] = {"host": self.host, "port": self.port, "phases_s": phases}
        phase = "connect"

        def fail(detail: str, **extra: Any) -> CheckResult:
            return result(self.name, "crit", f"{self.host}:{self.port} {phase}: {detail}", time.monotonic() - t0,
                          **data, phase=phase, **extra)

        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s) as sock:
                phases["connect"] = time.monotonic() - t0
                conn = _Conn(sock, deadline)
                phase = "banner"
                code, lines = conn.reply()
                phases["banner"] = time.monotonic() - t0
                data["banner"] = lines[0]
                if code != 220:
                    return fail(f"expected 220, got {code} {lines[0]}", code=code)
                phase = "ehlo"
                conn.send(f"EHLO {self.ehlo_name}")
                code, lines = conn.reply()
                phases["ehlo"] = time.monotonic() - t0
                if code != 250:
                    return fail(f"expected 250, got {code} {lines[0]}", code=code)
                data["extensions"] = [ln.split(" ", 1)[0].upper() for ln in lines[1:]]
                latency = time.monotonic() - t0
                phase = "quit"
                quit_note = ""
                try:
                    conn.send("QUIT")
                    code, _ = conn.reply()
                    phases["quit"] = time.monotonic() - t0
                    if code != 221:
                        quit_note = f"; QUIT answered {code}"
                except (OSError, SmtpProtocolError) as err:
                    quit_note = f"; QUIT: {err}"
        except socket.timeout:
            return fail(f"timed out after {timeout_s:g}s", timed_out=True)
        except (OSError, SmtpProtocolError) as err:
            return fail(getattr(err, "strerror", None) or str(err) or type(err).__name__)
        detail = f"{self.host}:{self.port} 220+EHLO in {latency * 1000:.1f} ms{quit_note}"
        if latency > self.warn_latency_s or quit_note:
            return result(self.name, "warn", detail + (" (slow)" if latency > self.warn_latency_s else ""),
                          latency, ok=True, **data, slow=latency > self.warn_latency_s)
        return result(self.name, "ok", detail, latency, **data, slow=False)
