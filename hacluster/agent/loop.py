"""The node agent: snapshot -> decide -> act, once per loop, one INFO line per role per cycle.

Acting is the only place with side effects: lease writes (coord.session), resources (start in
order on acquiring, stop in reverse on losing), the heartbeat, history and the claims log.

A lease is only as good as its deadline. Three things enforce it, from fast to last-resort:
the loop wakes at the deadline and demotes before doing anything else; a guard thread stops the
resources at the deadline even while the loop is stuck; and resources that must vanish with the
lease (the VIP) hand the deadline to a guard process that outlives a frozen or killed agent.

Two things keep the takeover short without touching the lease rules: the role's `run_on_standby`
resources (an MTA behind the VIP) run on every candidate, started when the agent starts and never
stopped on losing the role, so acquiring only confirms them; and from a verdict's `probe_at`
(ha.py rule 10) the agent calls the resources' `prepare()`, so the VIP's duplicate-address probe
is done (and the standby's smtpd warm) by the time the lease is ours.

With `failsafe: true` (off by default) a holder cut off from ZooKeeper polls its tier peers each
loop (hacluster/failsafe.py) and extends its deadline locally on ha.py rule 13; the API answers
peers' polls and the loop keeps the promises given (rule 14).
"""

from __future__ import annotations

import json
import functools
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from hacluster import clock
from hacluster.clock import BootClock, Clock
from hacluster.config_digest import describe, digest_of, mismatches
from hacluster.coord.heartbeat import HeartbeatPacer
from hacluster.coord.model import Cluster, Member
from hacluster.coord.outcome import Acquired, Adopted, Lost, Renewed, Unreachable
from hacluster.coord.session import Coordinator
from hacluster.config_path import config_option
from hacluster.errors import UserError
from hacluster.logsetup import configure_logging
from hacluster.drift import differing, digests_of
from hacluster.exercise import ExerciseState, advance
from hacluster.graceful import DEFAULT_DRAIN_MAX_S, Cause, drain_step
from hacluster.ha import Action, FailsafePoll, Fenced, Held, Local, Promise, Verdict, decide, track_healthy
from hacluster.ha_local import (give_back, probe_due, probe_step, reassert, snapshot_cached, zk_budget, zk_read, zk_stalled,
                                 zk_suspect)
from . import priority
from .node_health import NodeHealth
from .resource_monitor import ResourceMonitor, plans
from hacluster.resources.base import OCF, Resource
from hacluster.resources.vip_record import default_state_dir
from hacluster.resources.factory import ResourceContext, build_resources
from hacluster.resources.role_guard import RoleGuard, with_role_guard
from hacluster.resources.mta import MtaResource
from hacluster.resources.smtp_drain import SmtpDrain
from .sdnotify import SdNotify
from .verdict_log import VerdictLog
from hacluster.spec import ClusterSpec, RoleSpec, load_spec

if TYPE_CHECKING:  # imported when the API is started: agents without one never load it
    from hacluster.http.api import AgentApi
    from hacluster.metrics import AgentMetrics
    from hacluster.notify import AgentNotifier
    from hacluster.coord.model import Lease
    from hacluster.failsafe import Poller, Question

log = logging.getLogger("hacluster.agent")

#: pause between attempts to reach ZooKeeper at agent start: doubles from MIN up to MAX
CONNECT_BACKOFF_MIN_S = 0.5
CONNECT_BACKOFF_MAX_S = 8.0
#: how often every agent trims the history to zookeeper.history_keep (idempotent: one listing
#: when nothing is over; the first trim right after connecting)
TRIM_HISTORY_EVERY_S = 60.0

#: a renewal this close to due is sent now rather than a wake-up later
RENEW_EARLY_S = 0.01
#: the lease guard's longest sleep while nothing is held (an acquisition wakes it at once)
GUARD_IDLE_S = 1.0


class ClaimsLog:
    """Append-only JSON lines of every holder claim, with CLOCK_BOOTTIME times; tests and
    benchmarks merge the logs of all agents on a host and check that no two claims overlap."""

    def __init__(self, path: str | None, node: str) -> None:
        self.node = node
        self.f = open(path, "a", buffering=1) if path else None
        self.lock = threading.Lock()

    def write(self, event: str, role: str, **kw: Any) -> None:
        if self.f is None:
            return
        with self.lock:
            self.f.write(json.dumps({"t": clock.now(), "node": self.node, "role": role, "event": event, **kw}) + "\n")


class RoleRuntime:
    """Our state for one role: the lease we hold (if any) and its resources."""

    def __init__(self, role: RoleSpec, resources: list[Resource]) -> None:
        self.role = role
        self.resources = resources
        self.held: Held | None = None
        self.running = False  # resources started (or partly): must be stopped on losing the role
        self.last_verdict: Verdict | None = None
        self.renewed_at: float | None = None
        # start and stop never interleave (a stop racing a start could leave a resource running)
        self.res_lock = threading.RLock()
        self.starter: threading.Thread | None = None  # starts resources while the loop keeps renewing
        self.start_failed = False  # set by the starter; the loop releases the role (lease writes stay in the loop)
        self.fail_reason: str | None = None  # why start_failed was set, when not a failed start (a monitor)
        self.acquired_at: float | None = None  # our clock at the acquisition of the lease we hold (ha.py rule 33)
        self.monitor: ResourceMonitor | None = None  # recurring monitors (resource_monitor.py), if any
        # (term, version) of our last acknowledged lease write when we demoted: that lease runs
        # out on its own; a later version naming us is a write of ours that landed late
        self.expired: tuple[int, int] | None = None
        # failsafe mode: the deadline of our last local extension (ha.py rule 13); None once a
        # renewal through ZooKeeper is acknowledged again (status, metrics: running on failsafe)
        self.failsafe_until: float | None = None
        # graceful demote (hacluster/graceful.py): a role with VIPs and an MTA refuses new SMTP
        # connections on its VIPs before a release, and while cut off from ZooKeeper
        self.drain: SmtpDrain | None = None
        if role.vips and any(isinstance(r, MtaResource) for r in resources):
            self.drain = SmtpDrain(role.name, [v.ip for v in role.vips])

    def on_failsafe(self, now: float) -> bool:
        held = self.held
        return held is not None and held.until == self.failsafe_until and now < held.until

    def starting(self) -> bool:
        return self.starter is not None and self.starter.is_alive()


@dataclass(frozen=True)
class AgentParts:
    """The collaborators an Agent works through, passed in (constructor injection): the
    production set from `production_parts`, a test's fakes from `dataclasses.replace` on it, so
    no test patches an agent after building it."""

    coord: Coordinator  # ZooKeeper: snapshots, lease writes, history
    health: NodeHealth  # the node's own checks
    claims: ClaimsLog  # the holder-claims log (tests, benches)
    metrics: AgentMetrics
    notifier: AgentNotifier
    sd: SdNotify  # systemd notifications (Type=notify, WatchdogSec=); off without systemd
    clock: Clock  # lease time (CLOCK_BOOTTIME) and sleeps
    resources: Callable[[ResourceContext], list[Resource]]  # a role's resources, in start order


def production_parts(spec: ClusterSpec, node: str, state_dir: Path, claims_log: str | None = None,
                     sd: SdNotify | None = None) -> AgentParts:
    """What a mail node's agent runs with."""
    from hacluster.metrics import AgentMetrics
    from hacluster.notify import AgentNotifier

    me = spec.node(node)
    coord = Coordinator(spec, node)
    state_dir.mkdir(parents=True, exist_ok=True)
    metrics = AgentMetrics(node, [r.name for r in spec.roles_for(node)], spec.name, me.tier, failsafe=spec.failsafe,
                           zookeeper_connected=lambda: coord.connected)
    return AgentParts(coord=coord, health=NodeHealth(spec, me, state_dir), claims=ClaimsLog(claims_log, node),
                      metrics=metrics, notifier=AgentNotifier.from_spec(spec, node, state_dir), sd=sd or SdNotify(),
                      clock=BootClock(), resources=build_resources)


