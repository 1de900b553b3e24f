"""Prometheus metrics of one agent, in a registry of its own (several agents may share a process
in tests). Served at /metrics by the agent API."""

from __future__ import annotations

from typing import Any, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import clock


class AgentMetrics:
    def __init__(self, node: str, roles: list[str]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.node = node
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
        for role in roles:
            self.role_held.labels(role).set(0)
            for ev in ("acquired", "released", "demoted"):
                self.transitions.labels(role, ev)

    def loop(self, seconds: float, roles: Mapping[str, Any], me: Any) -> None:
        self.loop_seconds.observe(seconds)
        now = clock.now()
        for name, rt in roles.items():
            held = rt.held
            self.role_held.labels(name).set(1 if held else 0)
            self.term.labels(name).set(held.term if held else 0)
            self.lease_remaining.labels(name).set(max(0.0, held.until - now) if held else 0)
            self.lease_age.labels(name).set(now - rt.renewed_at if held and rt.renewed_at else 0)
        if me is not None:
            self.healthy.set(1 if me.healthy and not me.demote else 0)
            for check, res in (me.health or {}).items():
                if isinstance(res, dict):
                    self.check_ok.labels(check).set(1 if res.get("ok") else 0)
                    if isinstance(res.get("latency_s"), (int, float)):
                        self.check_latency.labels(check).set(res["latency_s"])

    def transition(self, role: str, event: str) -> None:
        self.transitions.labels(role, event).inc()

    def render(self) -> bytes:
        """Ours plus the process-wide registry, where resources (VIP conflicts, replication
        lag) register their own counters."""
        from .spool.metrics import REGISTRY as SPOOL_REGISTRY

        return generate_latest(self.registry) + generate_latest(REGISTRY) + generate_latest(SPOOL_REGISTRY)
