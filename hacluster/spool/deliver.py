"""`python -m hacluster.spool.deliver`: the store's final delivery, as a Postfix pipe(8) command.

Writes one message (stdin) into `BASE/MAILBOX/` the way virtual(8) does (standard Maildir: tmp/,
fsync, link into new/, fsync the directory; name `SECS.MUSECSPPID_N.HOST,S=SIZE`, which Dovecot
reads as is) and suppresses a second delivery of the same message to the same mailbox within the
window (hacluster.spool.dedup). master.cf (the lab renders it: hacluster_lab.lab.postfix):

    hadeliver unix - n n - - pipe
      flags=DRXu user=nobody argv=PYTHON -m hacluster.spool.deliver --base BASE --mailbox ${user}

with `virtual_transport = hadeliver` and `hadeliver_destination_recipient_limit = 1` (one
recipient per call, so ${user} is that recipient's mailbox). Exit status: 0 delivered or
suppressed (one line on stdout, which pipe(8) puts into the maillog's status=sent line; `--log`
appends it to a file too), 75 (EX_TEMPFAIL: Postfix keeps the message and retries) for anything
else -- a delivery agent that cannot write must never make Postfix drop the mail.

End of input is not always the end of the message: when pipe(8) dies mid-message (its Postfix
stopped by a demote, the host going down) we see EOF after whatever reached the pipe (64 KiB,
say). A delivery then would store a truncated copy, and the queue's redelivery a second, different
one (seen in `bench no-loss`, shared spool). So the agent stores nothing and exits 75 (the message
stays queued for a complete delivery) when its parent -- pipe(8), which writes the message and
waits for us -- is gone or dying at EOF: a different parent than at our start, a parent exiting
(PF_EXITING in /proc/PPID/stat: the kernel sets it before it closes a dying process's files,
which is what gave us EOF, and reparents its children only after), or parent 1 already at our
start (pipe(8) died before we ran). Postfix's ${size} cannot tell instead: it counts the queue
file's record overhead (an approximation, as pipe(8)'s manual says; a 5000-byte line differs).

Drain mode (`--forward [HOST]:PORT --sender= --recipient=`, the `hadrain` service of a former
holder's queue drain, hacluster.spool.drain): a mirrored store powered off between writing a
message into its Maildir and removing the queue file comes back with both. Its drain sends the
queue to the role holder; that copy would be a duplicate, since the holder also gets the Maildir
copy by replication. So the drain first asks this spool's own record: held here = done (exit 0,
not forwarded); otherwise the message goes to the holder by SMTP (any failure: 75, Postfix retries).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import smtplib
import socket
import sys
import time
from pathlib import Path

from .dedup import DEFAULT_WINDOW_S, RECORDS, DedupStore, Record, dedup_key, fsync_dir, message_id

EX_OK = 0
EX_TEMPFAIL = 75
PF_EXITING = 0x4  # include/linux/sched.h: set at the start of do_exit(), before files are closed
MAILBOX_RE = re.compile(r"^[A-Za-z0-9_+=-][A-Za-z0-9._+=-]{0,127}$")
_seq = itertools.count()


class DeliveryError(Exception):
    """A message that cannot be delivered now (Postfix retries)."""


def writer_gone(ppid: int) -> str | None:
    """Why the process that fed our stdin is gone or dying (then EOF was a cut), or None."""
    if ppid == 1:
        return "parent gone before we started (reparented to 1)"
    if os.getppid() != ppid:
        return f"parent {ppid} exited (now {os.getppid()})"
    try:
        with open(f"/proc/{ppid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return f"parent {ppid} gone"
    if fields[0] in ("Z", "X") or int(fields[6]) & PF_EXITING:
        return f"parent {ppid} exiting"
    return None


def check_mailbox(name: str) -> str:
    """A mailbox name from Postfix (${user}): one path component, never ours or hidden."""
    if not MAILBOX_RE.match(name) or name == RECORDS or name.startswith(".") or name in ("tmp", "new", "cur"):
        raise DeliveryError(f"mailbox {name!r} is not a plain mailbox name")
    return name


def unique_name(size: int, now: float | None = None) -> str:
    """A Maildir unique name in the common form (Dovecot's and Postfix's: time, usec, pid, host)."""
    now = time.time() if now is None else now
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"
    secs = int(now)
    return f"{secs}.M{int((now - secs) * 1e6)}P{os.getpid()}_{next(_seq)}.{host},S={size}"


def stage_maildir(box: Path, data: bytes, now: float | None = None) -> str:
    """Write `data` under the Maildir `box`'s tmp/ (created if missing), fsynced; returns its name."""
    for sub in ("", "tmp", "new", "cur"):
        (box / sub).mkdir(mode=0o700, exist_ok=True)
    name = unique_name(len(data), now)
    fd = os.open(box / "tmp" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return name


def commit_maildir(box: Path, name: str) -> None:
    """Move a staged message into new/: from here on readers see it."""
    tmp = box / "tmp" / name
    try:
        os.link(tmp, box / "new" / name)  # never overwrites: a name is delivered once
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(box / "new")


def write_maildir(box: Path, data: bytes, now: float | None = None) -> str:
    """Store `data` in the Maildir `box` (created if missing); returns the unique name."""
    name = stage_maildir(box, data, now)
    commit_maildir(box, name)
    return name


def deliver(base: Path, mailbox: str, data: bytes, window_s: float = DEFAULT_WINDOW_S,
            now: float | None = None) -> tuple[str, str]:
    """(outcome, detail): ("delivered", unique) or ("duplicate", unique of the first copy)."""
    mailbox = check_mailbox(mailbox)
    if not base.is_dir():
        raise DeliveryError(f"mail base {base} is not a directory (spool not mounted?)")
    box = base / mailbox
    key = dedup_key(data, mailbox)
    if key is None:
        return "delivered", write_maildir(box, data, now) + " (no Message-ID: not deduplicated)"
    store = DedupStore(base, window_s)
    with store.locked(key):
        seen = store.lookup(key, now)
        if seen is not None:
            return "duplicate", seen.unique
        # the record first, then the message: dying between the two leaves a record whose copy
        # is absent, which lets the next delivery through (never a loss); the other order would
        # leave a copy without a record, and Postfix's retry of the unfinished delivery would be
        # a duplicate (seen in chaos: a store powered off mid-delivery, its queue run on power-on)
        unique = stage_maildir(box, data, now)
        store.remember(key, Record(mailbox, unique, time.time() if now is None else now))
        commit_maildir(box, unique)
    try:
        store.sweep(now)
    except OSError:
        pass  # a sweep is housekeeping: the delivery is done
    return "delivered", unique


def parse_relay(relay: str) -> tuple[str, int]:
    """("198.51.100.20", 25) from Postfix's "[198.51.100.20]:25" (brackets: no MX lookup), "host:port" or "host"."""
    host, sep, port = relay.rpartition(":")
    if not sep or "]" in port:
        host, port = relay, "25"
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise DeliveryError(f"relay {relay!r} is not [HOST]:PORT")
    return host, int(port)


def forward(relay: str, sender: str, recipient: str, data: bytes, timeout_s: float = 60.0) -> str:
    """Hand one message to `relay` by SMTP; its reply text. Any refusal or error is DeliveryError
    (the drain's Postfix keeps the message and retries: a drain never drops mail)."""
    host, port = parse_relay(relay)
    wire = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    try:
        # local_hostname given: smtplib would otherwise ask DNS for our FQDN (slow or hanging in a
        # namespace without a resolver)
        with smtplib.SMTP(host, port, timeout=timeout_s, local_hostname=socket.gethostname() or "localhost") as smtp:
            smtp.sendmail(sender, [recipient], wire)
    except (smtplib.SMTPException, OSError) as err:
        raise DeliveryError(f"forward to {relay}: {err}") from err
    return f"forwarded to {relay}"


def drain_one(base: Path, mailbox: str, relay: str, sender: str, recipient: str, data: bytes,
              window_s: float = DEFAULT_WINDOW_S, now: float | None = None) -> tuple[str, str]:
    """A former holder's queue drain, one message: ("here", unique) when this node's own spool
    already holds it (its record and copy: delivered before the queue file was removed, which a
    power-off between the two leaves behind; the holder gets that copy by replication, so sending
    it too would be a duplicate), else ("forwarded", reply) after the holder took it."""
    mailbox = check_mailbox(mailbox)
    key = dedup_key(data, mailbox)
    if key is not None and base.is_dir():
        store = DedupStore(base, window_s)
        with store.locked(key):
            seen = store.lookup(key, now)
        if seen is not None:
            return "here", seen.unique
    return "forwarded", forward(relay, sender, recipient, data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hacluster.spool.deliver", description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the Maildir base (virtual_mailbox_base)")
    ap.add_argument("--mailbox", required=True, help="the recipient's mailbox (${user})")
    ap.add_argument("--window", type=float, default=DEFAULT_WINDOW_S, help="dedup window in seconds")
    ap.add_argument("--log", default=None, help="also append each outcome line to this file")
    ap.add_argument("--forward", default=None, metavar="[HOST]:PORT",
                    help="drain mode (a former holder's queue): send to this relay unless this spool already holds it")
    ap.add_argument("--sender", default="", help="drain mode: the envelope sender (${sender})")
    ap.add_argument("--recipient", default=None, help="drain mode: the envelope recipient (${recipient})")
    args = ap.parse_args(argv)
    if args.forward is not None and not args.recipient:
        ap.error("--forward needs --recipient")
    ppid = os.getppid()
    data = sys.stdin.buffer.read()
    try:
        cut = writer_gone(ppid)
        if cut is not None:
            raise DeliveryError(f"input cut after {len(data)} bytes: {cut}; nothing stored")
        if args.forward is not None:
            outcome, detail = drain_one(Path(args.base), args.mailbox, args.forward, args.sender,
                                        args.recipient, data, args.window)
        else:
            outcome, detail = deliver(Path(args.base), args.mailbox, data, args.window)
    except (DeliveryError, OSError) as err:
        _log(args.log, f"deferred: {err}")
        print(f"hadeliver: deferred: {err}")
        return EX_TEMPFAIL
    mid = message_id(data) or "(no Message-ID)"
    if outcome == "duplicate":
        line = f"duplicate suppressed: {mid} to {args.mailbox} already delivered as {detail}"
    elif outcome == "here":
        line = f"drain: {mid} to {args.mailbox} already delivered here as {detail}; not forwarded (replicated to the holder)"
    elif outcome == "forwarded":
        line = f"drain: {mid} to {args.mailbox} {detail}"
    else:
        line = f"delivered {mid} to {args.mailbox} as {detail}"
    print(line)
    _log(args.log, line)
    return EX_OK


def _log(path: str | None, line: str) -> None:
    if path:
        try:
            with open(path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
