"""Apply a schedule to a running lab, heal everything, and time the recovery.

Actions run one after another at their planned offsets (a late action is run late and its
lateness logged: on a loaded machine the schedule is a plan, the fault log is what happened).
A failing action (a thaw whose agent died meanwhile) is logged and the run goes on: chaos must
not stop at the first surprise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from hacluster.errors import UserError
from ..lab.state import read_pidfile
from . import netfaults
from .schedule import Action, Schedule

if TYPE_CHECKING:
    from ..lab.lab import Lab


def apply(lab: "Lab", a: Action) -> dict[str, Any] | None:
    """One action on the lab (raises UserError/OSError when the lab refuses)."""
    if a.op in ("kill-agent", "freeze", "thaw", "power-off", "power-on"):
        return lab.fault(a.node, a.op)
    if a.op == "start-agent":
        if a.node in lab.powered_off():
            return {"skipped": "powered off"}
        return {"pid": lab.start_agent(a.node)}
    if a.op == "cut":
        netfaults.cut(lab, a.table or "hcx_x", a.node, a.peer)
        return None
    if a.op == "uncut":
        netfaults.uncut(lab, a.table or "hcx_x", a.node, a.peer)
        return None
    raise ValueError(f"unknown op {a.op!r}")


class Runner:
    """run() blocks until the schedule's last action (or stop()); log holds what happened.

    supervise_s: like systemd's `Restart=on-failure` + `RestartSec` in
    agents/hacluster-agent.service, an agent that exits by itself (it gives up when ZooKeeper is
    unreachable at start) is started again after that many seconds -- except while a kill-agent
    fault keeps it dead or its host is powered off. None: no supervisor (agents stay dead)."""

    def __init__(self, lab: "Lab", schedule: Schedule, on_action: Callable[[dict[str, Any]], None] | None = None,
                 supervise_s: float | None = 1.0) -> None:
        self.lab = lab
        self.schedule = schedule
        self.on_action = on_action
        self.supervise_s = supervise_s
        self.log: list[dict[str, Any]] = []
        self.t0: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one change to the lab at a time (actions vs supervisor)
        self._killed: set[str] = set()  # agents a kill-agent fault keeps dead
        self._dead_since: dict[str, float] = {}

    def _record(self, rec: dict[str, Any]) -> None:
        self.log.append(rec)
        if self.on_action:
            self.on_action(rec)

    def _supervise(self) -> None:
        assert self.t0 is not None and self.supervise_s is not None
        mail = [h.name for h in self.lab.plan.of_kind("relay", "store", "fallback")]
        while not self._stop.wait(min(0.5, self.supervise_s)):
            with self._lock:
                off = self.lab.powered_off()
                now = time.monotonic()
                for n in mail:
                    if n in off or n in self._killed or self.lab.agent_pid(n) is not None:
                        self._dead_since.pop(n, None)
                        continue
                    since = self._dead_since.setdefault(n, now)
                    if now - since < self.supervise_s:
                        continue
                    rec: dict[str, Any] = {"at": round(now - self.t0, 3), "t_mono": round(now, 6), "late_s": 0.0,
                                           "op": "restart", "node": n, "fault": 0}
                    try:
                        self.lab.start_agent(n)
                        rec["ok"] = True
                    except (UserError, OSError, subprocess.SubprocessError) as err:
                        rec["ok"] = False
                        rec["error"] = str(err)[:300]
                    self._dead_since.pop(n, None)
                    self._record(rec)

    def stop(self) -> None:
        self._stop.set()

    def run(self, t0: float | None = None) -> list[dict[str, Any]]:
        self.t0 = time.monotonic() if t0 is None else t0
        sup = None
        if self.supervise_s is not None:
            sup = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)
            sup.start()
        try:
            return self._run()
        finally:
            self._stop.set()
            if sup is not None:
                sup.join(timeout=30)

    def _run(self) -> list[dict[str, Any]]:
        assert self.t0 is not None
        for a in self.schedule.actions():
            due = self.t0 + a.at
            while not self._stop.is_set():
                d = due - time.monotonic()
                if d <= 0:
                    break
                self._stop.wait(min(d, 0.5))
            if self._stop.is_set():
                break
            with self._lock:
                t_start = time.monotonic()
                rec: dict[str, Any] = {"at": a.at, "t_mono": round(t_start, 6), "late_s": round(t_start - due, 3),
                                       "op": a.op, "node": a.node, "fault": a.fault}
                if a.peer:
                    rec["peer"] = a.peer
                if a.op == "kill-agent":
                    self._killed.add(a.node)
                elif a.op == "start-agent":
                    self._killed.discard(a.node)
                try:
                    apply(self.lab, a)
                    rec["ok"] = True
                except (UserError, OSError, subprocess.SubprocessError) as err:
                    rec["ok"] = False
                    rec["error"] = str(err)[:300]
                rec["took_s"] = round(time.monotonic() - t_start, 3)
                self._record(rec)
        # the remaining time of the schedule (faults end before it; the load goes on)
        end = self.t0 + self.schedule.duration_s
        while not self._stop.is_set() and time.monotonic() < end:
            self._stop.wait(min(end - time.monotonic(), 0.5))
        return self.log


def heal_everything(lab: "Lab") -> dict[str, Any]:
    """Undo every fault: network tables, frozen agents, powered-off hosts, dead agents and MTAs.
    ZooKeeper servers come back first, so the agents find a quorum when they start."""
    from ..lab.lab import POSTFIX_KINDS, agent_available

    t0 = time.monotonic()
    done: dict[str, list[str]] = {"uncut": [], "thaw": [], "power-on": [], "start-agent": [], "start-mta": []}
    errors: list[str] = []

    def attempt(what: str, node: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
            done[what].append(node)
        except (UserError, OSError, subprocess.SubprocessError) as err:
            errors.append(f"{what} {node}: {str(err)[:200]}")

    try:
        done["uncut"] = netfaults.heal_all(lab)
        lab.heal()
    except (UserError, OSError, subprocess.SubprocessError) as err:
        errors.append(f"uncut: {str(err)[:200]}")
    frozen = sorted(os.listdir(lab.paths.frozen)) if lab.paths.frozen.exists() else []
    for n in frozen:
        if read_pidfile(lab.paths.agent_pid(n)) is not None:
            attempt("thaw", n, partial(lab.fault, n, "thaw"))
        else:
            (lab.paths.frozen / n).unlink(missing_ok=True)
    off = lab.powered_off()
    order = sorted(off, key=lambda n: (lab.plan.host(n).kind != "zk", n))
    for n in order:
        attempt("power-on", n, partial(lab.fault, n, "power-on"))
    if lab.options.agents and agent_available():
        for h in lab.plan.of_kind("relay", "store", "fallback"):
            if h.name not in lab.powered_off() and lab.agent_pid(h.name) is None:
                attempt("start-agent", h.name, partial(lab.start_agent, h.name))
    for h in lab.plan.of_kind(*POSTFIX_KINDS):
        if h.name not in lab.powered_off() and lab.mta(h.name).master_pid() is None:
            attempt("start-mta", h.name, partial(lab.start_mta, h.name))
    return {"t_mono": round(t0, 6), "took_s": round(time.monotonic() - t0, 3),
            **{k: v for k, v in done.items() if v}, "errors": errors}


#: runs in the client namespace: until every target answers (or the limit), print one JSON line
#: {name: CLOCK_MONOTONIC of its first good answer}. smtp: a 220 banner; zk: `srvr` with a Mode.
PROBE = r"""
import json, socket, sys, time
cfg = json.loads(sys.argv[1])
end = time.monotonic() + cfg["limit"]
ok = {}
def smtp(ip, port):
    with socket.create_connection((ip, port), timeout=0.5) as s:
        s.settimeout(1.0)
        return s.recv(512).startswith(b"220")