class Agent:
    def __init__(self, spec: ClusterSpec, node: str, state_dir: Path, parts: AgentParts,
                 api_port: int | None = None, api_bind: str | None = None) -> None:
        self.spec = spec
        self.sd = parts.sd
        self.clock = parts.clock
        self.node = spec.node(node)
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.coord = parts.coord
        self.pacer = HeartbeatPacer(spec.timing.heartbeat_s, spec.timing.renew_s + spec.timing.loop_s)
        self._trim_at = 0.0  # CLOCK_BOOTTIME of the next history trim
        self._trimmer: threading.Thread | None = None
        self.health = parts.health
        self.claims = parts.claims
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.roles: dict[str, RoleRuntime] = {}
        for role in spec.roles_for(node):
            ctx = ResourceContext(spec, role, self.node, state_dir)
            resources = parts.resources(ctx)
            for r in resources:
                if r.name in role.run_on_standby:
                    r.standby_running = True
            # the role's guard process first in start order (stopped last): self-fencing of the
            # MTA and the shared spool at the deadline, docs/safety.md "Every resource of the role"
            resources = with_role_guard(role.name, resources)
            rt = self.roles[role.name] = RoleRuntime(role, resources)
            wanted = plans([(res.name, dict(res.params)) for res in role.resources])
            if wanted:
                rt.monitor = ResourceMonitor(role.name, resources, wanted, rt.res_lock,
                                             functools.partial(self._monitor_failed, rt))
        self.me: Member | None = None
        self.cluster: Cluster | None = None
        self.config = digest_of(spec)  # published in every heartbeat (docs/safety.md, mixed timing)
        self._config_mismatch: dict[str, list[str]] = {}
        self._drift: dict[str, list[str]] = {}
        self._exercises: dict[str, ExerciseState] = {}  # role -> routine exercise state (exercise.py)
        self.loop_count = 0
        self.verdict_log = VerdictLog()  # INFO when a verdict changes, else every SUMMARY_S
        self.api_port = api_port
        self.api_bind = api_bind
        self.api: AgentApi | None = None
        self.metrics = parts.metrics
        self.notifier = parts.notifier
        self._guard = threading.Thread(target=self._guard_loop, name="lease-guard", daemon=True)
        self._guard_wake = threading.Event()  # set on every acquisition: the guard sleeps while nothing is held
        # failsafe mode (hacluster/failsafe.py): our promises to holders not to acquire (rule 14),
        # the last leases read while ZooKeeper answered, and the lock that makes a promise and an
        # acquisition exclude each other (a promise is never given while a CAS is in flight)
        self.promises: dict[str, Promise] = {}
        self.healthy_since: dict[str, float] = {}  # ha.py rule 33: node -> since when eligible (our clock)
        self.last_leases: dict[str, Lease] = {}
        self.acq_lock = threading.Lock()
        self.poller: Poller | None = None
        self._failsafe_said: dict[str, bool] = {}  # role -> last answer confirmed (log on changes only)
        # host fencing (ha.py rules 15-19): role -> node -> our record of fencing it, per lease term
        self.fences: dict[str, dict[str, Fenced]] = {}
        # failsafe (ha_local.py rule 44): a ZooKeeper request of ours failed or timed out; a holder
        # stays stalled (polls first, re-asserts by CAS after) until a write is acknowledged
        self._zk_stalled = False
        self._zk_acked = False  # this loop: a lease write of ours was acknowledged (rule 44)
        self._zk_failed = False  # this loop: a ZooKeeper request of ours failed or timed out
        # ha_local.py rule 45: a request of ours failed or timed out and the server has not answered
        # since -- the watch cache may be stale without kazoo knowing: read snapshots from the server
        self._zk_suspect = False
        self._zk_timed_out = False  # this loop: a request of ours failed or timed out (any mode)
        self._zk_answered = False  # this loop: the server answered a request of ours
        self._ever_connected = False
        self.reconnected_at: float | None = None  # ha.py rule 25
        self.drain_max_s = DEFAULT_DRAIN_MAX_S  # graceful.py rule 21; 0 = stop at once, as before

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        # threads hand over the GIL every 1 ms instead of 5: the starter thread that puts the VIP
        # up after a takeover must not queue behind kazoo's and the loop's threads
        sys.setswitchinterval(0.001)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        # everything that does not need ZooKeeper first: the standby's MTA (the FallbackMX queue
        # above all) must take mail exactly when the rest of the cluster is in trouble
        self.health.start()
        self.notifier.start()
        for rt in self.roles.values():
            if rt.drain is not None:
                rt.drain.open()  # a crashed agent's leftover table must not refuse the next holder's mail
        self._guard.start()
        if any(rt.monitor is not None for rt in self.roles.values()):
            threading.Thread(target=self._monitor_loop, name="resource-monitor", daemon=True).start()
        self._start_standby()
        if self.api_port is not None:
            from hacluster.http.api import AgentApi

            self.api = AgentApi(self, self.api_bind or self.node.api_address or self.node.address, self.api_port)
            self.api.start()
        try:
            if not self._connect():
                return 0  # stopped (SIGTERM) before ZooKeeper was ever reachable
        except BaseException:
            self.shutdown()
            raise
        self.coord.watch_leases(self.roles, on_release=self.wake.set)
        log.info("agent %s up: tier %s, roles %s, lease %.3gs, loop %.3gs",
                 self.node.name, self.node.tier, ",".join(self.roles) or "-", self.spec.timing.lease_s, self.spec.timing.loop_s)
        try:
            while not self.stop_event.is_set():
                next_at = self.cycle()
                self.wake.clear()
                # the watchdog is fed here, by the loop itself: a loop stuck in a call stops the pings
                if self.sd.enabled:
                    self.sd.ready()
                    self.sd.status(self.sd_status(), watchdog=True)
                self._wait_until(next_at)
        finally:
            self.shutdown()
        return 0

    def _wait_until(self, at: float) -> None:
        """Sleep until `at` or a wake-up; with a watchdog, in slices of half its interval with a
        ping after each, so a long loop period (an explicit timing) never starves it."""
        while True:
            delay = max(0.0, at - self.clock.now())
            if self.sd.watchdog_s:
                delay = min(delay, self.sd.watchdog_s / 2)
            if self.wake.wait(delay) or self.clock.now() >= at:
                return
            self.sd.watchdog()

    def sd_status(self) -> str:
        """One line for `systemctl status`: what we hold, ZooKeeper, health."""
        held = [n for n, rt in self.roles.items() if rt.held is not None]
        parts = [f"holder of {', '.join(held)}" if held else
                 f"standby for {', '.join(self.roles)}" if self.roles else "no roles"]
        parts.append("ZooKeeper " + ("connected" if self.coord.connected else str(self.coord.state).lower()))
        if self.me is not None:
            parts.append("healthy" if self.me.healthy else "unhealthy: " + "; ".join(self.me.reasons)[:200])
        return f"{self.node.name}: " + ", ".join(parts)

    def _connect(self) -> bool:
        """Connect to ZooKeeper, retrying while it is unreachable (one log line per attempt, backoff
        up to CONNECT_BACKOFF_MAX_S) instead of exiting: a node booted during a ZooKeeper outage
        keeps its standby resources running and joins when ZooKeeper is back. Access denied is a
        configuration error and still ends the agent (exit 2). False: stopped by a signal first."""
        attempt_s = max(2.0, self.spec.zookeeper.session_timeout_s)
        delay, attempt, t0 = CONNECT_BACKOFF_MIN_S, 0, self.clock.now()
        while not self.stop_event.is_set():
            attempt += 1
            try:
                self.coord.start(timeout=attempt_s)
            except UserError as err:
                if err.exit_code != 1:
                    raise
                log.warning("%s: ZooKeeper unreachable (attempt %d, %.1fs since start): %s; retrying in %.1fs%s",
                            self.node.name, attempt, self.clock.now() - t0, err, delay,
                            "; standby resources keep running" if self._has_standby() else "")
                # ready without ZooKeeper: the standby resources run, and `systemctl start` (boot)
                # must not wait for, or time out on, an outage elsewhere
                status = f"{self.node.name}: waiting for ZooKeeper (attempt {attempt}): {err}"
                self.sd.ready(status)
                self.sd.status(status, watchdog=True)
                if self._stop_wait(delay):
                    break
                delay = min(delay * 2, CONNECT_BACKOFF_MAX_S)
                continue
            if attempt > 1:
                log.info("%s: ZooKeeper reached after %d attempts (%.1fs)", self.node.name, attempt, self.clock.now() - t0)
            return True
        self.shutdown()
        return False

    def _stop_wait(self, delay: float) -> bool:
        """stop_event.wait(delay), feeding the watchdog meanwhile; True if stopped."""
        end = self.clock.now() + delay
        while True:
            left = end - self.clock.now()
            step = min(left, self.sd.watchdog_s / 2) if self.sd.watchdog_s else left
            if self.stop_event.wait(max(0.0, step)):
                return True
            self.sd.watchdog()  # also right before the next attempt, which may block a while
            if self.clock.now() >= end:
                return False

    def _has_standby(self) -> bool:
        return any(r.standby_running for rt in self.roles.values() for r in rt.resources)

    def cycle(self) -> float:
        """One loop: returns the CLOCK_BOOTTIME time at which the next cycle should run."""
        t0 = self.clock.now()
        t = self.spec.timing
        # a holder whose deadline passed (e.g. it was frozen) demotes before anything else
        self._enforce_deadlines()
        # the previous verdict's probe time has come (we woke for it): probe before the ZooKeeper
        # round trips of this cycle. If the lease moved meanwhile the probe may meet a holder that
        # renewed; the VIP then checks afresh at start (docs/vip.md), so an early probe is only wasted
        for rt in self.roles.values():
            if rt.last_verdict is not None and probe_due(rt.last_verdict.probe_at, rt.held is not None, t0):
                self._prepare(rt)
        self.me = self.health.evaluate(holding=any(rt.held is not None for rt in self.roles.values()))._replace(
            config=self.config)
        self.notifier.health(self.me.health, holding=any(rt.held is not None for rt in self.roles.values()))
        # woken for our turn to take a role over: heartbeat after acting, one ZooKeeper round trip
        # less before the CAS (decide uses our fresh health, not the published one)
        takeover = any(rt.held is None and rt.last_verdict is not None and rt.last_verdict.wake_at is not None
                       and t0 >= rt.last_verdict.wake_at for rt in self.roles.values())
        self._zk_acked = False
        self._zk_failed = self.spec.failsafe and not self.coord.connected
        self._zk_timed_out = self._zk_answered = False
        if not takeover:
            self._heartbeat()
        was_connected = self.cluster is not None and self.cluster.connected
        budget = self._zk_budget()
        if budget is not None and budget <= 0:
            self._zk_failed = True  # ha_local.py rule 44: no time left for ZooKeeper before the poll
        if not zk_read(self._zk_stalled or self._zk_failed, self.spec.failsafe, self.coord.connected):
            # ha_local.py rule 44: no snapshot attempt (kazoo would queue it for its whole timeout;
            # a follower that has not noticed a lost quorum would answer it and say nothing about
            # writes): the loop stays short enough for the peer poll to extend the lease before it
            # runs out, and a stalled holder re-asserts through ZooKeeper only after the poll; a
            # heartbeat that just failed skips the snapshot too (its `failed` counts as stalled)
            self.cluster = Cluster({}, {}, {}, False, connected=False)
        else:
            cached = snapshot_cached(self._zk_suspect, any(rt.held is not None for rt in self.roles.values()))  # rule 45
            self.cluster = self.coord.snapshot(self.roles, cached=cached,
                                               timeout=None if budget is None else min(2 * t.request_timeout_s, budget))
            self._zk_failed = self._zk_failed or not self.cluster.connected
            self._zk_timed_out = self._zk_timed_out or not self.cluster.connected
            self._zk_answered = self._zk_answered or (self.cluster.connected and not cached)
        if self.cluster.connected:
            self.last_leases = dict(self.cluster.leases)
            if self._ever_connected and not was_connected:
                self.reconnected_at = self.clock.now()  # ha.py rule 25
            self._ever_connected = True
        self._note_config_mismatch()
        self._note_drift()
        self._exercise()
        self._give_back_stale()
        polls = self._failsafe_poll()
        now = self.clock.now()
        with self.acq_lock:
            self.promises = {r: p for r, p in self.promises.items() if now < p.until}
            promises = dict(self.promises)
        with self.lock:
            fences = {r: dict(f) for r, f in self.fences.items()}
        if self.cluster.connected:  # without a snapshot nobody's health is known: the clocks start again
            self.healthy_since = track_healthy(self.healthy_since, self.cluster.members, self.me, now)
        else:
            self.healthy_since = {}
        local = Local(self.node.name, now, self.me,
                      {n: r.held for n, r in self.roles.items() if r.held is not None}, time.time(), polls, promises,
                      fences=fences, reconnected_at=self.reconnected_at, healthy_since=self.healthy_since,
                      held_since={n: r.acquired_at for n, r in self.roles.items()
                                  if r.held is not None and r.acquired_at is not None})
        verdicts = decide(self.spec, self.cluster, local)
        next_at = t0 + t.loop_s
        for v in verdicts:
            shown = self.verdict_log.line(v, self.clock.now())
            if shown is not None:
                log.info("%s %s", self.node.name, shown)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s", self.node.name, v.line())
            rt = self.roles[v.role]
            last = rt.last_verdict
            step = probe_step(v.probe_at, last and last.probe_at, last is not None, rt.held is not None, self.clock.now())
            if step.unprepare:
                self._unprepare(rt)  # the lease moved: a probe sent before may have met its holder
            if step.prepare:
                self._prepare(rt)
            if step.wake_at is not None:
                next_at = min(next_at, step.wake_at)
            self.act(v)
            rt.last_verdict = v
            if v.wake_at is not None:
                next_at = min(next_at, max(v.wake_at, self.clock.now() + 0.005))
            if rt.held is not None:
                next_at = min(next_at, rt.held.until)
                due = rt.renewed_at + t.renew_s if rt.renewed_at is not None else None
                if due is not None and due > self.clock.now():  # wake for the next renewal (timing.renew_s);
                    next_at = min(next_at, due)  # one that failed is tried again a loop later
            self._cut_off_drain(rt, v)
        stalled, holding = self._zk_stalled, any(rt.held is not None for rt in self.roles.values())
        self._zk_stalled = zk_stalled(failsafe=self.spec.failsafe, acked=self._zk_acked, failed=self._zk_failed)
        if holding and self._zk_stalled and not stalled:
            next_at = self.clock.now()  # rule 44: just stalled, poll the peers at once (the deadline is near)
            log.warning("%s: zookeeper request failed or timed out: failsafe, polling the peers first "
                        "until a renewal is acknowledged", self.node.name)
        elif holding and stalled and not self._zk_stalled and self._zk_acked:
            log.warning("%s: zookeeper acknowledged our write again", self.node.name)
        if takeover:
            self._heartbeat()
        self._zk_suspect = zk_suspect(self._zk_suspect, failed=self._zk_timed_out or self._zk_failed,
                                      answered=self._zk_answered or self._zk_acked)
        self._trim_history()
        self.loop_count += 1
        c = self.cluster
        self.metrics.loop(self.clock.now() - t0, self.roles, self.me, c.maintenance if c is not None and c.connected else None)
        return next_at

    def _heartbeat(self) -> None:
        """Publish our member znode when the pacer says so (coord/heartbeat.py); a failed write
        is tried again next loop."""
        me = self.me
        if me is None:  # no health verdict yet: nothing to publish
            return
        if self.spec.failsafe and self._zk_stalled:
            return  # ha_local.py rule 44: a write that times out would delay the poll
        now, session = self.clock.now(), self.coord.session_id
        if not self.pacer.due(me, now, session):
            return
        if self._renewal_soon(now) and self.pacer.rides_renewal(me, now, session):
            return  # a periodic refresh while we hold a role: our next renewal carries it (_renew)
        budget = self._zk_budget()
        if budget is not None and budget <= 0:
            return  # rule 44: the snapshot's check counts this loop as failed
        if self.coord.heartbeat(me, None if budget is None else min(self.spec.timing.request_timeout_s, budget)):
            self.pacer.sent(me, now, session)
            self._zk_answered = True
        else:
            self._zk_timed_out = True  # rule 45
            if self.spec.failsafe:
                self._zk_failed = True  # rule 44: a heartbeat that failed or timed out stalls us too

    def _zk_budget(self) -> float | None:
        """ha_local.py rule 44: how long ZooKeeper may take before the failsafe poll must go out."""
        held = [rt.held.until for rt in self.roles.values() if rt.held is not None]
        return zk_budget(self.spec.failsafe, min(held) if held else None, self.clock.now(), self.spec.timing)

    def _renewal_soon(self, now: float) -> bool:
        """A role we hold renews within a loop or two (every renew_s): a heartbeat refresh may wait for it."""
        t = self.spec.timing
        return any(rt.held is not None and rt.renewed_at is not None and rt.renewed_at + t.renew_s <= now + 2 * t.loop_s
                   for rt in self.roles.values())

    def _trim_history(self) -> None:
        """Every TRIM_HISTORY_EVERY_S, keep only zookeeper.history_keep transitions, on a thread:
        a trim of a long history must not delay a renewal."""
        now = self.clock.now()
        if now < self._trim_at or (self._trimmer is not None and self._trimmer.is_alive()):
            return
        self._trim_at = now + TRIM_HISTORY_EVERY_S
        keep = self.spec.zookeeper.history_keep
        self._trimmer = threading.Thread(target=self.coord.trim_history, args=(keep,), name="history-trim", daemon=True)
        self._trimmer.start()

    def _note_config_mismatch(self) -> None:
        """A warning whenever the set of peers whose timing or roles differ from ours changes:
        mixed timing is safe (ha.py rule 11) but must never go unnoticed."""
        c = self.cluster
        if c is None or not c.connected:
            return
        now = mismatches({n: m.config for n, m in c.members.items() if n != self.node.name}, self.config)
        self.metrics.config_mismatch.set(len(now))
        if now == self._config_mismatch:
            return
        for n, parts in sorted(now.items()):
            log.warning("%s: config mismatch: %s", self.node.name,
                        describe(n, parts, c.members[n].config, self.config, "ours"))
        if not now:
            log.info("%s: every agent publishes our timing and roles digests", self.node.name)
        self._config_mismatch = now

    def _exercise(self) -> None:
        """Routine switchover and back of roles with `exercise:` (exercise.py), with a report."""
        c = self.cluster
        if c is None or not c.connected:
            return
        wall = time.time()
        for name, rt in self.roles.items():
            ex = rt.role.placement.exercise
            if ex is None:
                continue
            st = self._exercises.get(name) or ExerciseState(ex.next_after(wall))
            lease = c.leases.get(name)
            holder = lease.holder if lease is not None else None
            quiet = not c.maintenance and c.requests.get(name) is None
            st, actions = advance(st, ex, name, self.node.name, holder, wall, quiet or st.phase != "idle")
            self._exercises[name] = st
            for kind, a in actions:
                try:
                    if kind == "request":
                        self.coord.put_request(name, "switchover", a["to"], f"exercise@{self.node.name}")
                    elif kind == "record":
                        self.coord.record(a.pop("event"), name, **a)
                    else:
                        (log.info if a["ok"] else log.warning)("%s: %s", self.node.name, a["text"])
                        self.notifier.alarm("exercise", a["text"], "OK" if a["ok"] else "CRIT")
                except Exception as err:  # noqa: BLE001 -- ZooKeeper hiccup: the next loop goes on
                    log.warning("%s: exercise of %s: %s failed: %s", self.node.name, name, kind, err)

    def _note_drift(self) -> None:
        """The tier peers whose mail configuration (check: config_digest) differs from ours: a
        metric for the alert rule, and a warning when that set changes (drift.py)."""
        c, me = self.cluster, self.me
        if c is None or not c.connected or me is None:
            return
        mine = digests_of(me.health)  # once, not once per peer (every loop)
        now = {} if mine is None else {
            n: items for n, m in c.members.items() if n != self.node.name and m.tier == self.node.tier
            and (theirs := digests_of(m.health)) is not None and (items := differing(mine, theirs))}
        self.metrics.config_drift.set(len(now))
        if now == self._drift:
            return
        for n, items in sorted(now.items()):
            log.warning("%s: mail config drift: %s differs from us: %s", self.node.name, n, ", ".join(items[:8]))
        if self._drift and not now:
            log.info("%s: mail configuration equal on every node of tier %s", self.node.name, self.node.tier)
        self._drift = now

    # ------------------------------------------------------------------ acting

    def act(self, v: Verdict) -> None:
        rt = self.roles[v.role]
        if rt.start_failed:
            rt.start_failed = False
            why, rt.fail_reason = rt.fail_reason or "resource start failed", None
            self.health.note_failure(rt.role.name)
            if rt.held is not None:
                self._release(rt, None, why)
                return
        if v.action == Action.ACQUIRE:
            self._acquire(rt)
        elif v.action == Action.RENEW:
            if v.extend_to is not None:
                self._extend(rt, v.extend_to)
            # ha_local.py rule 44: a stalled holder writes every loop, after the poll (CAS on the
            # version we last knew); otherwise a due renewal unless the poll extended us
            if reassert(self._zk_stalled, v.extend_to is not None, self._renew_due(rt)):
                self._renew(rt)
        elif v.action == Action.RELEASE:
            self._release(rt, v.handoff_to, v.reason)
        elif v.action == Action.DEMOTE:
            self._demote(rt, v.reason)
        elif v.action == Action.FENCE:
            self._fence(rt, v.fence)
        elif rt.running and rt.held is None:
            self._stop_resources(rt, "not holder", block=False)  # leftovers from a failed start

    def _prepare(self, rt: RoleRuntime) -> None:
        """The previous holder must be down by now (verdict.probe_at): let resources run their
        pre-start checks (the VIP's duplicate-address probe). Each prepare() returns at once."""
        if rt.running or rt.starting():
            return
        self._each_resource(rt, "prepare", lambda r: r.prepare())  # a failure: start() does the check itself then

    def _unprepare(self, rt: RoleRuntime) -> None:
        self._each_resource(rt, "unprepare", lambda r: r.unprepare())

    def _each_resource(self, rt: RoleRuntime, what: str, call: Callable[[Resource], None]) -> None:
        """Call a Resource hook (`what`, for the log) on every resource of the role; an exception is logged."""
        for r in rt.resources:
            try:
                call(r)
            except Exception:
                log.exception("%s %s: resource %s %s raised", self.node.name, rt.role.name, r.name, what)

    def _start_standby(self) -> None:
        """Start the resources that run on holder and standby alike (`run_on_standby`), in a
        thread: the loop must not wait for an MTA to come up before its first heartbeat."""
        todo = [(rt, r) for rt in self.roles.values() for r in rt.resources if r.standby_running]
        if not todo:
            return

        def run() -> None:
            for rt, r in todo:
                with rt.res_lock:  # never beside a starter thread's start() of the same resource
                    try:
                        rc = r.start()
                    except Exception:
                        log.exception("%s %s: standby resource %s start raised", self.node.name, rt.role.name, r.name)
                        continue
                if rc != OCF.SUCCESS:
                    log.error("%s %s: standby resource %s failed to start: %s", self.node.name, rt.role.name, r.name, rc.name)
                else:
                    log.info("%s %s: standby resource %s running", self.node.name, rt.role.name, r.name)

        threading.Thread(target=run, name="standby-start", daemon=True).start()

    def _acquire(self, rt: RoleRuntime) -> None:
        seen = self.cluster.leases.get(rt.role.name) if self.cluster else None
        if seen is None:
            return
        with self.acq_lock:  # a failsafe promise given meanwhile (ha.py rule 14) stops us here
            promise = self.promises.get(rt.role.name)
            if promise is not None and self.clock.now() < promise.until:
                log.info("%s %s: not acquiring: promised %s not to before %.3fs from now", self.node.name,
                         rt.role.name, promise.holder, promise.until - self.clock.now())
                return
            got = self.coord.acquire(rt.role.name, seen)
            if isinstance(got, Unreachable):
                self._zk_timed_out = True  # ha_local.py rule 45: the next snapshot from the server
            else:
                self._zk_answered = True
            if not isinstance(got, Acquired):
                return  # Lost (changed under us, or another writer won) or Unreachable: next loop
            term, version, t_send = got.term, got.version, got.t_send
            with self.lock:
                rt.held = Held(term, 0, t_send + self.spec.timing.holder_validity_s, version)
                rt.renewed_at = t_send
                rt.acquired_at = t_send
            self._guard_wake.set()
        self.claims.write("acquired", rt.role.name, term=term, until=rt.held.until)
        log.info("%s %s: acquired lease term %d, starting %d resources", self.node.name, rt.role.name, term, len(rt.resources))
        self._start_async(rt)  # first: history, metrics and notices must not delay the VIP
        self.coord.record("acquired", rt.role.name, term=term)
        self.metrics.transition(rt.role.name, "acquired")
        self.notifier.transition(rt.role.name, "acquired", self.node.name, term=term)
        # a requested switchover/failover to us is now done
        req = self.cluster.requests.get(rt.role.name) if self.cluster else None
        if req is not None and req.to in (None, self.node.name):
            self.coord.clear_request(rt.role.name)

    def _renew_due(self, rt: RoleRuntime) -> bool:
        """Not due while the last acknowledged renewal still leaves room for a failed one and a retry."""
        return rt.renewed_at is None or self.clock.now() >= rt.renewed_at + self.spec.timing.renew_s - RENEW_EARLY_S

    def _renew(self, rt: RoleRuntime, again: bool = True) -> None:
        """CAS-renew a held lease. An Adopted answer (a renewal of ours that timed out landed after
        all: a ZooKeeper stall ended) extends nothing, so the renewal is sent again at once on the
        version it left, instead of a loop later: that loop is what timing.stall_s budgets."""
        held = rt.held
        if held is None:
            return
        if self.clock.now() >= held.until:
            # the verdict is older than the deadline (we were frozen or slow since deciding):
            # a renewal now would act past the deadline; demote first, compete again later
            self._demote(rt, f"lease expired {self.clock.now() - held.until:.3f}s ago (no acknowledged renewal)")
            return
        budget = self._zk_budget()  # ha_local.py rule 44: a failsafe holder's write leaves time to poll
        if budget is not None and budget <= 0:
            self._zk_failed = True  # no time for a write and a poll after it: poll first (next loop, at once)
            return
        timeout = None if budget is None else min(self.spec.timing.request_timeout_s, budget)
        # a due heartbeat refresh goes in the same transaction (coord/heartbeat.py rides_renewal)
        me, ride = self.me, False
        if me is not None:
            now, session = self.clock.now(), self.coord.session_id
            ride = self.pacer.due(me, now, session) and self.pacer.rides_renewal(me, now, session)
        if ride and me is not None:
            res = self.coord.renew(rt.role.name, held.term, held.seq + 1, held.version, member=me, timeout=timeout)
            if isinstance(res, Renewed) and self.coord.heartbeat_carried:
                self.pacer.sent(me, now, session)
        else:
            res = self.coord.renew(rt.role.name, held.term, held.seq + 1, held.version, timeout=timeout)
        if isinstance(res, Unreachable):
            self._zk_failed = True  # failsafe: poll the peers first until a write lands (rule 44)
        elif isinstance(res, (Renewed, Adopted)):
            self._zk_acked = True
        else:
            self._zk_answered = True  # Lost: refused, but answered (rule 45)
        late, adopted = "", False
        landed: int | None = None  # the version our write left in the znode, if it landed
        with self.lock:
            demoted = rt.held is None or rt.held.term != held.term
            match res:
                case Unreachable():
                    return
                case Lost():
                    if demoted:
                        return
                case Adopted(version=version):  # an earlier renewal of ours landed: no extension
                    if not demoted:
                        rt.held = held._replace(seq=held.seq + 1, version=version)
                        adopted = True
                    else:
                        landed, late = version, "the guard demoted us meanwhile"
                case Renewed(version=version, t_send=t_send):
                    until = t_send + self.spec.timing.holder_validity_s
                    if demoted:
                        landed, late = version, "the guard demoted us meanwhile"
                    elif self.clock.now() >= until:  # our deadline (<= until) has passed too: we were frozen or slow
                        landed, late = version, f"acknowledged {self.clock.now() - until:.3f}s after its own deadline"
                    else:
                        rt.held = Held(held.term, held.seq + 1, max(held.until, until), version)
                        rt.renewed_at = t_send
                        rt.failsafe_until = None  # renewed through ZooKeeper again
        if adopted:
            if again:  # a stall just ended: renew on the adopted version now, not a loop later
                self._renew(rt, again=False)
            return
        if late:
            # the znode now names us at a fresh version, though we hold nothing (or must not any
            # more): every candidate would wait a whole lease from it. Give it back at once.
            if rt.held is not None and rt.held.term == held.term:
                self._demote(rt, f"lease expired {self.clock.now() - held.until:.3f}s ago (renewal {late})")
            assert landed is not None  # `late` is only set for a write that landed
            self._give_back(rt, held.term, landed, f"renewal {late}")
            return
        if isinstance(res, Lost):
            self._demote(rt, "lease overwritten by another writer")
            return
        renewed = rt.held
        if renewed is None:  # the guard demoted us since the lock was let go: nothing to extend
            return
        self.claims.write("renewed", rt.role.name, term=held.term, until=renewed.until)
        for r in rt.resources:
            r.lease_extended(renewed.until)
        if not rt.running:
            # resources stopped by the guard at a near miss: start them again
            self._start_async(rt)

    # ------------------------------------------------------------------ failsafe mode

    def _failsafe_poll(self) -> dict[str, FailsafePoll]:
        """ha.py rule 13: while ZooKeeper is unreachable, ask every tier peer about each role we hold."""
        if not self.spec.failsafe or self.cluster is None or self.cluster.connected:
            return {}
        now = self.clock.now()
        held = {n: rt.held for n, rt in self.roles.items() if rt.held is not None and now < rt.held.until}
        if not held:
            return {}
        from hacluster.http.api import load_token
        from hacluster.failsafe import Poller, Question

        if self.poller is None:
            self.poller = Poller(self.spec, self.node.name, load_token(self))
        self.poller.token = load_token(self)  # re-read: a rotated token takes effect at once
        # wait for the answers as long as our deadline allows (at least request_timeout_s): an
        # answer computed after the send time is as good late as early, and on a loaded machine
        # the peers' replies took longer than 0.15 s three polls running (bench zk-outage)
        left = min(h.until for h in held.values()) - now - self.spec.timing.loop_s / 4
        return self.poller.poll({n: Question(n, self.node.name, h.term, self.spec.timing.lease_s)
                                 for n, h in held.items()}, timeout=left)

    def _extend(self, rt: RoleRuntime, until: float) -> None:
        """ha.py rule 13: every tier peer confirmed and promised; extend our deadline without
        ZooKeeper. Never a deadline that has passed: the guard may have demoted us meanwhile."""
        with self.lock:
            held = rt.held
            if held is None or self.clock.now() >= held.until:
                return
            renewed = held._replace(until=until) if until > held.until else held
            rt.held = renewed
            rt.failsafe_until = renewed.until
        self.claims.write("renewed", rt.role.name, term=renewed.term, until=renewed.until, failsafe=True)
        for r in rt.resources:
            r.lease_extended(renewed.until)
        if not rt.running:
            self._start_async(rt)

    def failsafe_answer(self, q: Question) -> dict[str, Any]:
        """POST /failsafe from a holder: answer from our own state, and record the promise before
        the reply leaves, under the lock our acquisitions take (so none is in flight)."""
        from hacluster.failsafe import Reply, answer, misdirected, settled

        rt = self.roles.get(q.role)
        now = self.clock.now()
        wrong = misdirected(q, self.spec, self.node.name)
        if wrong is not None or rt is None:
            return Reply(False, wrong or "not our role").body(self.node.name, q, now)
        # a read round trip, not kazoo's state (Coordinator.reachable); half a request timeout,
        # so the reply still reaches the holder within its poll's request_timeout_s
        # (no probe once our own last snapshot failed: unreachable, and the reply is not delayed)
        # and for two leases after our own reconnect we still answer as if it were down
        # (failsafe.settled: the holder may not be back yet)
        connected = settled(self.spec.failsafe and self.cluster is not None and self.cluster.connected
                            and self.coord.reachable(self.spec.timing.request_timeout_s / 2),
                            self.reconnected_at, self.clock.now(), self.spec.timing.lease_s)
        if not self.acq_lock.acquire(timeout=0.05):
            reply = Reply(False, "busy acquiring")
        else:
            try:
                now = self.clock.now()
                reply = answer(q, enabled=self.spec.failsafe, connected=connected,
                               holding=rt.held is not None or rt.running or rt.starting(),
                               lease=self.last_leases.get(q.role), promise=self.promises.get(q.role),
                               own_lease_s=self.spec.timing.lease_s, now=now)
                if reply.promise is not None:
                    self.promises[q.role] = reply.promise
                    self.metrics.failsafe_promised(q.role, reply.promise.until)
                    self.claims.write("promised", q.role, holder=q.holder, term=q.term, until=reply.promise.until)
            finally:
                self.acq_lock.release()
        if self._failsafe_said.get(q.role) != reply.confirmed:
            self._failsafe_said[q.role] = reply.confirmed
            log.warning("%s %s: failsafe: %s %s (term %d): %s", self.node.name, q.role,
                        "confirmed to" if reply.confirmed else "refused", q.holder, q.term, reply.reason)
        return reply.body(self.node.name, q, now)

    # ------------------------------------------------------------------ host fencing

    def _fence(self, rt: RoleRuntime, nodes: tuple[str, ...]) -> None:
        """ha.py rules 15/17/19: fence each node (off, then status confirms off) in a thread of its
        own -- an agent may take tens of seconds -- recording `running` now and the result when it
        comes; the loop is woken then, and decides (ACQUIRE only on `off` for this very term)."""
        lease = self.cluster.leases.get(rt.role.name) if self.cluster else None
        if lease is None:
            return
        role, term = rt.role.name, lease.term
        for node in nodes:
            with self.lock:
                rec = self.fences.get(role, {}).get(node)
                if rec is not None and rec.state == "running":
                    continue
                self.fences.setdefault(role, {})[node] = Fenced(node, term, "running", self.clock.now())
            log.warning("%s %s: fencing %s (silent holder, lease term %d) before the takeover", self.node.name, role, node, term)
            self.claims.write("fencing", role, target=node, term=term)
            threading.Thread(target=self._fence_one, args=(role, node, term), name=f"fence-{node}", daemon=True).start()

    def _fence_one(self, role: str, node: str, term: int) -> None:
        from hacluster.fence import FenceOutcome, fence_off, load_secrets

        fs = self.spec.fence
        dev = fs.devices.get(node) if fs is not None else None
        t0 = self.clock.now()
        try:
            if dev is None or fs is None:
                raise UserError(f"no fence device for {node} in {self.spec.source}")
            out = fence_off(dev, load_secrets(fs.secrets_file).get(node, {}), fs.timeout_s)
        except UserError as err:
            out = FenceOutcome(node, False, self.clock.now() - t0, str(err), ())
        except Exception as err:  # a bug here must still end in a record, or the role waits forever
            log.exception("%s %s: fencing %s raised", self.node.name, role, node)
            out = FenceOutcome(node, False, self.clock.now() - t0, f"{type(err).__name__}: {err}", ())
        with self.lock:
            self.fences.setdefault(role, {})[node] = Fenced(node, term, "off" if out.ok else "failed", self.clock.now(), out.detail)
        self.claims.write("fenced", role, target=node, term=term, ok=out.ok, seconds=round(out.seconds, 3), detail=out.detail)
        self.coord.record("fenced" if out.ok else "fence-failed", role, node_fenced=node, term=term,
                          seconds=round(out.seconds, 3), detail=out.detail[:300])
        self.metrics.fenced(role, node, out.ok, out.seconds)
        if out.ok:
            log.warning("%s %s: fenced %s in %.2fs: %s", self.node.name, role, node, out.seconds, out.detail)
            self.notifier.alarm("fence", f"{self.node.name} fenced {node} (role {role}, term {term}) in "
                                f"{out.seconds:.2f}s before taking over: {out.detail}", "WARN")
        else:
            log.critical("%s %s: FENCE OF %s FAILED after %.2fs: %s; no takeover until a fence succeeds",
                         self.node.name, role, node, out.seconds, out.detail)
            self.notifier.alarm("fence", f"{self.node.name} could not fence {node} (role {role}, term {term}): "
                                f"{out.detail}; the role is NOT taken over until a fence succeeds", "CRIT")
        self.wake.set()
    def _cut_off_drain(self, rt: RoleRuntime, v: Verdict) -> None:
        """graceful.py rule 22: a holder cut off from ZooKeeper (no failsafe extension) refuses new
        SMTP sessions until a renewal lands; the VIP itself still goes at the deadline (rule 1)."""
        d = rt.drain
        if d is None:
            return
        held = rt.held
        cut_off = (held is not None and rt.running and self.cluster is not None and not self.cluster.connected
                   and v.action == Action.RENEW and v.extend_to is None and not self._zk_acked)
        if cut_off and held is not None and not d.closed:
            step = drain_step(Cause.CUT_OFF, self.clock.now(), held.until, self.clock.now(), d.in_flight())
            if step.close and d.close():
                log.warning("%s %s: %s", self.node.name, rt.role.name, step.why)
        elif not cut_off and d.closed and held is not None:
            d.open()
            log.warning("%s %s: zookeeper answers again: new SMTP sessions accepted", self.node.name, rt.role.name)

    def _drain_for_release(self, rt: RoleRuntime) -> None:
        """graceful.py rule 21: before a release with time left, refuse new SMTP sessions on the VIPs
        and let the ones in flight finish (renewing meanwhile), up to drain_max_s; the guard still
        demotes at the deadline whatever this loop does."""
        d = rt.drain
        if d is None or not rt.running or rt.held is None or self.drain_max_s <= 0:
            return
        t = self.spec.timing
        started = self.clock.now()
        next_renew = started + t.loop_s
        while True:
            held = rt.held
            if held is None:
                return  # demoted meanwhile (deadline or lost lease): stopped already
            now = self.clock.now()
            step = drain_step(Cause.RELEASE, now, held.until, started, d.in_flight(), self.drain_max_s, t.stop_timeout_s)
            if step.stop:
                if d.closed:
                    log.warning("%s %s: drained for %.3fs: %s", self.node.name, rt.role.name, now - started, step.why)
                return
            if not d.closed:
                if not d.close():
                    return  # nft failed: stop at once, as without the drain
                log.warning("%s %s: %s", self.node.name, rt.role.name, step.why)
            if now >= next_renew:
                if self._renew_due(rt):
                    self._renew(rt)
                next_renew = self.clock.now() + t.loop_s
            self.clock.sleep(0.02)

    def _release(self, rt: RoleRuntime, handoff_to: str | None, reason: str) -> None:
        self._drain_for_release(rt)
        held = rt.held
        self._stop_resources(rt, reason, block=True)  # waits for a start in flight: stopped before released
        with self.lock:
            rt.held = None
        if held is None:
            return
        self.claims.write("released", rt.role.name, term=held.term)
        if not self.coord.release(rt.role.name, held.term, held.version, handoff_to, reason):
            self.coord.record("released", rt.role.name, term=held.term, reason=reason, handoff_to=handoff_to)
        self.metrics.transition(rt.role.name, "released")
        self.notifier.transition(rt.role.name, "released", self.node.name, term=held.term, reason=reason)
        log.warning("%s %s: released term %d (%s)%s", self.node.name, rt.role.name, held.term, reason,
                    f", hand-off to {handoff_to}" if handoff_to else "")

    def _give_back(self, rt: RoleRuntime, term: int, version: int, why: str) -> None:
        """A write of ours landed when we no longer hold the role (a renewal acknowledged after
        our deadline or after the guard demoted us; a queued or unacknowledged write applied
        after an outage): the znode names us at a fresh version, so every candidate would wait a
        whole lease from it. Release it like `_release` does -- resources stopped first (blocking),
        then a CAS on exactly the version that write left: if anybody wrote since (a new holder),
        the CAS fails and nothing changes, so this can never clobber another holder's lease."""
        self._stop_resources(rt, why, block=True)
        with self.lock:
            if rt.held is not None:  # only this loop acquires; never give back a lease we hold
                return
        ok = self.coord.release(rt.role.name, term, version, None, f"late write given back: {why}")
        self.claims.write("gave-back", rt.role.name, term=term, version=version, reason=why, written=ok)
        if not ok:
            log.info("%s %s: lease term %d version %d names us but could not be given back (%s); "
                     "it changed meanwhile or ZooKeeper is unreachable", self.node.name, rt.role.name, term, version, why)
            return
        self.metrics.transition(rt.role.name, "released")
        log.warning("%s %s: late lease write given back: term %d version %d named us, but we hold nothing (%s); "
                    "released so a candidate takes over at once", self.node.name, rt.role.name, term, version, why)

    def _give_back_stale(self) -> None:
        """Give back a late write of ours that the snapshot shows (ha_local.py rule 41)."""
        c = self.cluster
        if c is None or not c.connected:
            return
        for name, rt in self.roles.items():
            lease = c.leases.get(name)
            wrote = lease is not None and self.coord.wrote_term(name, lease.term)
            why = give_back(lease, self.node.name, rt.held is not None, wrote, rt.expired)
            if lease is not None and why is not None:
                self._give_back(rt, lease.term, lease.version, why)

    def _demote(self, rt: RoleRuntime, reason: str) -> None:
        """Stop acting as holder at once: stop resources first, no ZooKeeper call before that."""
        with self.lock:
            held = rt.held
            rt.held = None
            if held is not None:
                rt.expired = (held.term, held.version)
        if held is not None:
            self.claims.write("demoted", rt.role.name, term=held.term, reason=reason)
        # never wait here for a start in flight: the starter sees the lease gone and stops them
        self._stop_resources(rt, reason, block=False)
        if held is not None:
            self.coord.record("demoted", rt.role.name, term=held.term, reason=reason)
            self.metrics.transition(rt.role.name, "demoted")
            self.notifier.transition(rt.role.name, "demoted", self.node.name, term=held.term, reason=reason)
            log.warning("%s %s: demoted from term %d (%s)", self.node.name, rt.role.name, held.term, reason)

    def _lease_valid(self, rt: RoleRuntime) -> bool:
        with self.lock:
            return rt.held is not None and self.clock.now() < rt.held.until

    def _monitor_loop(self) -> None:
        """Recurring resource monitors (resource_monitor.py) while we hold a role and it is up."""
        holding: dict[str, bool] = {}
        while not self.stop_event.wait(0.1):
            for name, rt in self.roles.items():
                up = rt.monitor is not None and rt.held is not None and rt.running and not rt.starting() \
                    and not rt.start_failed
                if up and not holding.get(name):
                    rt.monitor.reset()  # type: ignore[union-attr]
                holding[name] = up
                if up:
                    try:
                        rt.monitor.tick()  # type: ignore[union-attr]
                    except Exception:  # noqa: BLE001 -- a broken monitor must not end the monitoring
                        log.exception("%s: resource monitor failed", name)

    def _monitor_failed(self, rt: RoleRuntime, why: str) -> None:
        """A monitor says the role cannot be served here: the loop releases it (as a failed start)."""
        log.warning("%s %s: %s: handing the role over", self.node.name, rt.role.name, why)
        rt.fail_reason = why
        rt.start_failed = True
        self.wake.set()

    def _start_async(self, rt: RoleRuntime) -> None:
        """Start the role's resources in a thread of their own: a start may take longer than the
        holder's validity (an MTA), and the loop must keep renewing meanwhile."""
        if rt.starting():
            return

        def run() -> None:
            if not self._start_resources(rt):
                self._stop_resources(rt, "resource start failed", block=True)
                rt.start_failed = True
                self.wake.set()
            elif rt.running and not self._lease_valid(rt):
                # demoted just as we finished (its non-blocking stop found us still holding the lock)
                self._stop_resources(rt, "lease ran out while starting", block=True)

        rt.starter = threading.Thread(target=run, name=f"start-{rt.role.name}", daemon=True)
        rt.starter.start()

    def _start_resources(self, rt: RoleRuntime) -> bool:
        """Start in order while the lease is valid; False if a resource failed to start."""
        with rt.res_lock:
            rt.running = True
            for r in rt.resources:
                with self.lock:
                    held = rt.held if rt.held is not None and self.clock.now() < rt.held.until else None
                if held is None or (rt.resources and isinstance(rt.resources[0], RoleGuard) and r is not rt.resources[0]
                                    and rt.resources[0].monitor() != OCF.SUCCESS):
                    # the deadline passed, or the role's guard acted (it fenced what started so far):
                    # starting the MTA now would put it on a detached spool's mount point
                    self._stop_resources(rt, "lease ran out while starting")
                    return True  # not a resource failure: the loop demotes
                r.set_fencing_token(held.term)
                r.lease_extended(held.until)
                try:
                    rc = r.start()
                except Exception:
                    log.exception("%s %s: resource %s start raised", self.node.name, rt.role.name, r.name)
                    rc = OCF.ERR_GENERIC
                if rc != OCF.SUCCESS and (self.clock.now() >= held.until or not self._lease_valid(rt)):
                    # the lease it was started under ran out meanwhile (the VIP refuses to add an
                    # address past that deadline, even if a renewal has landed since): a lost
                    # lease, not a broken resource. Counted as a failure it kept this node out of
                    # the running for FAILURE_BACKOFF_S, and under load both stores at once -- the
                    # role unheld for 30 s (issue 19, bench false-failover)
                    log.warning("%s %s: resource %s did not start: the lease ran out meanwhile (%s)",
                                self.node.name, rt.role.name, r.name, rc.name)
                    self._stop_resources(rt, "lease ran out while starting")
                    return True  # not a resource failure: the loop demotes
                if rc != OCF.SUCCESS:
                    log.error("%s %s: resource %s failed to start: %s", self.node.name, rt.role.name, r.name, rc.name)
                    self.coord.record("resource-failed", rt.role.name, resource=r.name, rc=int(rc))
                    return False
            # the lease may have gone while the last resource started (demote could not stop it then)
            if not self._lease_valid(rt):
                self._stop_resources(rt, "lease ran out while starting")
            return True

    def _stop_resources(self, rt: RoleRuntime, reason: str, block: bool = True) -> None:
        """Stop in reverse order. With block=False, a start in flight is not waited for: the
        starter re-checks the lease after every resource and stops them itself. Resources that
        run on the standby too (`run_on_standby`) are left running."""
        if not rt.res_lock.acquire(blocking=block):
            return
        try:
            if not rt.running:
                return
            failed = False
            for r in reversed(rt.resources):
                if r.standby_running:
                    continue
                if isinstance(r, RoleGuard) and failed:
                    r.fire()  # something is still up: the guard kills and detaches it now
                    continue
                try:
                    rc = r.stop()
                except Exception:  # a broken resource must not keep the others running
                    log.exception("%s %s: resource %s stop raised", self.node.name, rt.role.name, r.name)
                    failed = True
                    continue
                if rc != OCF.SUCCESS:
                    failed = True
                    log.error("%s %s: resource %s failed to stop: %s", self.node.name, rt.role.name, r.name, rc.name)
            rt.running = False
            if rt.drain is not None and rt.drain.closed:
                rt.drain.open()  # the VIP is gone: the next holder (maybe us again) takes mail
        finally:
            rt.res_lock.release()

    # ------------------------------------------------------------------ the deadline

    def _enforce_deadlines(self) -> None:
        now = self.clock.now()
        for rt in self.roles.values():
            held = rt.held
            if held is not None and now >= held.until:
                self._demote(rt, f"lease expired {now - held.until:.3f}s ago (no acknowledged renewal)")

    def _guard_loop(self) -> None:
        """Stops resources at the deadline even if the loop is stuck in a slow call."""
        while not self.stop_event.is_set():
            with self.lock:
                untils = [rt.held.until for rt in self.roles.values() if rt.held is not None]
            if not untils:
                # nothing held: sleep until an acquisition wakes us (it polled every 0.1 s before:
                # a tenth of a standby's idle CPU, bench scale); the cap is a second look only
                self._guard_wake.wait(GUARD_IDLE_S)
                self._guard_wake.clear()
                continue
            # sleep to the earliest deadline; re-check often enough to see a renewal or another
            # role's lease long before its deadline (validity is >= 0.2 s in every profile)
            nxt = min(untils)
            delay = max(0.0, min(nxt - self.clock.now(), 0.1))
            if self.stop_event.wait(delay):
                return
            if untils and self.clock.now() >= nxt:
                self._enforce_deadlines()
                self.wake.set()

    # ------------------------------------------------------------------ shutdown

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.warning("%s: signal %d: releasing leases and leaving", self.node.name, signum)
        self.sd.stopping(f"{self.node.name}: signal {signum}: releasing leases and leaving")
        self.stop_event.set()
        self.wake.set()

    def shutdown(self) -> None:
        """SIGTERM: stop resources, release every lease at once, leave the membership."""
        self.sd.stopping(f"{self.node.name}: releasing leases and leaving")
        self.stop_event.set()
        for rt in self.roles.values():
            if rt.held is not None:
                self._release(rt, None, "agent stopping")
            else:
                self._stop_resources(rt, "agent stopping")
        if self.api is not None:
            self.api.stop()
        if self.poller is not None:
            self.poller.stop()
        self.health.stop()
        self.notifier.stop(timeout=2.0)
        self.coord.leave()
        self.coord.stop()

    # ------------------------------------------------------------------ views for API / CLI

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "node": self.node.name,
            "tier": self.node.tier,
            "zookeeper": "connected" if self.coord.connected else str(self.coord.state).lower(),
            "healthy": bool(self.me and self.me.healthy),
            "health": dict(self.me.health) if self.me else {},
            "reasons": list(self.me.reasons) if self.me else [],
            "maintenance": bool(self.cluster and self.cluster.maintenance),
            "config": self.config.to_json(),
            "config_mismatch": dict(self._config_mismatch),
            "roles": {
                n: {
                    "held": rt.held is not None,
                    "term": rt.held.term if rt.held else None,
                    "lease_remaining_s": round(rt.held.until - now, 3) if rt.held else None,
                    "lease_age_s": round(now - rt.renewed_at, 3) if rt.held and rt.renewed_at else None,
                    "verdict": rt.last_verdict.line() if rt.last_verdict else None,
                    "resources": [r.name for r in rt.resources],
                }
                for n, rt in self.roles.items()
            },
            "loops": self.loop_count,
            # host fencing (ha.py rules 15-19): our records, newest per role and node
            "fences": {r: {n: {"term": f.term, "state": f.state, "age_s": round(now - f.at, 3), "detail": f.detail}
                           for n, f in recs.items()} for r, recs in dict(self.fences).items()},
            "failsafe": {"enabled": self.spec.failsafe,
                         "promises": {r: {"holder": p.holder, "term": p.term, "remaining_s": round(p.until - now, 3)}
                                      for r, p in dict(self.promises).items() if now < p.until},
                         # roles we hold on the peers' confirmations, ZooKeeper unreachable (rule 13)
                         "extended": {n: {"term": rt.held.term, "remaining_s": round(rt.held.until - now, 3)}
                                      for n, rt in self.roles.items() if rt.held is not None and rt.on_failsafe(now)}},
        }


