"""Notifications on role transitions and health alarms: mail to the cluster's admin, and external
scripts called like keepalived's `notify` scripts.

Mail goes through the cluster's own relays, in MX order (the mail path the cluster exists for);
when they are the problem, through the local MTA's `sendmail`, and when that fails too, into an
outbox directory (a file per mail that a person or a later run can find). Nothing here may stall
the agent loop: `event()` only puts into a bounded queue (a full queue drops and counts) and one
background thread does the rest, every SMTP step and every script bounded by a timeout.

Scripts get keepalived's arguments, `SCRIPT TYPE NAME STATE PRIORITY`: for a role transition
`ROLE store MASTER 100` (acquired: MASTER, released: BACKUP, demoted: FAULT, stopped: STOP), for a
health alarm `ALARM raid WARN 100`; details in the environment (HACLUSTER_*). Events that
arrive while a mail is being sent are coalesced into the next mail, so a flapping role costs a
few mails, not hundreds.

Configuration: the spec's `notify:` section (`notify_config.read_notify`, called by the spec reader; present =
on, even `notify: {}`), the admin address from `mail.admin`. The agent talks to an
`AgentNotifier` (`transition`, `alarm`, `health`), which is a no-op when the section is absent.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import smtplib
import subprocess
import threading
import time
from collections.abc import Mapping  # not typing's: isinstance() on its alias is ~3x slower (every loop)
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .notify_config import NOTIFY_KEYS, OUTBOX_FIELDS, NotifyConfig, read_notify  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from .spec import ClusterSpec

log = logging.getLogger(__name__)

#: our transition names -> keepalived's states (scripts written for keepalived keep working)
KEEPALIVED_STATES = {"acquired": "MASTER", "released": "BACKUP", "demoted": "FAULT", "stopped": "STOP"}
KINDS = ("role", "alarm")


@dataclass(frozen=True)
class Event:
    kind: str  # "role" (a transition of a role on this node) or "alarm" (a health check changed)
    name: str  # the role, or the check for an alarm
    state: str  # MASTER/BACKUP/FAULT/STOP for roles; OK/WARN/CRIT for alarms
    detail: str
    at: float  # wall clock


@dataclass(frozen=True)
class Delivery:
    """How one mail went out: via smtp (to `target` relay), sendmail, outbox, or lost."""

    via: str
    target: str
    events: int
    error: str = ""


def relay_targets(spec: ClusterSpec, port: int = 25) -> list[tuple[str, int]]:
    """The relay tier in MX order (lowest preference first, then priority): where mail enters."""
    relays = [n for n in spec.nodes.values() if n.tier == "relay"]
    relays.sort(key=lambda n: (n.mx_preference if n.mx_preference is not None else 1 << 17, -n.priority, n.name))
    return [(n.address, port) for n in relays]


def script_problems(scripts: Sequence[str]) -> list[str]:
    """For config checks: scripts that cannot run."""
    out = []
    for s in scripts:
        p = Path(s)
        if not p.is_absolute():
            out.append(f"{s}: notify scripts need an absolute path")
        elif not p.is_file():
            out.append(f"{s}: no such file")
        elif not os.access(p, os.X_OK):
            out.append(f"{s}: not executable (chmod +x)")
    return out


def normalise_state(kind: str, state: str) -> str:
    s = KEEPALIVED_STATES.get(state.lower(), state) if kind == "role" else state
    return s.upper()


class Notifier:
    """One per agent. `event()` never blocks; `stop()` delivers what is queued (bounded) and ends."""

    def __init__(self, spec: ClusterSpec, node: str, *, admin: str | None = None, sender: str | None = None,
                 relays: Sequence[tuple[str, int]] | None = None, smtp_port: int = 25, smtp_timeout_s: float = 5.0,
                 sendmail: str | None = "/usr/sbin/sendmail", sendmail_timeout_s: float = 10.0,
                 outbox: str | Path | None = None, outbox_max_files: int = 1000,
                 scripts: Sequence[str] = (), script_timeout_s: float = 10.0,
                 queue_size: int = 100, coalesce_s: float = 1.0, max_batch: int = 50) -> None:
        self.spec = spec
        self.node = spec.node(node)
        self.admin = admin if admin is not None else spec.mail.admin
        self.sender = sender or f"hacluster@{spec.mail.domain}"
        self.relays = list(relays) if relays is not None else relay_targets(spec, smtp_port)
        self.smtp_timeout_s = smtp_timeout_s
        self.sendmail = sendmail
        self.sendmail_timeout_s = sendmail_timeout_s
        self.outbox = Path(outbox) if outbox else None
        self.outbox_max_files = outbox_max_files
        self.scripts = list(scripts)
        self.script_timeout_s = script_timeout_s
        self.coalesce_s = coalesce_s
        self.max_batch = max_batch
        self.q: queue.Queue[Event | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0  # events lost to a full queue since the last mail (reported in it)
        self.dropped_total = 0
        self.deliveries: list[Delivery] = []  # the last 100, for tests and the status page
        self.script_runs: list[tuple[list[str], int | None]] = []  # (argv, rc or None on timeout), last 100
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._pending = 0  # events queued and not yet handled (scripts run, mail sent or given up)
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._started = False

    # ------------------------------------------------------------------ the caller's side

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def event(self, kind: str, role: str, state: str, detail: str = "") -> bool:
        """Queue one event; False if it was dropped (queue full or not a kind we know)."""
        if kind not in KINDS:
            log.warning("notify: unknown event kind %r (known: %s); dropped", kind, ", ".join(KINDS))
            return False
        ev = Event(kind, role, normalise_state(kind, state), detail, time.time())
        with self._lock:
            try:
                self.q.put_nowait(ev)
                self._pending += 1
                return True
            except queue.Full:
                self.dropped += 1
                self.dropped_total += 1
        log.warning("notify: queue full (%d); dropped %s %s %s", self.q.maxsize, kind, role, ev.state)
        return False

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was handled; True if it was within `timeout`."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued for at most `timeout`, then end the thread."""
        if not self._started:
            return
        self.flush(timeout)
        try:
            self.q.put(None, timeout=1.0)
        except queue.Full:
            pass
        self._thread.join(max(1.0, timeout))

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        while True:
            ev = self.q.get()
            if ev is None:
                return
            batch = [ev]
            self._run_scripts(ev)
            stop = False
            end = time.monotonic() + self.coalesce_s
            while len(batch) < self.max_batch:  # what arrives meanwhile goes into the same mail
                try:
                    more = self.q.get(timeout=max(0.0, end - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                self._run_scripts(more)
                batch.append(more)
            try:
                self._mail(batch)
            except Exception:  # pragma: no cover - a bug here must not end notifications
                log.exception("notify: mail failed")
            with self._done:
                self._pending -= len(batch)
                self._done.notify_all()
            if stop:
                return

    def _run_scripts(self, ev: Event) -> None:
        env = {**os.environ, "HACLUSTER_CLUSTER": self.spec.name, "HACLUSTER_NODE": self.node.name,
               "HACLUSTER_KIND": ev.kind, "HACLUSTER_NAME": ev.name, "HACLUSTER_STATE": ev.state,
               "HACLUSTER_DETAIL": ev.detail, "HACLUSTER_AT": f"{ev.at:.3f}"}
        for script in self.scripts:
            argv = [script, ev.kind.upper(), ev.name, ev.state, str(self.node.priority)]
            rc: int | None = None
            try:
                p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
            except OSError as err:
                log.error("notify script %s: cannot run: %s", script, err.strerror)
                self._note_script(argv, None)
                continue
            try:
                _, err_out = p.communicate(timeout=self.script_timeout_s)
                rc = p.returncode
                if rc != 0:
                    log.warning("notify script %s %s: exit %d: %s", script, " ".join(argv[1:]), rc,
                                err_out.decode(errors="replace").strip()[-300:])
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # the script and whatever it started
                except ProcessLookupError:
                    pass
                p.communicate()
                log.warning("notify script %s: killed after %gs", script, self.script_timeout_s)
            self._note_script(argv, rc)

    def _note_script(self, argv: list[str], rc: int | None) -> None:
        with self._lock:
            self.script_runs = (self.script_runs + [(argv, rc)])[-100:]

    # ------------------------------------------------------------------ mail

    def message(self, batch: Sequence[Event], dropped: int = 0) -> EmailMessage:
        first = batch[0]
        what = f"{first.name} {first.state}" if len(batch) == 1 else f"{len(batch)} events ({first.name} {first.state}, ...)"
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = self.admin
        msg["Subject"] = f"[hacluster {self.spec.name}] {self.node.name}: {what}"
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=self.spec.mail.domain)
        msg["X-Hacluster-Node"] = self.node.name
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
        lines = [f"cluster {self.spec.name}, node {self.node.name} ({self.node.tier}, {self.node.address})", ""]
        for ev in batch:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev.at))
            lines.append(f"{stamp}  {ev.kind:<5} {ev.name:<12} {ev.state:<7} {ev.detail}".rstrip())
        if dropped:
            lines += ["", f"{dropped} more event(s) were dropped: the notification queue was full."]
        lines += ["", "Now: `hacluster status`; history: `hacluster history`."]
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def _mail(self, batch: list[Event]) -> None:
        admin = self.admin
        if not admin:
            return
        with self._lock:
            dropped, self.dropped = self.dropped, 0
        msg = self.message(batch, dropped)
        data = msg.as_bytes()
        errors: list[str] = []
        for host, port in self.relays:
            try:
                with smtplib.SMTP(host, port, local_hostname=self._helo(), timeout=self.smtp_timeout_s) as s:
                    s.sendmail(self.sender, [admin], data)
                self._delivered(Delivery("smtp", f"{host}:{port}", len(batch), "; ".join(errors)))  # the relays tried before
                return
            except (OSError, smtplib.SMTPException) as err:
                errors.append(f"{host}:{port}: {err}")
                log.info("notify: relay %s:%d failed: %s", host, port, err)
        if self.sendmail and os.access(self.sendmail, os.X_OK):
            failed = self._sendmail(self.sendmail, admin, data)
            if failed is None:
                self._delivered(Delivery("sendmail", self.sendmail, len(batch), "; ".join(errors)))
                return
            errors.append(f"{self.sendmail}: {failed}")
        if self.outbox is not None:
            path, failed = self._to_outbox(data)
            if path is not None:
                log.warning("notify: no relay and no sendmail took the mail (%s); kept in %s", "; ".join(errors), path)
                self._delivered(Delivery("outbox", str(path), len(batch), "; ".join(errors)))
                return
            errors.append(f"outbox: {failed}")
        log.error("notify: mail to %s lost: %s", admin, "; ".join(errors) or "no relay, sendmail or outbox configured")
        self._delivered(Delivery("lost", "", len(batch), "; ".join(errors)))

    def _helo(self) -> str:
        return f"{self.node.name}.{self.spec.mail.domain}" if "." not in self.node.name else self.node.name

    def _sendmail(self, sendmail: str, admin: str, data: bytes) -> str | None:
        try:
            p = subprocess.Popen([sendmail, "-i", "-f", self.sender, "--", admin], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as err:
            return f"cannot run: {err.strerror}"
        try:
            _, err_out = p.communicate(data, timeout=self.sendmail_timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.communicate()
            return f"timed out after {self.sendmail_timeout_s:g}s"
        if p.returncode != 0:
            return f"exit {p.returncode}: {err_out.decode(errors='replace').strip()[-200:]}"
        return None

    def _to_outbox(self, data: bytes) -> tuple[Path | None, str]:
        assert self.outbox is not None
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            if sum(1 for _ in self.outbox.glob("*.eml")) >= self.outbox_max_files:
                return None, f"{self.outbox} holds {self.outbox_max_files} mails already (outbox_max_files)"
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}.eml"
            tmp = self.outbox / ("." + name)
            tmp.write_bytes(data)
            os.replace(tmp, self.outbox / name)  # readers never see half a mail
            return self.outbox / name, ""
        except OSError as err:
            return None, f"{self.outbox}: {err.strerror}"

    def _delivered(self, d: Delivery) -> None:
        with self._lock:
            self.deliveries = (self.deliveries + [d])[-100:]


# --------------------------------------------------------------------------- the agent's side


class AgentNotifier:
    """What the agent calls: `transition` on every role change, `alarm` for a health alarm, and
    `health(member.health)` every loop (turns severity changes into alarms). Every call only puts
    into the Notifier's bounded queue (never blocks, never raises); a disabled one does nothing."""

    def __init__(self, notifier: Notifier | None, node: str) -> None:
        self.notifier = notifier
        self.node = node
        self._severity: dict[str, str] = {}  # check -> last severity seen

    @classmethod
    def from_spec(cls, spec: "ClusterSpec", node: str, state_dir: str | Path, **overrides: Any) -> "AgentNotifier":
        """From the spec's `notify:` section (`spec.notify`, a NotifyConfig); disabled without one."""
        cfg: NotifyConfig | None = getattr(spec, "notify", None)
        if cfg is None:
            return cls(None, node)
        outbox = cfg.outbox.format(state_dir=state_dir, node=node, cluster=spec.name) if cfg.outbox else None
        for problem in script_problems(cfg.scripts):
            log.warning("notify: %s", problem)  # the spec was validated elsewhere; the host may differ
        kwargs: dict[str, Any] = dict(admin=cfg.admin, sender=cfg.sender, smtp_port=cfg.smtp_port,
                                      smtp_timeout_s=cfg.smtp_timeout_s, sendmail=cfg.sendmail, outbox=outbox,
                                      scripts=cfg.scripts, script_timeout_s=cfg.script_timeout_s)
        kwargs.update(overrides)
        return cls(Notifier(spec, node, **kwargs), node)

    @property
    def enabled(self) -> bool:
        return self.notifier is not None

    def start(self) -> None:
        if self.notifier is not None:
            self.notifier.start()

    def stop(self, timeout: float = 5.0) -> None:
        """At shutdown: deliver what is queued for at most `timeout`."""
        if self.notifier is not None:
            self.notifier.stop(timeout)

    def transition(self, role: str, event: str, node: str | None = None, *, term: int | None = None,
                   reason: str = "") -> bool:
        """A role transition of this node: acquired, released, demoted or stopped (scripts get
        keepalived's MASTER/BACKUP/FAULT/STOP). False if dropped or disabled."""
        if self.notifier is None:
            return False
        detail = f"{node or self.node} {event} {role}" + (f", term {term}" if term is not None else "") \
            + (f": {reason}" if reason else "")
        return self._event("role", role, event, detail)

    def alarm(self, kind: str, detail: str, state: str = "WARN") -> bool:
        """A health alarm (`kind`: the check, e.g. raid; `state`: OK/WARN/CRIT)."""
        if self.notifier is None:
            return False
        return self._event("alarm", kind, state, detail)

    def health(self, health: Mapping[str, Any], holding: bool = True) -> list[str]:
        """Alarm on each check whose severity changed since the last call (the heartbeat's
        `health` mapping: check -> result JSON). The first sight of a check alarms only if it
        is not ok: a node that starts with a degraded array says so, a healthy one stays quiet.
        Checks with scope `holder` (MTA, mounted spool) count only while `holding`: a standby
        has no spool mounted, and going standby must not read as an alarm; they start afresh
        (first sight) on every acquisition. Returns the checks that alarmed."""
        fired = []
        for name, res in health.items() if isinstance(health, Mapping) else ():
            sev = res.get("severity") if isinstance(res, dict) else None
            if sev not in ("ok", "warn", "crit"):
                continue
            if res.get("scope") == "holder" and not holding:
                self._severity.pop(name, None)
                continue
            before = self._severity.get(name)
            self._severity[name] = sev
            if sev == before or (before is None and sev == "ok"):
                continue
            detail = str(res.get("detail") or "")[:300]
            if before is not None:
                detail = f"{before} -> {sev}: {detail}"
            self.alarm(name, detail, sev.upper())
            fired.append(name)
        return fired

    def _event(self, kind: str, name: str, state: str, detail: str) -> bool:
        try:
            return self.notifier.event(kind, name, state, detail) if self.notifier is not None else False
        except Exception:  # pragma: no cover - a notification bug must never reach the agent loop
            log.exception("notify: event failed")
            return False
