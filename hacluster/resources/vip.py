"""The VIP resource: a role's service addresses (IPv4 and IPv6) on this node's interface.

start(): duplicate-address check (ARP probe / DAD NS; someone answering from another MAC means
refuse, alarm, count), add the addresses (pyroute2; IPv6 with NODAD so it is usable at once),
announce at once (gratuitous ARP in request and reply form, unsolicited NA), then a background
thread finishes the burst past the neighbour locktime and refreshes periodically while held.
A watcher thread counts any other MAC claiming a held VIP. A guard process (vip_guard) removes
the addresses if this process dies or freezes past the lease deadline. stop() removes them.

prepare() moves the duplicate-address probe off the takeover's critical path: the agent calls it
when the previous holder must already be down (ha.py rule 10, `Timing.probe_lead_s` before its
turn); the probes go out then and a listener keeps watching the wire until start(), which then
needs only what is left of `dad_timeout_s` and adds the VIP at once.

The first announcement leaves within about a millisecond of the address add: failover time is
measured to it. Every announcement re-checks the lease deadline first, so a holder that wakes
from a freeze can never pull traffic back with a stale refresh.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from prometheus_client import Counter
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .. import clock
from ..errors import UserError
from ..spec import ResourceSpec, VipSpec
from . import garp
from .base import OCF, Resource
from .vip_guard import GuardClient, Target
from .vip_record import VipRecord

log = logging.getLogger(__name__)

IFA_F_NODAD = 0x02
EEXIST, EADDRNOTAVAIL, ENODEV = 17, 99, 19

CONFLICTS = Counter("hacluster_vip_conflicts_total",
                    "VIP starts refused because another MAC answered the duplicate-address probe", ["vip"])
FOREIGN_CLAIMS = Counter("hacluster_vip_foreign_claims_total",
                         "ARP/NA frames in which another MAC claimed a VIP this node holds", ["vip"])


@dataclass(frozen=True)
class VipParams:
    """Resource params (spec: roles.R.resources[i]). Defaults: a 3-frame burst spanning 2.1 s
    (past Linux's 1 s neighbour locktime), refresh every 30 s (switch MAC tables age at ~300 s),
    a 75 ms duplicate-address wait (0 disables it; a LAN answers ARP within a millisecond, and
    75 ms fits the default profile's 80 ms probe lead, so a takeover never waits for it), and the
    guard process."""

    garp_count: int = 3
    garp_interval_s: float = 1.05
    refresh_s: float = 30.0
    dad_timeout_s: float = 0.075
    guard: bool = True


def parse_params(params: Mapping[str, Any], where: str) -> VipParams:
    """Validate vip params; UserError naming `where.key` for the first bad one."""
    defaults = VipParams()
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in VipParams.__dataclass_fields__:
            raise UserError(f"{where}.{key}: unknown vip parameter (allowed: {', '.join(VipParams.__dataclass_fields__)})")
        want = type(getattr(defaults, key))
        if want is bool:
            if not isinstance(value, bool):
                raise UserError(f"{where}.{key}: must be true or false, got {value!r}")
        elif want is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{where}.{key}: must be an integer >= 1, got {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                    or (value == 0 and key != "dad_timeout_s" and key != "refresh_s"):
                raise UserError(f"{where}.{key}: must be a number of seconds > 0, got {value!r}")
            value = float(value)
        out[key] = value
    return VipParams(**{**asdict(defaults), **out})


@dataclass(frozen=True)
class StartTimings:
    """Seconds from the start() call to: end of the duplicate-address wait, all addresses
    configured, first announcement on the wire."""

    dad_s: float
    configured_s: float
    first_garp_s: float
    probed_ahead: bool = False  # the probe went out at prepare(): dad_s is only its remainder


PREPARE_TTL_S = 2.0  # a prepared probe that start() did not consume within this is dropped


class _Probe:
    """A duplicate-address probe sent ahead of start(): the listener runs from the first probe
    until start() consumes it (or PREPARE_TTL_S), probing again every dad_timeout_s/2. Another
    host *claiming* a VIP (an ARP reply or gratuitous announcement, an NA) counts for the whole
    window; another host *probing* for it only within the first dad_timeout_s, as in the plain
    check (a later candidate's probe is not a holder). Whatever it saw, start() decides on a
    fresh plain check (an answer may have come from a holder that was legitimately renewing).

    Hand-off under `_lock`: once `stop` is set the thread spawns no guard and releases none, so
    the guard (if any) belongs to whoever set `stop`; start() need not wait for the thread to
    exit before adding the VIP, only before its own watcher reads the same sockets."""

    def __init__(self, res: "VipResource") -> None:
        self.res = res
        self.links = list(res._links.values())
        self.t_sent: float | None = None
        self.conflicts: dict[str, str] = {}
        self.guard: GuardClient | None = None
        self.stop = threading.Event()
        self.sent = threading.Event()
        self.failed = False
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"vip-probe-{res.name}", daemon=True)

    def _send(self) -> None:
        for ifname, link in self.res._links.items():
            try:
                link.send(garp.probes(link.mac, self.res.ifaces[ifname]))
            except OSError as err:
                log.warning("vip %s: probing on %s failed: %s", self.res.name, ifname, err)

    def _run(self) -> None:
        res = self.res
        wait = res.params.dad_timeout_s
        try:
            for link in self.links:
                link.drain()
            self._send()
            self.t_sent = clock.now()
            self.sent.set()
            with self._lock:  # while the probes are out: costs start() nothing
                if not self.stop.is_set() and res.params.guard and (res._guard is None or not res._guard.alive()):
                    try:
                        self.guard = GuardClient.spawn(res.targets, None, res.name)
                    except OSError as err:
                        log.error("vip %s: cannot start the guard process: %s", res.name, err)
            # probes again every half window while listening: a holder that appeared silently
            # after the first probe still has to answer one within dad_timeout_s of start()
            next_send = self.t_sent + wait / 2
            end = self.t_sent + PREPARE_TTL_S
            while not self.stop.is_set() and (now := clock.now()) < end:
                if now >= next_send:
                    self._send()
                    next_send += wait / 2
                for link, seen in garp.receive(self.links, max(0.0, min(next_send, end) - now), self._wake[0]):
                    vip = garp.claim_of(seen, res.vip_set, link.mac)
                    if vip is None and clock.now() < self.t_sent + wait:
                        vip = garp.probe_of(seen, res.vip_set, link.mac)
                    if vip is not None:
                        with self._lock:
                            self.conflicts.setdefault(vip, seen.mac)
        except Exception:  # the plain check in start() takes over
            self.failed = True
            log.exception("vip %s: probing ahead failed", res.name)
        finally:
            self.sent.set()
            with self._lock:
                if not self.stop.is_set():  # expired unconsumed: nobody adopts the guard
                    self.stop.set()
                    g, self.guard = self.guard, None
                    if g is not None:
                        g.release()

    def usable(self) -> bool:
        return self.thread.is_alive() and not self.stop.is_set()

    def saw_claims(self) -> bool:
        with self._lock:
            return bool(self.conflicts)

    def take(self, dad_timeout_s: float) -> tuple[dict[str, str], GuardClient | None, bool]:
        """Wait out the rest of the probe window, then stop the listener (without waiting for
        it): (conflicts so far, its guard, whether this call stopped it -- False: it had expired)."""
        self.sent.wait(1.0)
        if self.t_sent is not None:
            left = self.t_sent + dad_timeout_s - clock.now()
            if left > 0:
                self.stop.wait(left)
        with self._lock:
            mine = not self.stop.is_set()
            self.stop.set()
            g, self.guard = self.guard, None
            conflicts = dict(self.conflicts)
        try:
            os.write(self._wake[1], b"x")
        except OSError:
            pass
        return conflicts, g, mine

    def join(self) -> dict[str, str]:
        """Wait for the listener to exit (it was told to stop); all it saw."""
        if self.thread.ident is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=2.0)
        for fd in self._wake:
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake = (-1, -1)
        with self._lock:
            return dict(self.conflicts)

    def cancel(self) -> None:
        """Drop it: stop, wait, release its guard (nothing was added under it)."""
        _, g, _ = self.take(0.0)
        self.join()
        if g is not None:
            g.release()


class LeaseRanOut(OSError):
    """The lease deadline passed in the middle of a start: what went up comes down again."""


class VipResource(Resource):
    def __init__(self, name: str, vips: tuple[VipSpec, ...], params: VipParams = VipParams(),
                 record: VipRecord | None = None) -> None:
        if not vips:
            raise ValueError("a VIP resource needs at least one address")
        self.name = name
        self.vips = tuple(vips)
        self.params = params
        self.record = record  # what `vip cleanup` removes after the agent (vip_record.py)
        self.targets = [Target(v.ip, v.prefixlen, v.interface) for v in self.vips]
        self.ifaces: dict[str, tuple[str, ...]] = {}
        for t in self.targets:
            self.ifaces[t.ifname] = self.ifaces.get(t.ifname, ()) + (t.ip,)
        self.vip_set = frozenset(t.ip for t in self.targets)
        self._lock = threading.RLock()  # start / stop / lease_extended
        self._send_lock = threading.Lock()  # "holding" vs a frame going out
        self._nl_lock = threading.Lock()  # the IPRoute socket
        self._holding = False
        self._until: float | None = None  # lease deadline (CLOCK_BOOTTIME); None = no lease known
        self._links: dict[str, garp.Link] = {}
        self._guard: GuardClient | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wake: tuple[int, int] | None = None
        self._ipr: IPRoute | None = None
        self._expired_logged = False
        self._probe: _Probe | None = None  # a prepared duplicate-address probe (prepare())
        self.last_start: StartTimings | None = None
        self.announced = 0  # announcement rounds sent (burst + refresh)
        self.claims: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=100)
        try:  # open netlink and the packet sockets now: start() should not pay for them
            self._iproute()
            self._open_links()
        except OSError as err:
            log.warning("vip %s: %s not ready yet (retried at start): %s", name, ", ".join(self.ifaces), err)

    # ------------------------------------------------------------------ netlink

    def _iproute(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def _netlink(self, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run one pyroute2 call, `call(ipr, *args, **kw)`, under the lock; reopen the socket once if
        it broke. Arguments rather than a closure: callers loop over targets, a closure would see
        whichever target the loop is on when it runs."""
        with self._nl_lock:
            try:
                return call(self._iproute(), *args, **kw)
            except NetlinkError:
                raise
            except OSError:
                if self._ipr is not None:
                    self._ipr.close()
                self._ipr = None
                return call(self._iproute(), *args, **kw)

    def _add_all(self) -> None:
        """Record, then add: an address on the host is always in the record (OSError if the
        record cannot be written: then nothing is added). The lease deadline is checked before
        every address and after the last: a start stalled between two adds (a loaded host, 0.7 s
        seen under bench false-failover) must not put the next address up after the guard already
        fired and another node took the role -- LeaseRanOut, and start() removes what went up."""
        if self.record is not None:
            self.record.write(self.targets)
        for t in self.targets:
            self._within_lease(t.text)
            index = socket.if_nametoindex(t.ifname)
            flags = IFA_F_NODAD if ":" in t.ip else 0
            try:
                self._netlink(_addr, "add", t, index, flags=flags)
            except NetlinkError as err:
                if err.code != EEXIST:
                    raise
        self._within_lease("the last address")

    def _within_lease(self, what: str) -> None:
        if self._until is not None and clock.now() >= self._until:
            raise LeaseRanOut(f"the lease ran out while adding the addresses (before {what}): not holding")

    def _remove_all(self) -> None:
        for t in self.targets:
            try:
                index = socket.if_nametoindex(t.ifname)
            except OSError:
                continue  # no interface: no address on it
            try:
                self._netlink(_addr, "del", t, index)
            except NetlinkError as err:
                if err.code not in (EADDRNOTAVAIL, ENODEV):
                    raise

    def present(self) -> list[Target]:
        """The VIP targets currently configured on their interfaces."""
        out: list[Target] = []
        for ifname in self.ifaces:
            try:
                index = socket.if_nametoindex(ifname)
            except OSError:
                continue
            have: set[str] = set()
            for msg in self._netlink(_addresses, index):
                for attr in ("IFA_LOCAL", "IFA_ADDRESS"):
                    v = msg.get_attr(attr)
                    if v:
                        have.add(str(v))
            out += [t for t in self.targets if t.ifname == ifname and t.ip in have]
        return out

    # ------------------------------------------------------------------ the wire

    def _open_links(self) -> None:
        """Make sure every interface has an open, current link (kept open across stop/start:
        a packet socket costs ~10 ms to open and as much to close)."""
        for ifname, ips in self.ifaces.items():
            link = self._links.get(ifname)
            if link is not None and link.stale():
                link.close()
                link = None
            if link is None:
                link = self._links[ifname] = garp.Link(ifname, ipv6=any(":" in ip for ip in ips))
            garp.announcements(link.mac, ips)  # build (and cache) frames off the critical path
            garp.probes(link.mac, ips)

    def _close_links(self) -> None:
        for link in self._links.values():
            link.close()
        self._links = {}

    def _announce(self) -> bool:
        """One round: both ARP forms per IPv4 VIP, an NA per IPv6 VIP, on every interface.
        Only while holding and before the lease deadline."""
        with self._send_lock:
            if not self._holding:
                return False
            if self._until is not None and clock.now() >= self._until:
                if not self._expired_logged:
                    log.warning("vip %s: lease deadline passed: not announcing", self.name)
                    self._expired_logged = True
                return False
            for ifname, link in self._links.items():
                try:
                    link.send(garp.announcements(link.mac, self.ifaces[ifname]))
                except OSError as err:
                    log.warning("vip %s: announcing on %s failed: %s", self.name, ifname, err)
            self.announced += 1
            return True

    def _dad(self) -> dict[str, str]:
        """Probe for every VIP and collect {vip: foreign MAC} answers within dad_timeout_s.
        Probes go out twice (at 0 and half-time) so a single lost frame cannot hide a holder."""
        wait = self.params.dad_timeout_s
        links = list(self._links.values())
        conflicts: dict[str, str] = {}

        def send_probes() -> None:
            for ifname, link in self._links.items():
                try:
                    link.send(garp.probes(link.mac, self.ifaces[ifname]))
                except OSError as err:
                    log.warning("vip %s: probing on %s failed: %s", self.name, ifname, err)

        for link in links:
            link.drain()
        send_probes()
        t0 = clock.now()
        if self.params.guard and (self._guard is None or not self._guard.alive()):
            self._spawn_guard()  # while the probes are out: costs no extra time
        resent = False
        while (left := t0 + wait - clock.now()) > 0:
            if not resent and left <= wait / 2:
                send_probes()
                resent = True
            for link, seen in garp.receive(links, left if resent else left - wait / 2):
                vip = garp.claim_of(seen, self.vip_set, link.mac) or garp.probe_of(seen, self.vip_set, link.mac)
                if vip is not None:
                    conflicts.setdefault(vip, seen.mac)
        return conflicts

    # ------------------------------------------------------------------ guard

    def self_fence_steps(self) -> list[tuple[str, str]]:
        return [("vip", t.text) for t in self.targets]

    def _spawn_guard(self) -> None:
        if self._guard is not None:
            self._guard.close()
        try:
            self._guard = GuardClient.spawn(self.targets, self._until, self.name)
        except OSError as err:
            self._guard = None
            log.error("vip %s: cannot start the guard process: %s (agent death would leave the VIP)", self.name, err)

    # ------------------------------------------------------------------ threads

    def _sender(self, t_first: float, stop: threading.Event) -> None:
        """Rest of the burst, then a refresh every refresh_s, until stopped."""
        times = [t_first + off for off in garp.burst_offsets(self.params.garp_count, self.params.garp_interval_s)[1:]]
        last = t_first
        while not stop.is_set():
            if times:
                at = times.pop(0)
            elif self.params.refresh_s > 0:
                at = last + self.params.refresh_s
            else:
                return
            if stop.wait(max(0.0, at - clock.now())):
                return
            self._announce()
            last = at

    def _watch(self, links: list[garp.Link], stop: threading.Event, wake_fd: int) -> None:
        """Count (and log, at most once a second per VIP and MAC) foreign claims on held VIPs."""
        logged: dict[tuple[str, str], float] = {}
        while not stop.is_set():
            for link, seen in garp.receive(links, 1.0, wake_fd):
                vip = garp.claim_of(seen, self.vip_set, link.mac)
                if vip is None:
                    continue
                FOREIGN_CLAIMS.labels(vip).inc()
                now = clock.now()
                self.claims.append((now, vip, seen.mac))
                if now - logged.get((vip, seen.mac), -1e9) >= 1.0:
                    logged[(vip, seen.mac)] = now
                    log.error("VIP ALARM vip %s: %s claims %s (%s) while this node holds it", self.name,
                              seen.mac, vip, seen.kind)

    def _start_threads(self, t_first: float) -> None:
        self._stop = threading.Event()
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        links = list(self._links.values())
        self._threads = [
            threading.Thread(target=self._sender, args=(t_first, self._stop), name=f"vip-garp-{self.name}", daemon=True),
            threading.Thread(target=self._watch, args=(links, self._stop, self._wake[0]), name=f"vip-watch-{self.name}", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _stop_threads(self) -> None:
        self._stop.set()
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"x")
            except OSError:
                pass
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)
        self._threads = []
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    # ------------------------------------------------------------------ prepare

    def prepare(self) -> None:
        """Send the duplicate-address probes now and listen until start(): only call this when
        the previous holder must already be down (ha.py rule 10). Returns at once; idempotent."""
        if self.params.dad_timeout_s <= 0 or not self._lock.acquire(blocking=False):
            return  # nothing to prepare, or a start/stop is running
        try:
            if self._holding:
                return
            if self._probe is not None and self._probe.usable() and not self._probe.saw_claims():
                return  # listening since an earlier call, nobody answered so far: keep it
            try:
                self._open_links()
            except OSError as err:
                log.warning("vip %s: cannot open %s to probe ahead: %s", self.name, ", ".join(self.ifaces), err)
                return
            self._drop_probe()
            self._probe = _Probe(self)
            self._probe.thread.start()
        finally:
            self._lock.release()

    def unprepare(self) -> None:
        """The lease moved after the probe went out (a holder renewed or a new one took over):
        what the probe heard may be that holder, legitimately; drop it, so the next prepare()
        listens afresh instead of handing start() stale claims that force a plain check."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not self._holding:
                self._drop_probe()
        finally:
            self._lock.release()

    def _drop_probe(self) -> None:
        if self._probe is not None:
            probe, self._probe = self._probe, None
            probe.cancel()

    def _take_probe(self) -> _Probe | None:
        """The prepared probe if it listened until now and saw nobody (its listener told to stop,
        its guard adopted); None otherwise: start() then runs the plain check, which refuses if
        somebody does hold the VIP."""
        probe, self._probe = self._probe, None
        if probe is None:
            return None
        if not probe.usable():
            probe.cancel()
            return None
        conflicts, g, mine = probe.take(self.params.dad_timeout_s)
        if g is not None:
            if self._guard is None or not self._guard.alive():
                if self._guard is not None:
                    self._guard.close()
                self._guard = g
                if self._until is not None:
                    g.extend(self._until)
            else:
                g.release()
        if conflicts:
            log.info("vip %s: the probe sent ahead saw %s: checking again", self.name,
                     ", ".join(f"{mac} for {vip}" for vip, mac in sorted(conflicts.items())))
        if not mine or conflicts or probe.t_sent is None or probe.failed:
            probe.join()
            return None
        return probe

    def _late_claims(self, probe: _Probe) -> None:
        """After the VIP went up: wait for the probe's listener to exit (before our watcher reads
        the same sockets) and treat what it saw after the decision as the watcher would."""
        for vip, mac in sorted(probe.join().items()):
            FOREIGN_CLAIMS.labels(vip).inc()
            self.claims.append((clock.now(), vip, mac))
            log.error("VIP ALARM vip %s: %s claims %s (seen while the VIP went up)", self.name, mac, vip)

    # ------------------------------------------------------------------ OCF

    def start(self) -> OCF:
        with self._lock:
            t0 = clock.now()
            if self._holding and len(self.present()) == len(self.targets):
                return OCF.SUCCESS
            try:
                self._open_links()
            except OSError as err:
                log.error("vip %s: cannot open %s: %s", self.name, ", ".join(self.ifaces), err)
                self._abort()
                return OCF.ERR_GENERIC
            conflicts: dict[str, str] = {}
            probe = self._take_probe() if not self._holding else None
            prepared = probe is not None
            if prepared:
                if self.params.guard and (self._guard is None or not self._guard.alive()):
                    self._spawn_guard()
            elif self.params.dad_timeout_s > 0 and not self._holding:
                conflicts = self._dad()
            elif self.params.guard and (self._guard is None or not self._guard.alive()):
                self._spawn_guard()
            t_dad = clock.now()
            if conflicts:
                for vip, mac in sorted(conflicts.items()):
                    CONFLICTS.labels(vip).inc()
                    log.error("VIP ALARM vip %s: %s already answers for %s: refusing to take it", self.name, mac, vip)
                self._abort()
                return OCF.ERR_GENERIC
            with self._send_lock:
                if self._until is not None and clock.now() >= self._until:
                    log.error("vip %s: the lease ran out during the duplicate-address wait: not adding", self.name)
                    if probe is not None:
                        probe.join()
                    self._abort()
                    return OCF.ERR_GENERIC
                self._holding = True
                self._expired_logged = False
            try:
                self._add_all()
            except (NetlinkError, OSError) as err:
                log.error("vip %s: adding the addresses failed: %s", self.name, err)
                if probe is not None:
                    probe.join()
                self.stop()
                return OCF.ERR_GENERIC
            t_add = clock.now()
            self._announce()
            t_garp = clock.now()
            if probe is not None:
                self._late_claims(probe)  # its listener must be gone before the watcher starts
            if not self._threads:
                self._start_threads(t_garp)
            self.last_start = StartTimings(t_dad - t0, t_add - t0, t_garp - t0, prepared)
            log.info("vip %s: holding %s (dad %.1f ms%s, configured +%.2f ms, first announcement +%.2f ms)",
                     self.name, ", ".join(t.text for t in self.targets), 1e3 * (t_dad - t0),
                     " (rest of a probe sent ahead)" if prepared else "",
                     1e3 * (t_add - t_dad), 1e3 * (t_garp - t_dad))
            return OCF.SUCCESS

    def _abort(self) -> None:
        """Undo a start that did not add anything: no guard."""
        if self._guard is not None:
            self._guard.release()
            self._guard = None

    def stop(self) -> OCF:
        with self._lock:
            with self._send_lock:
                self._holding = False  # from here on no announcement can leave
            self._drop_probe()
            self._stop_threads()
            rc = OCF.SUCCESS
            try:
                self._remove_all()
                if self.record is not None:
                    self.record.remove()  # only once they are gone: a failed removal stays recorded
            except (NetlinkError, OSError) as err:
                log.error("vip %s: removing the addresses failed: %s", self.name, err)
                rc = OCF.ERR_GENERIC
            if self._guard is not None:
                if rc == OCF.SUCCESS:
                    self._guard.release()
                else:
                    self._guard.close()  # EOF without release: the guard tries the removal too
                self._guard = None
            return rc

    def close(self) -> None:
        """Stop, then release sockets (end of the resource's life; not an OCF action)."""
        with self._lock:
            self.stop()
            self._close_links()
            with self._nl_lock:
                if self._ipr is not None:
                    self._ipr.close()
                    self._ipr = None

    def monitor(self) -> OCF:
        try:
            n = len(self.present())
        except (NetlinkError, OSError) as err:
            log.error("vip %s: cannot read addresses: %s", self.name, err)
            return OCF.ERR_GENERIC
        if n == len(self.targets):
            return OCF.SUCCESS
        return OCF.NOT_RUNNING if n == 0 else OCF.ERR_GENERIC

    def lease_extended(self, until: float) -> None:
        with self._lock:
            self._until = until
            if self._guard is None:
                return
            sent = self._guard.extend(until)
            if self._holding and (not sent or not self._guard.alive()) and until > clock.now():
                self._heal()

    def _heal(self) -> None:
        """The guard is gone while we legitimately hold (it fired a hair before a renewal
        reached it, or someone killed it): put guard, addresses and announcement back."""
        log.warning("vip %s: guard process gone while holding: restarting it and re-adding the VIP", self.name)
        self._spawn_guard()
        try:
            self._add_all()
        except (NetlinkError, OSError) as err:
            log.error("vip %s: re-adding the addresses failed: %s", self.name, err)
            return
        self._announce()

    # ------------------------------------------------------------------ views

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "holding": self._holding,
            "targets": [t.text for t in self.targets],
            "lease_until": self._until,
            "guard_pid": self._guard.pid if self._guard is not None and self._guard.alive() else None,
            "announced": self.announced,
            "last_start": asdict(self.last_start) if self.last_start else None,
            "claims": [{"at": at, "vip": vip, "mac": mac} for at, vip, mac in self.claims],
        }


def _addr(ipr: IPRoute, command: str, t: Target, index: int, **kw: Any) -> Any:
    """`ip addr add|del` of one VIP target on the interface with `index`."""
    return ipr.addr(command, index=index, address=t.ip, prefixlen=t.prefixlen, **kw)


def _addresses(ipr: IPRoute, index: int) -> list[Any]:
    """Every address message of one interface (read whole, under the netlink lock)."""
    return list(ipr.get_addr(index=index))


def build(res: ResourceSpec, params: dict[str, Any], ctx: Any) -> VipResource:
    """Factory builder: every VIP of the role, on the interface each names."""
    where = f"{ctx.spec.source}: roles.{ctx.role.name}.resources.{res.name}"
    if not ctx.role.vips:
        raise UserError(f"{where}: a vip resource needs roles.{ctx.role.name}.vip")
    return VipResource(res.name, ctx.role.vips, parse_params(params, where),
                       VipRecord(ctx.state_dir, ctx.role.name, ctx.node.name, res.name))
