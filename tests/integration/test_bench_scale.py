"""`hacluster bench scale` for real, small: 2 clusters of 2 agents on a real 3-server ZooKeeper
ensemble, holders killed in both and in a lone cluster; the JSON the issue names, ZooKeeper's own
counters against the capacity model (the full-size figures are in docs/scale.md)."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from hacluster_lab.bench import bench
from hacluster_lab.bench.scale_model import ensemble_load, profile_timing

ZK_PORT = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800")) + 100  # +100, +110, +120 (and +1, +2)

KEYS = {"clusters", "agents", "takeover_s", "takeover_s_single_cluster", "ratio_p50", "zk_writes_per_s",
        "zk_reads_per_s", "zk_outstanding_max", "agent_rss_mb", "agent_cpu_pct_idle", "dual_holder_events"}


def test_bench_scale_two_clusters_of_two() -> None:
    res = CliRunner().invoke(bench, ["scale", "--clusters", "2", "--nodes-per-cluster", "2", "--kills", "2",
                                     "--idle-s", "5", "--zk-port", str(ZK_PORT), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) - {"details"} == KEYS
    assert out["clusters"] == 2 and out["agents"] == 4
    assert out["dual_holder_events"] == 0
    for key in ("takeover_s", "takeover_s_single_cluster"):
        assert set(out[key]) == {"p50", "max"}
        assert 0 < out[key]["p50"] <= out[key]["max"] < 10, out[key]  # a lease of 2.05 s, not a timeout
    assert out["ratio_p50"] > 0
    assert set(out["agent_rss_mb"]) == {"p50", "max"} and 10 < out["agent_rss_mb"]["p50"] < 200
    assert set(out["agent_cpu_pct_idle"]) == {"p50", "max"} and 0 < out["agent_cpu_pct_idle"]["p50"] < 50
    assert out["zk_outstanding_max"] >= 0
    d = out["details"]
    # the same CPU split by what each agent did in the window: one holder per cluster
    holders, standbys = d["agent_cpu_pct_idle_holders"], d["agent_cpu_pct_idle_standbys"]
    assert 0 < holders["p50"] <= holders["max"] < 50 and 0 < standbys["p50"] <= standbys["max"] < 50, d
    assert max(holders["max"], standbys["max"]) == out["agent_cpu_pct_idle"]["max"]
    assert len(d["takeover_all_s"]) == 2 and len(d["takeover_single_cluster_all_s"]) == 2
    # the servers' own counters against the model: 2 x (1/heartbeat_s + 1/renew_s) transactions/s
    # (from the profile: 2 x (1/2 + 1/1.05) = 2.9 at lease 2.05 s, the holder's heartbeat riding its renewal)
    model = ensemble_load(2, 2, 1, profile_timing("default"))
    assert d["model"]["writes_per_s"] == round(model.writes_per_s, 2)
    assert d["model"]["reads_per_s"] == round(model.reads_per_s, 2)
    assert 2 < d["model"]["writes_per_s"] < 4  # 2.9: not the lease-1 s model's 7.7
    assert d["model"]["writes_error"] < 0.25, d
    assert d["model"]["reads_error"] < 0.25, d
    # one connection per agent: 4 agents, plus the bench's own mntr probe on each server (and at
    # most one more: the outstanding-requests sampler's probe, if it was under way just then)
    assert 4 <= sum(d["zk_connections_by_server"].values()) - len(d["zk_connections_by_server"]) <= 5, d
