"""systemd's service notification protocol (sd_notify(3)) without libsystemd.

The protocol is one datagram of `KEY=VALUE` lines to the AF_UNIX socket named in $NOTIFY_SOCKET
(a path, or an abstract-namespace name when it starts with '@'). With Type=notify the unit is
"started" at READY=1; with WatchdogSec= systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID, the
process meant) and restarts the service when WATCHDOG=1 stops arriving.

A notification must never hurt the agent: sends are non-blocking, errors are logged once and
swallowed, and without $NOTIFY_SOCKET every call is a cheap no-op (the lab, tests, `service: none`).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping, MutableMapping

log = logging.getLogger(__name__)

ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | bytes | None:
    """$NOTIFY_SOCKET as an address for sendto(): '@name' is the abstract name '\\0name'; an
    absolute path as is; anything else (relative, vsock:...) is not supported here: None."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds within which systemd expects WATCHDOG=1, or None when the watchdog is off or meant
    for another process ($WATCHDOG_PID set to a pid other than ours), as sd_watchdog_enabled()."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    want = environ.get("WATCHDOG_PID", "")
    if want and (not want.isdigit() or int(want) != pid):
        return None
    return int(usec) / 1e6


class SdNotify:
    """The notification channel of one process; disabled when there is no socket."""

    def __init__(self, address: str | bytes | None = None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        self._sock: socket.socket | None = None
        self._status: str | None = None
        self._ready = False
        self._stopping = False
        self._failed = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, pid: int | None = None,
                     unset: bool = True) -> "SdNotify":
        """Read the variables; with `unset` remove them, as sd_notify(unset_environment=1) does,
        so Postfix, resource scripts and guards never report in the agent's name."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%r: not a path or @abstract name; not notifying systemd", raw)
        watchdog = watchdog_interval(env, os.getpid() if pid is None else pid) if address is not None else None
        if unset:
            for name in ENV_VARS:
                env.pop(name, None)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram with these `KEY=VALUE` fields; True if it left."""
        if self.address is None or not fields:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a busy PID 1 drops a ping; it never stalls the loop
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as err:
            if not self._failed:
                log.warning("sd_notify to %r failed: %s (further failures not logged)", self.address, err)
                self._failed = True
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        """READY=1, once."""
        if self._ready:
            return
        self._ready = True
        self._status = status if status is not None else self._status
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str, watchdog: bool = False) -> None:
        """STATUS= when it changed (one line: systemctl status shows it), with WATCHDOG=1 if asked."""
        fields = ["WATCHDOG=1"] if watchdog and self.watchdog_s else []
        if text != self._status:
            self._status = text
            fields.append(f"STATUS={text.splitlines()[0] if text else ''}")
        self.send(*fields)

    def watchdog(self) -> None:
        if self.watchdog_s:
            self.send("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> None:
        """STOPPING=1, once: systemd then expects the exit, not pings."""
        if self._stopping:
            return
        self._stopping = True
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
