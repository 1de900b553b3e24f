"""Replication metrics in a registry of their own (several replicators may share a process in
tests). The agent's /metrics should append `generate_latest(REGISTRY)` to its own output."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

REGISTRY = CollectorRegistry()

LAG_MESSAGES = Gauge("hacluster_replication_lag_messages",
                     "Messages in the holder's Maildir not yet acknowledged by the peer", ["spool", "peer"],
                     registry=REGISTRY)
LAG_SECONDS = Gauge("hacluster_replication_lag_seconds",
                    "Age of the oldest message not yet acknowledged by the peer (0 when in sync)",
                    ["spool", "peer"], registry=REGISTRY)
CONNECTED = Gauge("hacluster_replication_connected", "1 while the sender has a session with the peer",
                  ["spool", "peer"], registry=REGISTRY)
SENT = Counter("hacluster_replication_messages_total", "Messages stored on the peer (acknowledged)",
               ["spool", "peer"], registry=REGISTRY)
SENT_BYTES = Counter("hacluster_replication_bytes_total", "Message bytes stored on the peer",
                     ["spool", "peer"], registry=REGISTRY)
PULLED = Counter("hacluster_replication_pulled_total", "Messages copied from a peer into our Maildir",
                 ["spool", "peer"], registry=REGISTRY)
REJECTED = Counter("hacluster_replication_rejected_total", "Requests the receiver refused (stale token)",
                   ["spool"], registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
