"""The shared mail ledger of the lab: submit mail like a real client, then audit every mail store.

`MailLoad` runs a small SMTP sender *inside the lab's client namespace* (a child process under
`ip netns exec`; its stdout is one JSON line per message) and records one `Submission` per
message: which host answered, whether it said 250 after DATA. With target "mx" the sender looks
the lab domain's MX up in the lab DNS and tries the hosts in RFC 5321 order (lowest preference
first, equal preferences shuffled), like a sending MTA; with an IP it talks to that address only.

`audit()` then waits (bounded) for the mail to settle and scans every store's Maildir (new/ and
cur/, powered-off hosts included: their files are still on disk) for the Message-IDs:

* accepted        -- the sender got 250 after DATA.
* delivered_once  -- accepted, and exactly one delivery anywhere.
* lost            -- accepted, and no delivery in any store's Maildir when the audit ends.
* duplicates      -- Message-IDs (accepted or not) delivered more than once. A *delivery* is one
                     Maildir unique name (the file name before ":2,"): the mirrored spool's replica
                     of a message keeps its name, so holder copy + replica are one delivery, and a
                     message moved new/ -> cur/ is still one delivery.
* not_accepted    -- no 250 (connect failed, 4xx/5xx, connection cut). `ambiguous` counts those
                     whose end-of-data was sent but whose reply never came: the server may have
                     queued them (the classic SMTP duplicate window, RFC 1047); they are not
                     retried unless `retry_ambiguous`, so a duplicate is the cluster's doing.

Why the audit also reports `stranded` and `late`: in mirrored mode a message that only exists in
a non-holder's Maildir is not lost (the file is there) but no user sees it until the replicator
pulls it; and mail that sat in a powered-off holder's queue is only delivered after power-on.
docs/spool.md defines the counts precisely.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from hacluster.spool.drain import QUEUE_SUBDIRS
from hacluster.spool.drain import queued as queued_messages

if TYPE_CHECKING:
    from .lab import Lab

HEADER_LIMIT = 16384  # bytes read from a delivered file to find its Message-ID
MAX_MESSAGES = 1_000_000
MSGID_RE = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Submission:
    """The final outcome of one message (after all attempts)."""

    msgid: str
    rcpt: str
    target: str | None  # host/IP that answered the last attempt (None: nobody answered)
    accepted: bool  # 250 after DATA
    code: int | None  # last SMTP reply code (None: no reply)
    t: float  # time.monotonic() (CLOCK_MONOTONIC, the same in every namespace) of the outcome
    attempts: int = 1
    ambiguous: bool = False  # end-of-data sent, reply never came (the server may have it)
    t_first: float | None = None  # monotonic time of the first attempt's start
    error: str | None = None

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Submission":
        known = Submission.__dataclass_fields__
        return Submission(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------- the sender (child)

#: Runs in the client namespace: `python -c SENDER CONFIG_JSON`. One JSON line per message on
#: stdout; "stop" on stdin (or EOF) ends it after the messages in flight.
SENDER = r'''
import json, random, smtplib, socket, sys, threading, time, uuid
cfg = json.loads(sys.argv[1])
stop = threading.Event()
out_lock = threading.Lock()
def watch_stdin():
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()
threading.Thread(target=watch_stdin, daemon=True).start()

def mx_hosts():
    import dns.resolver
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [cfg["dns"]]
    r.lifetime = 2.0
    try:
        ans = r.resolve(cfg["domain"], "MX")
    except Exception as e:
        return [], str(e)
    by_pref = {}
    for rr in ans:
        by_pref.setdefault(rr.preference, []).append(str(rr.exchange).rstrip("."))
    hosts = []
    for pref in sorted(by_pref):
        group = by_pref[pref]
        random.shuffle(group)
        for name in group:
            try:
                a = r.resolve(name, "A")
                hosts.extend(str(x) for x in a)
            except Exception:
                continue
    return hosts, None

filler_line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_" * 2)[:76] + b"\r\n"

def message(msgid, rcpt, seq):
    head = ("From: load@client.%s\r\nTo: %s\r\nSubject: hacluster load %s #%d\r\nMessage-ID: %s\r\n"
            "Date: %s\r\nX-Hacluster-Load: %s %d\r\n\r\n" % (cfg["domain"], rcpt, cfg["run"], seq, msgid,
            time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()), cfg["run"], seq)).encode()
    need = max(0, cfg["size"] - len(head))
    body = filler_line * (need // len(filler_line))
    rest = need - len(body)
    if rest >= 3:
        body += b"x" * (rest - 2) + b"\r\n"
    return head + body

class Conn:
    def __init__(self):
        self.s = None
        self.host = None
    def close(self):
        if self.s is not None:
            try:
                self.s.close()
            except Exception:
                pass
        self.s = None
        self.host = None
    def open(self, host):
        self.close()
        s = smtplib.SMTP(timeout=cfg["timeout"])
        code, _ = s.connect(host, 25)
        if code != 220:
            s.close()
            raise smtplib.SMTPConnectError(code, "banner")
        code, _ = s.ehlo("client." + cfg["domain"])
        if code != 250:
            s.close()
            raise smtplib.SMTPHeloError(code, "ehlo")
        self.s, self.host = s, host

def attempt(conn, hosts, msgid, rcpt, data):
    """One delivery attempt over the hosts in order. Returns (accepted, code, host, ambiguous, err)."""
    last = (False, None, None, False, "no host")
    for host in hosts:
        if stop.is_set() and cfg["stop_fast"]:
            break
        try:
            if conn.host != host:
                conn.open(host)
            s = conn.s
            code, resp = s.mail("load@client." + cfg["domain"])
            if code != 250:
                s.rset(); last = (False, code, host, False, "MAIL %d" % code)
                if code >= 500: return last
                conn.close(); continue
            code, resp = s.rcpt(rcpt)
            if code not in (250, 251):
                s.rset(); last = (False, code, host, False, "RCPT %d" % code)
                if code >= 500: return last
                conn.close(); continue
            code, resp = s.docmd("DATA")
            if code != 354:
                last = (False, code, host, False, "DATA %d" % code)
                conn.close()
                if code >= 500: return last
                continue
            stuffed = data.replace(b"\r\n.", b"\r\n..")
            s.send(stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n")
            try:
                code, resp = s.getreply()
            except (OSError, smtplib.SMTPException) as e:
                conn.close()
                return (False, None, host, True, "no reply after end-of-data: %s" % e)
            if code == 250:
                return (True, code, host, False, None)
            last = (False, code, host, False, "end-of-data %d" % code)
            if code >= 500:
                return last
            conn.close()
        except (OSError, smtplib.SMTPException) as e:
            conn.close()
            last = (False, None, host, False, "%s: %s" % (type(e).__name__, e))
    return last

counter = {"next": 0}
count_lock = threading.Lock()
t_start = time.monotonic()
def take():
    with count_lock:
        i = counter["next"]
        if i >= cfg["count"] or stop.is_set() or time.monotonic() - t_start > cfg["max_s"]:
            return None
        counter["next"] = i + 1
    if cfg["rate"]:
        due = t_start + i / cfg["rate"]
        while not stop.is_set():
            d = due - time.monotonic()
            if d <= 0: break
            time.sleep(min(d, 0.1))
    return i

def worker():
    conn = Conn()
    cached = {"hosts": None, "t": 0.0}
    while True:
        i = take()
        if i is None:
            break
        msgid = "<%s.%d@client.%s>" % (cfg["run"], i, cfg["domain"])
        rcpts = cfg["rcpt"]
        rcpt = rcpts[i % len(rcpts)]
        data = message(msgid, rcpt, i)
        t_first = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            if cfg["target"] == "mx":
                if cached["hosts"] is None or time.monotonic() - cached["t"] > 5:
                    hosts, err = mx_hosts()
                    cached["hosts"], cached["t"] = (hosts or None), time.monotonic()
                hosts = cached["hosts"] or []
            else:
                hosts = [cfg["target"]]
            acc, code, host, amb, err = attempt(conn, hosts, msgid, rcpt, data)
            retry = (not acc and cfg["retry_s"] > 0 and (code is None or code < 500)
                     and (not amb or cfg["retry_ambiguous"])
                     and time.monotonic() - t_first < cfg["retry_s"] and time.monotonic() - t_start < cfg["max_s"]
                     and not stop.is_set())
            if not retry:
                break
            time.sleep(cfg["retry_delay"])
        rec = {"msgid": msgid, "rcpt": rcpt, "target": host, "accepted": acc, "code": code,
               "t": time.monotonic(), "attempts": attempts, "ambiguous": amb, "t_first": t_first, "error": err}
        with out_lock:
            sys.stdout.write(json.dumps(rec) + "\n")
            sys.stdout.flush()
    conn.close()

threads = [threading.Thread(target=worker) for _ in range(cfg["connections"])]
for t in threads: t.start()
for t in threads: t.join()
sys.stdout.write(json.dumps({"done": True}) + "\n")
sys.stdout.flush()
'''


class MailLoad:
    """Background (or blocking) mail submission from the lab's client namespace.

    target: "mx" (look up the domain's MX in the lab DNS, try hosts in preference order) or an
    address. rate_per_s None = as fast as the server accepts. count None with start() = until
    stop() (bounded by max_s). retry_s > 0: a message not accepted is tried again on a fresh
    connection until accepted or retry_s after its first attempt (never after a 5xx; not after an
    ambiguous attempt unless retry_ambiguous)."""

    def __init__(self, lab: "Lab", target: str = "mx", rate_per_s: float | None = None, size: int = 2000,
                 rcpt: str | Sequence[str] | None = None, count: int | None = None, *, connections: int = 1,
                 retry_s: float = 0.0, retry_delay_s: float = 0.2, retry_ambiguous: bool = False,
                 timeout_s: float = 5.0, max_s: float = 600.0, run_id: str | None = None) -> None:
        if target != "mx" and not re.fullmatch(r"[0-9a-fA-F.:]+|[A-Za-z0-9.-]+", target):
            raise ValueError(f"target {target!r}: 'mx' or an address")
        if count is not None and not 0 <= count <= MAX_MESSAGES:
            raise ValueError(f"count {count}: 0..{MAX_MESSAGES}")
        if size < 200 or size > 64 * 1024 * 1024:
            raise ValueError(f"size {size}: 200 B .. 64 MiB")
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0 (None = as fast as accepted)")
        if not 1 <= connections <= 32:
            raise ValueError("connections: 1..32")
        self.lab = lab
        self.target = target
        self.rate_per_s = rate_per_s
        self.size = size
        domain = lab.plan.domain
        if rcpt is None:
            rcpts = [f"{lab.options.mailboxes[0]}@{domain}"]
        elif isinstance(rcpt, str):
            rcpts = [rcpt]
        else:
            rcpts = list(rcpt)
        self.rcpts = rcpts
        self.count = count
        self.connections = connections
        self.retry_s, self.retry_delay_s, self.retry_ambiguous = retry_s, retry_delay_s, retry_ambiguous
        self.timeout_s = timeout_s
        self.max_s = max_s
        self.run_id = run_id or f"hl{uuid.uuid4().hex[:12]}"
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._subs: list[Submission] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._errlog = Path("/dev/null")

    # ------------------------------------------------------------------ control

    def _config(self, count: int) -> dict[str, Any]:
        return {"run": self.run_id, "domain": self.lab.plan.domain, "dns": self.lab.plan.host("dns").address,
                "target": self.target, "rate": self.rate_per_s, "size": self.size, "rcpt": self.rcpts,
                "count": count, "connections": self.connections, "retry_s": self.retry_s,
                "retry_delay": self.retry_delay_s, "retry_ambiguous": self.retry_ambiguous,
                "timeout": self.timeout_s, "max_s": self.max_s, "stop_fast": False}

    def start(self) -> "MailLoad":
        """Start sending in the background (count messages, or until stop())."""
        if self._proc is not None:
            raise RuntimeError("MailLoad already started")
        count = MAX_MESSAGES if self.count is None else self.count
        cmd = ["ip", "netns", "exec", self.lab.ns("client"), sys.executable, "-c", SENDER,
               json.dumps(self._config(count))]
        self._errlog = self.lab.paths.root / f"mailload-{self.run_id}.err"
        with open(self._errlog, "ab") as err:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                          text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True, name="mailload-reader")
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("done"):
                break
            with self._lock:
                self._subs.append(Submission.from_dict(rec))
        self._done.set()

    def submissions(self) -> list[Submission]:
        """What has been recorded so far (the sender keeps running)."""
        with self._lock:
            return list(self._subs)

    def accepted_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._subs if s.accepted)

    def wait(self, timeout_s: float) -> bool:
        """Wait for the sender to finish its count; True if it did."""
        return self._done.wait(timeout_s)

    def stop(self, timeout_s: float | None = None) -> list[Submission]:
        """Ask the sender to stop after the messages in flight; return every submission."""
        p = self._proc
        if p is None:
            return self.submissions()
        limit = timeout_s if timeout_s is not None else 2 * self.timeout_s + 10
        try:
            if p.stdin is not None and not p.stdin.closed:
                p.stdin.write("stop\n")
                p.stdin.flush()
                p.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self._done.wait(limit)
        try:
            p.wait(timeout=max(1.0, limit / 4))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if p.stdout is not None:
            p.stdout.close()
        return self.submissions()

    def send(self, n: int, timeout_s: float | None = None) -> list[Submission]:
        """Send n messages and wait for them (bounded by timeout_s, default max_s)."""
        self.count = n
        self.start()
        self.wait(timeout_s if timeout_s is not None else self.max_s)
        return self.stop()

    def stderr_tail(self, lines: int = 5) -> str:
        """The sender's last stderr lines (why it died, if it did)."""
        try:
            return " | ".join(self._errlog.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> "MailLoad":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.stop()


# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class Delivery:
    store: str  # the store (or spool) name the file was found under
    mailbox: str
    unique: str  # Maildir unique name (before ":2,")
    path: str
    mtime: float


def maildir_unique(name: str) -> str:
    return name.split(":2,", 1)[0].split(":", 1)[0]


def read_msgid(path: Path) -> str | None:
    """The Message-ID of a delivered file (headers only: the first HEADER_LIMIT bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_LIMIT)
    except OSError:
        return None
    end = head.find(b"\n\n")
    end2 = head.find(b"\r\n\r\n")
    cut = min(x for x in (end, end2, len(head)) if x >= 0)
    m = MSGID_RE.search(head[:cut])
    return m.group(1).decode("ascii", "replace") if m else None


def scan_maildirs(stores: dict[str, Path], wanted: set[str] | None = None) -> dict[str, list[Delivery]]:
    """msgid -> deliveries found under every store's Maildir base (`base/<mailbox>/{new,cur}/`).
    A base shared by several stores (one spool) is scanned once and its deliveries are labelled
    with every such store ("store1+store2"). `wanted` limits the result."""
    out: dict[str, list[Delivery]] = defaultdict(list)
    groups: dict[str, list[str]] = {}
    bases: dict[str, Path] = {}
    for store, base in stores.items():
        real = os.path.realpath(base)
        groups.setdefault(real, []).append(store)
        bases.setdefault(real, Path(base))
    for real, names in groups.items():
        store = "+".join(names)  # one spool read by several stores (shared mode)
        base = bases[real]
        try:
            boxes = sorted(os.listdir(base))
        except OSError:
            continue
        for box in boxes:
            for sub in ("new", "cur"):
                d = Path(base) / box / sub
                try:
                    names = os.listdir(d)
                except OSError:
                    continue
                for name in names:
                    p = d / name
                    mid = read_msgid(p)
                    if mid is None or (wanted is not None and mid not in wanted):
                        continue
                    try:
                        mtime = p.stat().st_mtime
                    except OSError:
                        continue
                    out[mid].append(Delivery(store, box, maildir_unique(name), str(p), mtime))
    return dict(out)


def in_store(d: Delivery, store: str) -> bool:
    return store in d.store.split("+")


def distinct_deliveries(ds: Iterable[Delivery]) -> int:
    """Copies with the same (mailbox, unique name) are one delivery (replica, new/ -> cur/)."""
    return len({(d.mailbox, d.unique) for d in ds})


def queue_files(queue_dirs: dict[str, Path]) -> dict[str, int]:
    """Instance -> number of complete queued messages (spool.drain.queued: what Postfix will
    still deliver; a file whose transfer was cut does not count)."""
    return {name: queued_messages(Path(q)) for name, q in queue_dirs.items()}


def grep_queues(queue_dirs: dict[str, Path], msgids: set[str], limit: int = 2000) -> dict[str, list[str]]:
    """Instance -> the msgids (of `msgids`) still sitting in its queue files (diagnostics for lost)."""
    out: dict[str, list[str]] = {}
    if not msgids:
        return out
    needles = {m.encode(): m for m in msgids}
    checked = 0
    for name, q in queue_dirs.items():
        found: set[str] = set()
        for sub in QUEUE_SUBDIRS:
            for root, _dirs, files in os.walk(Path(q) / sub):
                for f in files:
                    checked += 1
                    if checked > limit:
                        break
                    try:
                        head = (Path(root) / f).read_bytes()[:HEADER_LIMIT * 4]
                    except OSError:
                        continue
                    for b, m in needles.items():
                        if b in head:
                            found.add(m)
        if found:
            out[name] = sorted(found)
    return out


# --------------------------------------------------------------------------- lab layout


def lab_stores(lab: "Lab") -> dict[str, Path]:
    """Store name -> the Maildir base where its mail can be read from outside the namespaces.
    The lab (hacluster_lab.lab.postfix.mail_stores) knows where spool modes put the files."""
    from .postfix import mail_stores

    return mail_stores(lab.plan, lab.paths, lab.options)


def lab_queues(lab: "Lab") -> dict[str, Path]:
    """Every lab Postfix instance's queue directory (as seen from outside the namespaces)."""
    from .postfix import queue_dirs

    return queue_dirs(lab.plan, lab.paths, lab.options)


# --------------------------------------------------------------------------- the ledger


@dataclass
class Ledger:
    submitted: int
    accepted: int
    delivered_once: int
    lost: int
    duplicates: int
    not_accepted: int
    ambiguous: int
    not_accepted_delivered: int  # no 250, yet delivered (ambiguous ones the server had queued)
    stranded: int  # delivered only in a store that is not the current holder (mirrored spool)
    late: int  # delivered after `late_after` (e.g. only after the old holder's power-on)
    lost_msgids: list[str] = field(default_factory=list)
    duplicate_msgids: list[str] = field(default_factory=list)
    # where each copy of a duplicate landed: msgid -> [{store, mailbox, unique, mtime}], oldest first
    duplicate_copies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stranded_msgids: list[str] = field(default_factory=list)
    lost_in_queue: dict[str, list[str]] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    queued_msgids: dict[str, list[str]] = field(default_factory=dict)
    by_target: dict[str, int] = field(default_factory=dict)
    by_store: dict[str, int] = field(default_factory=dict)
    waited_s: float = 0.0
    settled: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def copies(ds: Sequence[Delivery]) -> list[dict[str, Any]]:
    """One entry per distinct delivery (Maildir unique name), oldest first: where a duplicate's
    copies landed, for the report."""
    first: dict[tuple[str, str], Delivery] = {}
    for d in sorted(ds, key=lambda d: d.mtime):
        first.setdefault((d.mailbox, d.unique), d)  # the same key as distinct_deliveries
    return [{"store": d.store, "mailbox": d.mailbox, "unique": d.unique, "mtime": round(d.mtime, 3)}
            for d in first.values()]


def compute_ledger(subs: Sequence[Submission], found: dict[str, list[Delivery]], *,
                   holder: str | None = None, late_after: float | None = None,
                   list_limit: int = 100) -> Ledger:
    """Pure: the counts from submissions and the deliveries found (see the module docstring).
    holder: the store users read from now (deliveries elsewhere only = stranded).
    late_after: wall time; deliveries whose every copy is newer count as late."""
    by_id: dict[str, Submission] = {}
    for s in subs:
        by_id[s.msgid] = s  # a msgid is submitted once; the last record wins if repeated
    accepted = [s for s in by_id.values() if s.accepted]
    lost, once, stranded, late = [], 0, [], 0
    for s in accepted:
        ds = found.get(s.msgid, [])
        n = distinct_deliveries(ds)
        if n == 0:
            lost.append(s.msgid)
            continue
        if n == 1:
            once += 1
        if holder is not None and not any(in_store(d, holder) for d in ds):
            stranded.append(s.msgid)
        if late_after is not None and min(d.mtime for d in ds) >= late_after:
            late += 1
    dups = sorted(m for m in by_id if distinct_deliveries(found.get(m, [])) > 1)
    not_acc = [s for s in by_id.values() if not s.accepted]
    by_target: dict[str, int] = defaultdict(int)
    for s in accepted:
        by_target[s.target or "-"] += 1
    by_store: dict[str, int] = defaultdict(int)
    for m in by_id:
        for st in {d.store for d in found.get(m, [])}:
            by_store[st] += 1
    return Ledger(
        submitted=len(by_id), accepted=len(accepted), delivered_once=once, lost=len(lost),
        duplicates=len(dups), not_accepted=len(not_acc), ambiguous=sum(1 for s in not_acc if s.ambiguous),
        not_accepted_delivered=sum(1 for s in not_acc if found.get(s.msgid)),
        stranded=len(stranded), late=late,
        lost_msgids=sorted(lost)[:list_limit], duplicate_msgids=dups[:list_limit],
        duplicate_copies={m: copies(found.get(m, [])) for m in dups[:list_limit]},
        stranded_msgids=sorted(stranded)[:list_limit], by_target=dict(by_target), by_store=dict(by_store))


def audit(lab: "Lab", submissions: Sequence[Submission], wait_s: float = 60.0, *,
          stores: dict[str, Path] | None = None, queues: dict[str, Path] | None = None,
          holder: str | None = None, late_after: float | None = None, settle_s: float = 3.0,
          poll_s: float = 0.5, empty_queues: bool = False) -> Ledger:
    """Wait (at most wait_s) until every accepted message is delivered (with `holder`: is in the
    holder's store, so mail stranded on a peer is waited for), or until the running instances'
    queues are empty and nothing new arrived for settle_s; then count (see Ledger).
    `empty_queues`: also wait for the running instances' queues to empty (a returning node's
    leftover queue, drained to the holder, is where a duplicate would come from)."""
    stores = stores if stores is not None else lab_stores(lab)
    queues = queues if queues is not None else lab_queues(lab)
    wanted = {s.msgid for s in submissions}
    need = {s.msgid for s in submissions if s.accepted}
    off = lab.powered_off()
    live_queues = {n: q for n, q in queues.items() if n not in off}
    t0 = time.monotonic()
    deadline = t0 + max(0.0, wait_s)
    last_n, last_change = -1, t0
    settled = False
    while True:
        found = scan_maildirs(stores, wanted)
        have = set(found) if holder is None else {m for m, ds in found.items() if any(in_store(d, holder) for d in ds)}
        n = len(have)
        now = time.monotonic()
        if n != last_n:
            last_n, last_change = n, now
        queued = queue_files(live_queues)
        if need <= have and not (empty_queues and any(queued.values())):
            settled = True
            break
        if not any(queued.values()) and now - last_change >= settle_s:
            settled = True
            break
        if now >= deadline:
            break
        time.sleep(poll_s)
    led = compute_ledger(submissions, found, holder=holder, late_after=late_after)
    led.waited_s = round(time.monotonic() - t0, 3)
    led.settled = settled
    led.queued = {k: v for k, v in queue_files(queues).items() if v}
    if led.queued:  # what is still queued: ours (a late delivery, or a duplicate to come) or not
        led.queued_msgids = grep_queues({k: queues[k] for k in led.queued}, wanted)
    if led.lost:
        lost_all = {s.msgid for s in submissions if s.accepted and not found.get(s.msgid)}
        led.lost_in_queue = grep_queues(queues, lost_all)
    return led
