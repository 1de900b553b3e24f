"""Mirrored mode's answer to "accepted, still in the dead holder's Postfix queue".

In mirrored mode each store has its own Postfix queue. Mail the holder accepted (250 sent) but had
not yet delivered into its Maildir when it died sits in *that node's* queue. When the node comes
back it is a standby: its MTA does not run (only the holder's does), and delivering the leftovers
into its own Maildir would put them where no user reads them. So a standby whose queue is not
empty runs a *drain* instance: the same queue directory, a config that listens nowhere and sends
everything (virtual, relay and default transport) by SMTP to the role's VIP, i.e. to the current
holder, which delivers and replicates it like any new message. When the queue is empty the drain
instance is stopped.

The drain and the real instance never run together: Postfix's master lock on the queue directory
refuses a second master, and `hold()` (called first thing when this node is promoted, before the
MTA starts) stops the drain and keeps it stopped until `release()` (demotion, after the MTA has
stopped). One thread per node, every wait bounded.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

QUEUE_SUBDIRS = ("maildrop", "incoming", "active", "deferred", "hold")
DROP_SERVICES = ("smtp      inet", "smtp inet")  # the drain listens nowhere


def queued(queue_dir: Path) -> int:
    """Complete messages in a Postfix queue directory. cleanup(8) marks a queue file complete by
    setting its owner-execute bit; a file without it is a message whose transfer was cut (the
    client never got 250), which Postfix never delivers -- not mail to drain."""
    n = 0
    for sub in QUEUE_SUBDIRS:
        for root, _dirs, files in os.walk(queue_dir / sub):
            for f in files:
                try:
                    if sub == "maildrop" or os.stat(os.path.join(root, f)).st_mode & 0o100:
                        n += 1
                except OSError:
                    continue
    return n


def postconf_value(config_dir: Path, key: str, timeout_s: float = 10.0) -> str | None:
    try:
        out = subprocess.run(["postconf", "-c", str(config_dir), "-h", key], capture_output=True, text=True,
                             timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


DELIVER_SERVICE = "hadeliver"  # the store's delivery agent (hacluster.spool.deliver) in master.cf
DRAIN_SERVICE = "hadrain"  # the same agent in drain mode (forward unless this spool holds it)


def service_entry(master_cf: str, name: str) -> tuple[str, dict[str, str], str] | None:
    """(first line, attributes before argv=, argv) of master.cf service `name`, or None."""
    lines = master_cf.splitlines()
    for i, line in enumerate(lines):
        if line.split(None, 1)[:1] == [name]:
            cont = []
            for nxt in lines[i + 1:]:
                if not nxt[:1].isspace():
                    break
                cont.append(nxt.strip())
            text = " ".join(cont)
            head, sep, argv = text.partition("argv=")
            if not sep:
                return None
            attrs = dict(tok.split("=", 1) for tok in head.split() if "=" in tok)
            return line, attrs, argv.strip()
    return None


def drain_service(master_cf: str, relay: str) -> str | None:
    """The `hadrain` master.cf entry, built from the real instance's `hadeliver` entry (same
    program, user and arguments) in drain mode towards `relay`; None when the real instance does
    not deliver through our agent (then virtual mail goes to the relay by plain SMTP). Pure."""
    entry = service_entry(master_cf, DELIVER_SERVICE)
    if entry is None or "hacluster.spool.deliver" not in entry[2]:
        return None
    first, attrs, argv = entry
    user = attrs.get("user", "nobody")
    # no D/R/X flags: the message is passed on, not finally delivered (the holder adds its own)
    return (f"{DRAIN_SERVICE} unix  -       n       n       -       -       pipe\n"
            f"  flags=u user={user} argv={argv} --forward {relay} --sender=${{sender}} --recipient=${{recipient}}\n")


def drain_config(main_cf: str, master_cf: str, relay: str, data_dir: Path) -> tuple[str, str]:
    """(main.cf, master.cf) of the drain instance: the real config with every transport pointed
    at `relay` (e.g. "[198.51.100.20]:25"), no listener, its own data directory. Virtual mailbox
    mail goes through our delivery agent in drain mode when the real instance has it, so a message
    this node already delivered into its own spool is not sent again (see drain_service). Pure."""
    hadrain = drain_service(master_cf, relay)
    overrides = {
        "inet_interfaces": "loopback-only",
        "virtual_transport": DRAIN_SERVICE if hadrain else f"smtp:{relay}",
        "relay_transport": f"smtp:{relay}",
        "default_transport": f"smtp:{relay}",
        "local_transport": f"smtp:{relay}",
        "transport_maps": "",
        "data_directory": str(data_dir),
        "smtp_fallback_relay": "",
        "defer_transports": "",  # whatever held mail back on the old holder, the drain sends it all
        "queue_run_delay": "2s",
        "minimal_backoff_time": "2s",
        "maximal_backoff_time": "10s",
    }
    if hadrain:
        overrides[f"{DRAIN_SERVICE}_destination_recipient_limit"] = "1"  # ${user} is one mailbox
    keep = [line for line in main_cf.splitlines() if line.split("=", 1)[0].strip() not in overrides]
    main = "\n".join(keep) + "\n# hacluster queue drain: everything to the role holder\n" + "".join(
        f"{k} = {v}\n" for k, v in overrides.items())
    master = "".join(line + "\n" for line in master_cf.splitlines()
                     if not any(line.startswith(s) for s in DROP_SERVICES)) + (hadrain or "")
    return main, master


class QueueDrain:
    """Drains this node's leftover MTA queue to the role VIP while the node is not the holder."""

    def __init__(self, config_dir: str | Path, relay: str, work_dir: str | Path, interval_s: float = 2.0,
                 stop_timeout_s: float = 5.0) -> None:
        self.config_dir = Path(config_dir)
        self.relay = relay
        self.work = Path(work_dir)
        self.interval_s = interval_s
        self.stop_timeout_s = stop_timeout_s
        self._lock = threading.Lock()
        self._held = False  # this node is (becoming) the holder: no drain
        self._running = False  # the drain instance is up
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.drained_runs = 0
        self._qdir: Path | None = None

    @property
    def conf_dir(self) -> Path:
        return self.work / "postfix-drain"

    def start(self) -> "QueueDrain":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="queue-drain", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._held = True
            self._stop_instance()
        if self._thread is not None:
            self._thread.join(self.stop_timeout_s + 1)

    def hold(self) -> None:
        """Promotion: stop the drain now (bounded) and keep it stopped until release()."""
        with self._lock:
            self._held = True
            self._stop_instance()

    def release(self) -> None:
        """Demotion (the real MTA has stopped): drain whatever it left behind."""
        with self._lock:
            self._held = False

    # ------------------------------------------------------------------ internals

    def _queue_dir(self) -> Path | None:
        if self._qdir is None:  # postconf costs up to ~1.5 s on a cold cache: once is enough
            q = postconf_value(self.config_dir, "queue_directory")
            self._qdir = Path(q) if q else None
        return self._qdir

    def _drain_master(self) -> "psutil.Process | None":
        from ..health.mta import find_master

        proc, _why = find_master(str(self.conf_dir), str(self._queue_dir() or ""), str(self.work / "postfix-drain-data"))
        return proc

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._tick()
            except Exception:  # a drain bug must never take the agent down
                log.exception("queue drain %s: tick failed", self.config_dir)

    def _tick(self) -> None:
        q = self._queue_dir()
        if q is None or not q.is_dir():
            return
        n = queued(q)
        with self._lock:
            if self._held:
                return
            if n and not self._running:
                self._start_instance(q, n)
            elif not n and self._running:
                log.warning("queue drain %s: queue empty", self.config_dir)
                self._stop_instance()
                self.drained_runs += 1

    def _start_instance(self, queue_dir: Path, n: int) -> None:
        if (self.conf_dir / "main.cf").exists() and self._drain_master() is not None:
            self._running = True  # left running by an agent that died: adopt it
            return
        try:
            main_cf = (self.config_dir / "main.cf").read_text()
            master_cf = (self.config_dir / "master.cf").read_text()
        except OSError as err:
            log.error("queue drain %s: cannot read the MTA config: %s", self.config_dir, err)
            return
        data = self.work / "postfix-drain-data"
        data.mkdir(parents=True, exist_ok=True)
        try:
            shutil.chown(data, "postfix", "postfix")
        except (LookupError, OSError):
            pass
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        main, master = drain_config(main_cf, master_cf, self.relay, data)
        (self.conf_dir / "main.cf").write_text(main)
        (self.conf_dir / "master.cf").write_text(master)
        for extra in ("vmailbox", "transport"):
            src = self.config_dir / extra
            if src.exists():
                shutil.copy(src, self.conf_dir / extra)
        try:
            proc = subprocess.run(["postfix", "-c", str(self.conf_dir), "start"], capture_output=True, text=True,
                                  timeout=20, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.error("queue drain %s: cannot start: %s", self.config_dir, err)
            return
        if proc.returncode != 0:
            log.error("queue drain %s: postfix start failed: %s", self.config_dir,
                      (proc.stderr or proc.stdout).strip()[-300:])
            return
        self._running = True
        log.warning("queue drain %s: %d messages left in the queue of a former holder; sending them to %s",
                    self.config_dir, n, self.relay)
        # deferred mail carries the real instance's next-retry time (minimal_backoff_time, 300 s by
        # default): send it now, the holder is there
        try:
            subprocess.run(["postqueue", "-c", str(self.conf_dir), "-f"], capture_output=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.warning("queue drain %s: flush failed (the queue runs at its own pace): %s", self.config_dir, err)

    def _stop_instance(self) -> None:
        """Stop the drain master -- found by its own config dir (MAIL_CONFIG), never the real
        instance's master, which uses the same queue directory and pid file."""
        if not (self.conf_dir / "main.cf").exists():
            return
        proc = self._drain_master()
        self._running = False
        if proc is None:
            return
        try:
            pgid = os.getpgid(proc.pid)
            proc.terminate()
            proc.wait(self.stop_timeout_s)
        except (OSError, psutil.Error):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (OSError, UnboundLocalError):
                pass
        log.warning("queue drain %s: drain instance stopped", self.config_dir)