@click.command("agent")
@config_option()
@click.option("--node", required=True, help="This node's name in the spec.")
@click.option("--state-dir", type=click.Path(), default=None, envvar="HACLUSTER_STATE_DIR",
              help="Runtime directory: state, VIP records (default $HACLUSTER_STATE_DIR, else /run/hacluster/NODE).")
@click.option("--claims-log", type=click.Path(), default=None, help="Append holder claims as JSON lines (tests, benchmarks).")
@click.option("--api-port", type=int, default=None, help="Serve the REST API and /metrics on this port (default: spec api.port; 0 = off).")
@click.option("--api-bind", default=None, help="API bind address (default: spec api.bind or the node's address).")
@click.option("--smtp-drain-s", type=click.FloatRange(0, 60), default=DEFAULT_DRAIN_MAX_S, show_default=True,
              envvar="HACLUSTER_SMTP_DRAIN_S",
              help="Graceful demote: how long a release lets SMTP sessions on the VIP finish (0: stop at once).")
@click.option("--raise-priority", "raise_by", type=click.IntRange(0, priority.MAX_RAISE_BY),
              default=priority.DEFAULT_RAISE_BY, show_default=True, envvar="HACLUSTER_RAISE_PRIORITY",
              help="Lower the agent's nice value by this much at start (relative; never below "
                   f"{priority.FLOOR}, the VIP guard runs above), so renewals do not queue behind a busy "
                   "CPU; 0: off. Needs CAP_SYS_NICE (root has it).")