def zk(ip, port):
    with socket.create_connection((ip, port), timeout=0.5) as s:
        s.settimeout(1.0)
        s.sendall(b"srvr")
        data = b""
        while len(data) < 4096:
            b = s.recv(1024)
            if not b: break
            data += b
        return b"Mode: " in data
while time.monotonic() < end and len(ok) < len(cfg["targets"]):
    for name, kind, ip, port in cfg["targets"]:
        if name in ok: continue
        try:
            if (smtp if kind == "smtp" else zk)(ip, port):
                ok[name] = time.monotonic()
        except OSError:
            pass
    time.sleep(0.05)
print(json.dumps(ok), flush=True)
"""


def probe_targets(lab: "Lab") -> list[tuple[str, str, str, int]]:
    """What must answer after the heal: SMTP on the store VIP(s, IPv4) and on every relay and
    the fallback, and every ZooKeeper server with a Mode (part of a serving ensemble)."""
    out: list[tuple[str, str, str, int]] = []
    for v in lab.plan.vips:
        if v.address.version == 4:
            out.append((f"smtp:{v.role}-vip", "smtp", v.ip, 25))
    for h in lab.plan.of_kind("relay", "fallback"):
        out.append((f"smtp:{h.name}", "smtp", h.address, 25))
    for h in lab.plan.of_kind("zk"):
        out.append((f"zk:{h.name}", "zk", h.address, h.zk_port or 2181))
    return out


def wait_recovered(lab: "Lab", t_heal: float, limit_s: float) -> dict[str, Any]:
    """Seconds from the heal (start) until: each probe target answers, each VIP has exactly one
    holder, every agent runs. None for what did not recover within limit_s."""
    targets = probe_targets(lab)
    proc = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"), sys.executable, "-c", PROBE,
                             json.dumps({"targets": targets, "limit": limit_s})],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    vips = [v.ip for v in lab.plan.vips]
    t_vip: float | None = None
    t_agents: float | None = None
    end = time.monotonic() + limit_s
    try:
        while time.monotonic() < end and (t_vip is None or t_agents is None):
            if t_agents is None and all(lab.agent_pid(h.name) is not None
                                        for h in lab.plan.of_kind("relay", "store", "fallback")):
                t_agents = time.monotonic()
            if t_vip is None:
                holders = lab.status()["vips"]
                if all(len(holders.get(ip, [])) == 1 for ip in vips):
                    t_vip = time.monotonic()
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=limit_s + 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    try:
        seen: dict[str, float] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    except ValueError:
        seen = {}
    rec: dict[str, float | None] = {}
    for name, *_ in targets:
        rec[name] = round(seen[name] - t_heal, 3) if name in seen else None
    rec["vip_single_holder"] = round(t_vip - t_heal, 3) if t_vip is not None else None
    rec["agents_running"] = round(t_agents - t_heal, 3) if t_agents is not None else None
    vals = list(rec.values())
    return {"limit_s": limit_s, "components_s": rec,
            "max_recovery_s": None if any(v is None for v in vals) else max(vals),  # type: ignore[type-var]
            "not_recovered": sorted(k for k, v in rec.items() if v is None)}
