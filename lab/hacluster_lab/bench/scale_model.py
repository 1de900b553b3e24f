"""Capacity model: what N mail clusters of K agents cost one ZooKeeper ensemble while idle.

Pure arithmetic from the timing profile, checked against `hacluster bench scale` (docs/scale.md).
Idle means nothing changes: no failover, no request, no health verdict flipping. Then

* every agent rewrites its member znode (the heartbeat) every `heartbeat_s` (never more often
  than its loop: the loop is what writes it);
* the holder of each role renews its lease every `renew_s`;

The holder's heartbeat rides its renewal (one multi changes the lease and its member znode), so a
cluster of K agents with R roles on R holders commits `(K - R) / heartbeat + R / renew_s`
transactions a second and changes `K / heartbeat + R / renew_s` znodes. Every agent keeps a watch
on every member znode and every lease of its cluster (coord/watchcache.py): each change fires K
watches, and each agent re-reads the znode once, so the cluster's reads are K times its changes. Requests, maintenance and constraints are watched too but do not change while idle.
Session pings, watch notifications and the servers' own traffic are left out: pings are not reads
(ZooKeeper counts them apart) and notifications are not requests.

The ceiling is ZooKeeper's published throughput of a saturated 3-server ensemble (Hunt et al.,
"ZooKeeper: wait-free coordination for Internet-scale systems", USENIX ATC 2010, table 1):
21,000 writes/s with 0 % reads, 87,000 reads/s with 100 % reads, on 2010 hardware with a
dedicated transaction-log disk. A deployment should stay well below it (`UTILISATION_LIMIT`),
since failovers, restarts and session storms come on top of the idle load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hacluster.timing import PROFILES, Timing

#: Hunt et al. 2010, table 1: 3 servers, saturated, 1 KB requests
PUBLISHED_WRITES_PER_S = 21_000.0
PUBLISHED_READS_PER_S = 87_000.0
#: the share of the published ceiling an idle fleet may use: the rest is headroom for the bursts
#: (every agent of a cluster re-reading everything after a reconnect, a rolling restart's sessions)
UTILISATION_LIMIT = 0.25


@dataclass(frozen=True)
class Load:
    """ZooKeeper requests per second (writes: committed transactions; reads: getData/getChildren/exists)."""

    writes_per_s: float
    reads_per_s: float

    def __add__(self, other: "Load") -> "Load":
        return Load(self.writes_per_s + other.writes_per_s, self.reads_per_s + other.reads_per_s)

    def scaled(self, factor: float) -> "Load":
        return Load(self.writes_per_s * factor, self.reads_per_s * factor)


def heartbeat_period_s(t: Timing) -> float:
    """How often an idle agent rewrites its heartbeat: heartbeat_s, but at most once a loop."""
    return max(t.heartbeat_s, t.loop_s)


def cluster_load(nodes: int, roles: int, t: Timing) -> Load:
    """One idle cluster of `nodes` agents and `roles` held roles."""
    if nodes < 1 or roles < 0:
        raise ValueError(f"a cluster needs >= 1 node and >= 0 roles, got nodes={nodes}, roles={roles}")
    holders = min(roles, nodes)  # one role per holder: its heartbeat rides its renewal multi
    changes = nodes / heartbeat_period_s(t) + roles / t.renew_s  # znodes changed: what the watches fire on
    writes = (nodes - holders) / heartbeat_period_s(t) + roles / t.renew_s  # transactions
    return Load(writes, nodes * changes)


def ensemble_load(clusters: int, nodes: int, roles: int, t: Timing) -> Load:
    """`clusters` identical idle clusters on one ensemble."""
    if clusters < 0:
        raise ValueError(f"clusters must be >= 0, got {clusters}")
    return cluster_load(nodes, roles, t).scaled(clusters)


def utilisation(load: Load) -> float:
    """The larger share of the published ceilings (writes and reads compete for the same servers:
    their shares add up, as in the paper's mixed workloads)."""
    return load.writes_per_s / PUBLISHED_WRITES_PER_S + load.reads_per_s / PUBLISHED_READS_PER_S


def max_clusters(nodes: int, roles: int, t: Timing, limit: float = UTILISATION_LIMIT) -> int:
    """The most identical clusters one 3-server ensemble carries at `limit` of the ceiling."""
    per = utilisation(cluster_load(nodes, roles, t))
    return math.floor(limit / per) if per > 0 else 0


def relative_error(model: float, measured: float) -> float:
    """|model - measured| / measured (inf when nothing was measured but something predicted)."""
    if measured == 0:
        return 0.0 if model == 0 else math.inf
    return abs(model - measured) / measured


def profile_timing(name: str, heartbeat_s: float | None = None) -> Timing:
    """A named timing profile, optionally with another heartbeat period."""
    t = PROFILES[name]
    return t.replace(heartbeat_s=heartbeat_s) if heartbeat_s is not None else t
