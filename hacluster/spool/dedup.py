"""Duplicate suppression at delivery: a bounded record of what the store delivered, on the spool.

SMTP is at-least-once: a store that queued a message but lost the connection before its `250`
reached the relay (a demote, a power-off) gets the same message again from the relay's retry,
possibly on the new holder. The delivery agent (hacluster.spool.deliver) asks this module before
it writes a Maildir file: a message seen for the same mailbox within the window is discarded.

The key is (Message-ID, mailbox, SHA-256 and size of the body). The body, not the whole message:
each hop's resend carries a new `Received:` header (the store's smtpd stamps its own queue id and
time), so a digest over the headers would never match; the body is what the sender wrote.
Mail without a Message-ID has no key and is never suppressed.

Records are one small file per key, `BASE/hacluster-dedup/new/<key>`, written Maildir-safely
(tmp/, fsync, rename, fsync the directory). They live in the Maildir base itself, so in `shared`
mode they move with the spool, and in `mirrored` mode the replicator copies them like a message
(the directory is Maildir-shaped; its files carry no Message-ID, so audits ignore them). A record
names the Maildir file of the first copy; a second delivery is discarded only while that copy
still exists here (new/ or cur/, any flags). So a record can never cause a loss: a record whose
copy is absent (replicated ahead of its message, a crash between the two writes, a user who
deleted it) lets the delivery through and is replaced. Parallel deliveries (Postfix runs several)
serialize per key on one of 256 flock(2)ed stripe files, so two copies of one message arriving
at once cannot both miss the record. Records older than the window are ignored and removed (a
sweep at most once a minute), which bounds the directory to about one window's deliveries.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

RECORDS = "hacluster-dedup"  # a Maildir-shaped directory in the base: replicated with the mail
LOCKS = ".hacluster-dedup-locks"  # stripe lock files (never replicated: `.hacluster` prefix)
SWEEP_STAMP = ".hacluster-dedup-swept"
DEFAULT_WINDOW_S = 3600.0
SWEEP_EVERY_S = 60.0
HEADER_LIMIT = 256 * 1024  # the header section we search for the Message-ID
_MSGID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """(header section, body): split at the first empty line (LF or CRLF); no empty line = all header."""
    lf, crlf = data.find(b"\n\n"), data.find(b"\r\n\r\n")
    hits = [(i, n) for i, n in ((lf, 2), (crlf, 4)) if i >= 0]
    if not hits:
        return data, b""
    i, n = min(hits)
    return data[:i], data[i + n:]


def message_id(data: bytes) -> str | None:
    """The first Message-ID header's value (unfolded, stripped), or None when absent or empty."""
    head, _body = split_message(data[:HEADER_LIMIT])
    m = _MSGID.search(head)
    if m is None:
        return None
    value = b" ".join(m.group(1).split()).decode("ascii", "replace")
    return value or None


def body_digest(data: bytes) -> tuple[str, int]:
    """SHA-256 hex and size of the body, line endings normalized (a hop may rewrite CRLF/LF)."""
    _head, body = split_message(data)
    body = body.replace(b"\r\n", b"\n")
    return hashlib.sha256(body).hexdigest(), len(body)


def dedup_key(data: bytes, mailbox: str) -> str | None:
    """The record's name for this message to this mailbox; None without a Message-ID (never suppressed)."""
    mid = message_id(data)
    if mid is None:
        return None
    digest, size = body_digest(data)
    return hashlib.sha256(f"{mid}\0{mailbox}\0{digest}\0{size}".encode()).hexdigest()


@dataclass(frozen=True)
class Record:
    mailbox: str
    unique: str  # the Maildir unique name (before `:2,`) of the first copy
    at: float  # wall time of that delivery

    def text(self, key: str) -> str:
        # no "Message-ID:" line on purpose: the audit reads Message-IDs from every Maildir file
        return f"hacluster-dedup-record 1\nkey: {key}\nmailbox: {self.mailbox}\nunique: {self.unique}\nat: {self.at:.3f}\n"

    @classmethod
    def parse(cls, text: str) -> "Record | None":
        fields = dict(line.split(": ", 1) for line in text.splitlines()[1:] if ": " in line)
        try:
            return cls(fields["mailbox"], fields["unique"], float(fields["at"]))
        except (KeyError, ValueError):
            return None


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DedupStore:
    """The records under one Maildir base. Every method is safe against concurrent processes."""

    def __init__(self, base: Path, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.base = Path(base)
        self.window_s = window_s
        self.records = self.base / RECORDS

    def _ensure(self) -> None:
        for sub in ("", "tmp", "new", "cur"):
            (self.records / sub).mkdir(mode=0o700, exist_ok=True)
        (self.base / LOCKS).mkdir(mode=0o700, exist_ok=True)

    @contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Exclusive per-key section (a stripe of 256 by the key's first byte), across processes."""
        self._ensure()
        fd = os.open(self.base / LOCKS / key[:2], os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def lookup(self, key: str, now: float | None = None) -> Record | None:
        """The live record for key: within the window, and its copy still in the mailbox."""
        now = time.time() if now is None else now
        path = self.records / "new" / key
        try:
            st = os.stat(path)
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return None
        rec = Record.parse(text)
        if rec is None or now - st.st_mtime > self.window_s or now - rec.at > self.window_s:
            return None
        return rec if self.copy_exists(rec) else None

    def copy_exists(self, rec: Record) -> bool:
        box = self.base / rec.mailbox
        if (box / "new" / rec.unique).exists():
            return True
        try:
            names = os.listdir(box / "cur")  # only on a hit: the common miss costs one stat
        except FileNotFoundError:
            return False
        return any(n.split(":", 1)[0] == rec.unique for n in names)

    def remember(self, key: str, rec: Record) -> None:
        """Write (or replace) the record Maildir-safely: tmp/, fsync, rename, fsync new/."""
        self._ensure()
        tmp = self.records / "tmp" / f"{key}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, rec.text(key).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.utime(tmp, (rec.at, rec.at))
        os.rename(tmp, self.records / "new" / key)
        fsync_dir(self.records / "new")

    def sweep(self, now: float | None = None, force: bool = False) -> int:
        """Remove records older than the window; at most once per SWEEP_EVERY_S unless forced."""
        now = time.time() if now is None else now
        stamp = self.base / SWEEP_STAMP
        if not force:
            try:
                if now - os.stat(stamp).st_mtime < SWEEP_EVERY_S:
                    return 0
            except FileNotFoundError:
                pass
        stamp.touch()
        os.utime(stamp, (now, now))
        removed = 0
        for sub in ("new", "cur"):
            d = self.records / sub
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                try:
                    if now - os.stat(d / n).st_mtime > self.window_s:
                        os.unlink(d / n)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed
