"""Prometheus metrics of one agent, in a registry of its own (several agents may share a process
in tests). Served at /metrics by the agent API.

The queue, RAID and spool gauges are fed from the health checks' results as published in the
heartbeat (`Member.health`, see hacluster.agent.node_health), so /metrics, `hacluster status` and the
status page always show the same numbers. A check that could not read its subject (postqueue
failed, mdstat unreadable) leaves its gauges absent or NaN rather than showing stale values.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import __version__, clock


class AgentMetrics:
    def __init__(self, node: str, roles: list[str], cluster: str = "", tier: str = "",
                 zookeeper_connected: Callable[[], bool] | None = None, failsafe: bool = False) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._promised: dict[str, float] = {}  # role -> until (our clock) of our last failsafe promise
        self.node = node
        # identity, for a Prometheus without target labels and for joins (`* on(instance) group_left`)
        Gauge("hacluster_build_info", "Always 1; the agent's version", ["version"], registry=r).labels(__version__).set(1)
        Gauge("hacluster_node_info", "Always 1; this agent's cluster, tier and node", ["cluster", "tier", "node"],
              registry=r).labels(cluster, tier, node).set(1)
        # read at scrape time, not by the loop: the value must be right even while the loop is stuck
        self.zookeeper_connected = Gauge("hacluster_zookeeper_connected",
                                         "1 while the agent's ZooKeeper session is connected", registry=r)
        self.zookeeper_connected.set_function(lambda: 1.0 if zookeeper_connected and zookeeper_connected() else 0.0)
        self.maintenance = Gauge("hacluster_maintenance",
                                 "1 while the cluster is in maintenance mode (as last read from ZooKeeper)", registry=r)
        self.role_held = Gauge("hacluster_role_held", "1 while this node holds the role's lease", ["role"], registry=r)
        self.lease_age = Gauge("hacluster_lease_age_seconds", "Seconds since the last acknowledged renewal (sent)", ["role"], registry=r)
        self.lease_remaining = Gauge("hacluster_lease_remaining_seconds", "Seconds until the holder must stop", ["role"], registry=r)
        self.term = Gauge("hacluster_lease_term", "Fencing token of the lease we hold (0 if none)", ["role"], registry=r)
        self.loop_seconds = Histogram("hacluster_loop_duration_seconds", "Duration of one agent cycle", registry=r,
                                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.transitions = Counter("hacluster_transitions_total", "Role transitions of this node", ["role", "event"], registry=r)
        self.healthy = Gauge("hacluster_node_healthy", "1 if this node may hold roles", registry=r)
        self.check_ok = Gauge("hacluster_check_ok", "1 if the health check passes", ["check"], registry=r)
        self.check_latency = Gauge("hacluster_check_latency_seconds", "Latency of the last check run", ["check"], registry=r)
        self.queue_messages = Gauge("hacluster_queue_messages", "Messages in the MTA's queue (postqueue -j)", ["queue"], registry=r)
        self.queue_oldest = Gauge("hacluster_queue_oldest_message_age_seconds",
                                  "Age of the oldest queued message (0: empty; NaN: queue not readable)", registry=r)
        self.raid_degraded = Gauge("hacluster_raid_degraded_arrays",
                                   "Watched md arrays degraded, recovering, resyncing or reshaping", registry=r)
        self.raid_failed = Gauge("hacluster_raid_failed_arrays", "Watched md arrays failed, inactive or missing", registry=r)
        self.spool_free = Gauge("hacluster_spool_free_ratio", "Free space on the spool, 0..1 (for unprivileged users)", registry=r)
        self.spool_free_inodes = Gauge("hacluster_spool_free_inodes_ratio", "Free inodes on the spool, 0..1", registry=r)
        self.config_mismatch = Gauge("hacluster_config_mismatch_peers",
                                     "Peers whose timing or roles digest differs from ours, or who publish none", registry=r)
        # host fencing (ha.py rules 15-19): every fence this node ran, its duration, and whether
        # the last one of a node failed (a failed fence blocks the takeover: HaclusterFenceFailed)
        self.fences = Counter("hacluster_fence_total", "Fences of a silent holder run by this node",
                              ["role", "target", "result"], registry=r)
        self.fence_seconds = Gauge("hacluster_fence_duration_seconds", "Duration of the last fence (off + status confirmed)",
                                   ["role", "target"], registry=r)
        self.fence_failed = Gauge("hacluster_fence_failed", "1 while the last fence of the target failed (no takeover)",
                                  ["role", "target"], registry=r)
        # failsafe mode (docs/safety.md "Failsafe mode"): on in the spec; a role held on the tier
        # peers' confirmations while ZooKeeper is unreachable (ha.py rule 13); promises given (rule 14)
        Gauge("hacluster_failsafe_enabled", "1 if the spec turns failsafe mode on", registry=r).set(1 if failsafe else 0)
        self.failsafe_active = Gauge("hacluster_failsafe_active",
                                     "1 while this node holds the role on its tier peers' confirmations, "
                                     "ZooKeeper unreachable", ["role"], registry=r)
        self.failsafe_promises = Counter("hacluster_failsafe_promises_total",
                                         "Promises this node gave a holder not to acquire the role", ["role"], registry=r)
        self.failsafe_promise_remaining = Gauge("hacluster_failsafe_promise_remaining_seconds",
                                                "Seconds until this node's promise not to acquire the role ends",
                                                ["role"], registry=r)
        self.config_drift = Gauge("hacluster_config_drift_peers",
                                  "Tier peers whose mail configuration (check: config_digest) differs from ours", registry=r)
        self._queue_labels: frozenset[str] = frozenset()
        self._last: dict[tuple[Gauge, str | None], float] = {}  # what loop() set last (_set)
        for role in roles:
            self.role_held.labels(role).set(0)
            self.failsafe_active.labels(role).set(0)
            self.failsafe_promises.labels(role)
            self.failsafe_promise_remaining.labels(role).set_function(self._promise_left(role))
            for ev in ("acquired", "released", "demoted"):
                self.transitions.labels(role, ev)

    def _promise_left(self, role: str) -> Callable[[], float]:
        return lambda: max(0.0, self._promised.get(role, 0.0) - clock.now())

    def failsafe_promised(self, role: str, until: float) -> None:
        """A promise given (POST /failsafe answered yes) until `until` on our clock."""
        self.failsafe_promises.labels(role).inc()
        self._promised[role] = until

    def loop(self, seconds: float, roles: Mapping[str, Any], me: Any, maintenance: bool | None = None) -> None:
        """After each cycle; `maintenance` None (ZooKeeper did not answer) keeps the last value."""
        self.loop_seconds.observe(seconds)
        if maintenance is not None:
            self._set(self.maintenance, None, 1 if maintenance else 0)
        now = clock.now()
        for name, rt in roles.items():
            held = rt.held
            self._set(self.role_held, name, 1 if held else 0)
            self._set(self.term, name, held.term if held else 0)
            self._set(self.lease_remaining, name, max(0.0, held.until - now) if held else 0)
            self._set(self.lease_age, name, now - rt.renewed_at if held and rt.renewed_at else 0)
            on_failsafe = getattr(rt, "on_failsafe", None)
            self._set(self.failsafe_active, name, 1 if on_failsafe is not None and on_failsafe(now) else 0)
        if me is not None:
            self._set(self.healthy, None, 1 if me.healthy and not me.demote else 0)
            for check, res in (me.health or {}).items():
                if isinstance(res, dict):
                    self._set(self.check_ok, check, 1 if res.get("ok") else 0)
                    if isinstance(res.get("latency_s"), (int, float)):
                        self._set(self.check_latency, check, res["latency_s"])
            self.health_gauges(me.health or {})

    def _set(self, gauge: Gauge, label: str | None, value: float) -> None:
        """gauge[label] = value, unless the loop set that very value last time: most of them
        repeat every loop (5/s), and a labelled set costs a label lookup and a lock. Only for
        gauges nothing else sets or clears."""
        key = (gauge, label)
        if self._last.get(key, math.nan) == value:
            return
        self._last[key] = value
        (gauge if label is None else gauge.labels(label)).set(value)

    def health_gauges(self, health: Mapping[str, Any]) -> None:
        """Queue, RAID and spool gauges from the checks' result data (absent check: no series)."""
        q = _data(health, "queue")
        if q is not None:
            counts = q.get("counts")
            if isinstance(counts, dict):
                now = {k: v for k, v in counts.items() if isinstance(k, str) and _QUEUE_NAME.fullmatch(k)
                       and _number(v) is not None}
                names = POSTFIX_QUEUES | self._queue_labels | set(sorted(now)[:MAX_QUEUE_LABELS])
                if len(names) > MAX_QUEUE_LABELS:  # odd names came and went: start over from what is there now
                    self.queue_messages.clear()
                    names = POSTFIX_QUEUES | set(sorted(now)[:MAX_QUEUE_LABELS - len(POSTFIX_QUEUES)])
                for name in names:
                    self.queue_messages.labels(name).set(now.get(name, 0))
                self._queue_labels = names
                age = _number(q.get("oldest_age_s"))
                self.queue_oldest.set(age if age is not None else (0.0 if _number(q.get("total")) == 0 else math.nan))
            else:  # postqueue failed: no numbers rather than old ones
                self.queue_messages.clear()
                self._queue_labels = frozenset()
                self.queue_oldest.set(math.nan)
        raid = _data(health, "raid")
        if raid is not None:
            degraded, failed, missing = (raid.get(k) for k in ("degraded", "failed", "missing"))
            if isinstance(degraded, list) and isinstance(failed, list):
                self.raid_degraded.set(len(degraded))
                self.raid_failed.set(len(failed) + (len(missing) if isinstance(missing, list) else 0))
            else:  # mdstat unreadable
                self.raid_degraded.set(math.nan)
                self.raid_failed.set(math.nan)
        spool = _data(health, "spool")
        if spool is not None:
            for gauge, key in ((self.spool_free, "free_pct"), (self.spool_free_inodes, "free_inodes_pct")):
                pct = _number(spool.get(key))
                gauge.set(pct / 100.0 if pct is not None else math.nan)

    def fenced(self, role: str, node: str, ok: bool, seconds: float) -> None:
        self.fences.labels(role, node, "ok" if ok else "failed").inc()
        self.fence_seconds.labels(role, node).set(seconds)
        self.fence_failed.labels(role, node).set(0 if ok else 1)

    def transition(self, role: str, event: str) -> None:
        self.transitions.labels(role, event).inc()

    def render(self) -> bytes:
        """Ours plus the process-wide registry, where resources (VIP conflicts, replication
        lag) register their own counters."""
        from .spool.metrics import REGISTRY as SPOOL_REGISTRY

        return generate_latest(self.registry) + generate_latest(REGISTRY) + generate_latest(SPOOL_REGISTRY)


#: Postfix's queues, always exported once the queue check runs (an empty queue is 0, not absent)
POSTFIX_QUEUES = frozenset({"maildrop", "incoming", "active", "deferred", "hold"})
MAX_QUEUE_LABELS = 16  # a queue name is a label value: bound the series whatever the data says
_QUEUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _data(health: Mapping[str, Any], check: str) -> dict[str, Any] | None:
    res = health.get(check)
    data = res.get("data") if isinstance(res, dict) else None
    return data if isinstance(data, dict) else None