@click.option("--every-verdict", is_flag=True, envvar="HACLUSTER_EVERY_VERDICT",
              help="Log every loop's verdict (DEBUG), not only changes and one line per 10 s.")
def agent_cmd(config: Path, node: str, state_dir: str | None, claims_log: str | None,
              api_port: int | None, api_bind: str | None, smtp_drain_s: float, raise_by: int,
              every_verdict: bool = False) -> None:
    """Run the node agent in the foreground (systemd runs it as hacluster-agent.service)."""
    spec = load_spec(config)
    spec.node(node)
    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        configure_logging(logging.INFO, "%(asctime)s %(levelname)s %(message)s", "%(message)s")
    if every_verdict:
        log.setLevel(logging.DEBUG)  # the agent's own loggers, not kazoo's (its DEBUG would drown them)
    priority.apply(raise_by)  # before any thread starts: every later thread and the guard inherit it
    sd = SdNotify.from_environ()  # and out of the environment our children inherit
    if sd.watchdog_s:
        import faulthandler

        faulthandler.enable(all_threads=True)  # the watchdog's SIGABRT prints where every thread hangs
    port = spec.api.port if api_port is None else api_port
    sdir = Path(state_dir or default_state_dir(node))
    agent = Agent(spec, node, sdir, production_parts(spec, node, sdir, claims_log, sd),
                  api_port=port or None, api_bind=api_bind or spec.api.bind)
    agent.drain_max_s = smtp_drain_s
    raise click.exceptions.Exit(agent.run())
