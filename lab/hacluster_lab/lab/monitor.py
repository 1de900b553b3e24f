"""The invariant monitor: at no instant may two hosts hold the same VIP.

It samples, over netlink, every mail node's links and addresses and the router's neighbour table
(default every 5 ms, so gaps stay under the 10 ms bound even on a loaded machine), for a bounded
duration. A host *holds* a VIP when the address is configured on an interface that is up, on a
host that is not powered off: a powered-off host whose address lingers holds nothing; a host whose
agent died while its kernel still answers ARP does hold it.

Per sample, `decide`-style pure code (`Tracker.observe`) turns the snapshot into dual-holder
records and VIP moves; each move's ARP convergence time is the first sample at which the router's
neighbour entry for the VIP shows the new holder's MAC. All times are CLOCK_MONOTONIC seconds,
comparable with the lab's fault log (`t_mono`).

Caveat, stated rather than hidden: namespaces are read one after another within a sample
(~0.1 ms each), so a handover faster than that could be missed or, in theory, seen as an overlap.
Lease margins are hundreds of milliseconds, so neither happens for real handovers.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .rtnl import NetlinkReader

if TYPE_CHECKING:
    from .state import LabPaths
    from .topology import LabPlan


class LabView(Protocol):
    """What the monitor reads of a lab (hacluster_lab.lab.lab.Lab is one; no import of it: no circle)."""

    plan: LabPlan
    paths: LabPaths

MAX_RECORDS = 10_000  # dual-holder samples kept in full; the count is always exact


@dataclass(frozen=True)
class MonitorTarget:
    hosts: tuple[tuple[str, str], ...]  # (host name, namespace)
    vips: tuple[str, ...]
    router_ns: str
    power_dir: Path | None = None

    @classmethod
    def from_lab(cls, lab: LabView) -> "MonitorTarget":
        hosts = tuple((h.name, lab.plan.ns(h.name)) for h in lab.plan.hosts if h.is_mail_node)
        vips = tuple(_norm(v.ip) for v in lab.plan.vips)
        return cls(hosts, vips, lab.plan.router_ns, lab.paths.power)


@dataclass(frozen=True)
class Snapshot:
    t: float
    holders: dict[str, dict[str, str | None]]  # vip -> {host: MAC of the interface holding it}
    neighbour: dict[str, str | None]  # vip -> MAC in the router's neighbour table (None: none/incomplete)


@dataclass
class MonitorReport:
    samples: int = 0
    seconds: float = 0.0
    max_gap_s: float = 0.0
    mean_gap_s: float = 0.0
    dual_holder_samples: int = 0
    dual_holders: list[dict[str, Any]] = field(default_factory=list)
    dual_holder_intervals: list[dict[str, Any]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    initial: dict[str, list[str]] = field(default_factory=dict)
    final: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # every change of a VIP's holder set: {t, vip, holders} (the drill timeline's "who held what")
    transitions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


class Tracker:
    """Pure bookkeeping over snapshots: dual holders, moves, ARP convergence."""

    def __init__(self, vips: tuple[str, ...]) -> None:
        self.vips = vips
        self.report = MonitorReport()
        self.last_holder: dict[str, str | None] = {}
        self.pending: dict[str, dict[str, Any]] = {}  # vip -> move awaiting ARP convergence
        self.lost_at: dict[str, float] = {}  # vip -> first sample with no holder after a holder
        self.open_dual: dict[str, dict[str, Any]] = {}
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.gaps_sum = 0.0

    def observe(self, snap: Snapshot) -> None:
        rep = self.report
        if self.last_t is not None:
            gap = snap.t - self.last_t
            rep.max_gap_s = max(rep.max_gap_s, gap)
            self.gaps_sum += gap
        else:
            self.first_t = snap.t
        self.last_t = snap.t
        rep.samples += 1
        for vip in self.vips:
            holders = snap.holders.get(vip, {})
            names = sorted(holders)
            if rep.samples == 1:
                rep.initial[vip] = names
                self.last_holder[vip] = names[0] if len(names) == 1 else None
            if rep.samples == 1 or rep.final.get(vip) != names:
                if len(rep.transitions) < MAX_RECORDS:
                    rep.transitions.append({"t": snap.t, "vip": vip, "holders": names})
            rep.final[vip] = names
            self._dual(vip, names, snap.t)
            if not names and self.last_holder.get(vip) is not None:
                self.lost_at.setdefault(vip, snap.t)
            if len(names) == 1:
                h = names[0]
                if h != self.last_holder.get(vip):
                    moved: dict[str, Any] = {"vip": vip, "from": self.last_holder.get(vip), "to": h,
                                             "to_mac": holders[h], "t_from_lost": self.lost_at.get(vip),
                                             "t_vip": snap.t, "t_arp": None, "arp_s": None}
                    rep.moves.append(moved)
                    self.pending[vip] = moved
                self.last_holder[vip] = h
            if names:
                self.lost_at.pop(vip, None)
            move = self.pending.get(vip)
            if move is not None and snap.neighbour.get(vip) == move["to_mac"]:
                move["t_arp"] = snap.t
                move["arp_s"] = round(snap.t - move["t_vip"], 6)
                del self.pending[vip]

    def _dual(self, vip: str, names: list[str], t: float) -> None:
        rep = self.report
        cur = self.open_dual.get(vip)
        if len(names) > 1:
            rep.dual_holder_samples += 1
            if len(rep.dual_holders) < MAX_RECORDS:
                rep.dual_holders.append({"t": t, "vip": vip, "holders": names})
            if cur is None or cur["holders"] != names:
                if cur is not None:
                    cur["t_end"] = t
                cur = {"vip": vip, "holders": names, "t_start": t, "t_end": t, "samples": 0}
                rep.dual_holder_intervals.append(cur)
                self.open_dual[vip] = cur
            cur["t_end"] = t
            cur["samples"] += 1
        elif cur is not None:
            cur["t_end"] = t
            del self.open_dual[vip]

    def finish(self) -> MonitorReport:
        rep = self.report
        if self.first_t is not None and self.last_t is not None:
            rep.seconds = round(self.last_t - self.first_t, 6)
            rep.mean_gap_s = self.gaps_sum / (rep.samples - 1) if rep.samples > 1 else 0.0
        return rep


class InvariantMonitor:
    """start() -> (run for duration_s or until stop()) -> stop()/report()."""

    def __init__(self, target: MonitorTarget, interval_s: float = 0.005, duration_s: float = 60.0) -> None:
        if interval_s <= 0 or interval_s > 0.01:
            raise ValueError("interval_s must be in (0, 0.01]: the invariant is checked at least every 10 ms")
        if duration_s <= 0 or duration_s > 24 * 3600:
            raise ValueError("duration_s must be in (0, 86400]")
        self.target = target
        self.interval_s = interval_s
        self.duration_s = duration_s
        self.tracker = Tracker(target.vips)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._readers: dict[str, NetlinkReader] = {}
        self._router: NetlinkReader | None = None
        self.last: Snapshot | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "InvariantMonitor":
        self._readers = {name: NetlinkReader(ns) for name, ns in self.target.hosts}
        self._router = NetlinkReader(self.target.router_ns)
        self.sample()  # the first sample is taken before start() returns: t0 is well defined
        self._thread = threading.Thread(target=self._run, name="invariant-monitor", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def reopen(self, name: str) -> None:
        """Read host `name` from its namespace afresh: a restarted container has a new one under
        the same /run/netns name (the old reader would keep sampling the dead namespace)."""
        ns = dict(self.target.hosts)[name]
        old = self._readers.get(name)
        self._readers[name] = NetlinkReader(ns)  # one assignment: the sampler sees old or new
        if old is not None:
            old.close()

    def drop(self, name: str) -> None:
        """Stop reading host `name` (until reopen()): a powered-off container's namespace must be
        freed, and a reader's netlink socket in it would keep it -- and its addresses -- alive."""
        old = self._readers.pop(name, None)
        if old is not None:
            old.close()

    def stop(self) -> MonitorReport:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for r in [*self._readers.values(), *([self._router] if self._router else [])]:
            r.close()
        self._readers = {}
        self._router = None
        return self.report()

    def report(self) -> MonitorReport:
        return self.tracker.finish()

    def __enter__(self) -> "InvariantMonitor":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ sampling

    def _run(self) -> None:
        t0 = time.monotonic()
        end = t0 + self.duration_s
        nxt = t0 + self.interval_s
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= end:
                    break
                if nxt > now:
                    time.sleep(nxt - now)
                nxt += self.interval_s
                if nxt < time.monotonic():  # fell behind: don't burst, resume the cadence
                    nxt = time.monotonic() + self.interval_s
                try:
                    self.sample()
                except OSError as err:
                    if len(self.tracker.report.errors) < 100:
                        self.tracker.report.errors.append(f"{time.monotonic():.6f}: {err}")
        finally:
            self._done.set()

    def snapshot(self) -> Snapshot:
        vips = set(self.target.vips)
        t = time.monotonic()
        off: set[str] = set()
        if self.target.power_dir is not None:
            try:
                off = set(os.listdir(self.target.power_dir))
            except FileNotFoundError:
                pass
        holders: dict[str, dict[str, str | None]] = {v: {} for v in vips}
        # a copy, taken at once: drop() and reopen() change the dict from the drill's thread (a power
        # cut and power-on on the docker machines); iterating the dict itself killed this sampler
        # mid-drill ("dictionary changed size during iteration", store-holder-power-off)
        for name, reader in list(self._readers.items()):
            if name in off:
                continue
            addrs = [(i, a) for i, a in reader.addresses() if a in vips]
            if not addrs:
                continue
            links = reader.links()
            for index, addr in addrs:
                link = links.get(index)
                if link is not None and link.up:
                    holders[addr][name] = link.mac
        neigh: dict[str, str | None] = {}
        if self._router is not None:
            for n in self._router.neighbours():
                if n.ip in vips:
                    neigh[n.ip] = n.mac
        return Snapshot(t, holders, neigh)

    def sample(self) -> Snapshot:
        snap = self.snapshot()
        self.tracker.observe(snap)
        self.last = snap
        return snap

    def holders(self, vip: str) -> list[str]:
        """Who holds `vip` in the latest sample (cheap: no netlink round trip)."""
        snap = self.last
        return sorted(snap.holders.get(_norm(vip), {})) if snap is not None else []


def unheld_seconds(transitions: list[dict[str, Any]], vip: str, start: float, end: float) -> float:
    """How long, between `start` and `end`, `vip` had no holder at all, from a report's
    `transitions` (availability: the sum of the gaps, where a drill's max_gap is the longest)."""
    vip = _norm(vip)
    down = 0.0
    held = True
    since = start
    for tr in sorted((t for t in transitions if _norm(t["vip"]) == vip), key=lambda t: t["t"]):
        t = min(max(tr["t"], start), end)
        if not held:
            down += t - since
        held, since = bool(tr["holders"]), t
    if not held:
        down += end - since
    return round(down, 6)
