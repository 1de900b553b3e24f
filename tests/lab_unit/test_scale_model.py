"""The capacity model of `bench scale` (lab/hacluster_lab/bench/scale_model.py, docs/scale.md) and the
bench's reading of ZooKeeper's `mntr` counters."""

from __future__ import annotations

import math

import pytest

from hacluster_lab.bench.scale import namespace_reads
from hacluster_lab.bench.scale_model import PUBLISHED_READS_PER_S, PUBLISHED_WRITES_PER_S, Load, cluster_load, ensemble_load, heartbeat_period_s, max_clusters, relative_error, utilisation
from hacluster.timing import PROFILES

DEFAULT = PROFILES["default"]  # heartbeat 2 s, renew_s 1.05 s


def test_an_idle_cluster_writes_heartbeats_and_renewals_and_every_agent_rereads_each() -> None:
    load = cluster_load(4, 1, DEFAULT)
    # the holder's heartbeat rides its renewal multi: 3 heartbeats + 1 renewal (2.452 transactions)
    assert load.writes_per_s == pytest.approx(3 / 2.0 + 1 / 1.05)
    # ... but all 4 member znodes and the lease change, and each change fires 4 watches
    assert load.reads_per_s == pytest.approx(4 * (4 / 2.0 + 1 / 1.05))
    two_roles = cluster_load(4, 2, DEFAULT)  # on two holders: one more renewal, one heartbeat fewer
    assert two_roles.writes_per_s - load.writes_per_s == pytest.approx(1 / 1.05 - 1 / 2.0)
    assert cluster_load(1, 3, DEFAULT).writes_per_s == pytest.approx(3 / 1.05)  # never fewer than 0 heartbeats


def test_the_heartbeat_is_never_written_more_often_than_the_loop_runs() -> None:
    t = DEFAULT.replace(heartbeat_s=0.05)  # shorter than loop_s 0.2: every loop
    assert heartbeat_period_s(t) == 0.2
    assert cluster_load(3, 0, t).writes_per_s == pytest.approx(3 / 0.2)  # no holder: all three
    assert heartbeat_period_s(DEFAULT.replace(heartbeat_s=10.0)) == 10.0


def test_clusters_add_up_linearly() -> None:
    one = cluster_load(4, 1, DEFAULT)
    many = ensemble_load(25, 4, 1, DEFAULT)
    assert many.writes_per_s == pytest.approx(25 * one.writes_per_s)
    assert many.reads_per_s == pytest.approx(25 * one.reads_per_s)
    assert ensemble_load(0, 4, 1, DEFAULT) == Load(0.0, 0.0)
    assert one + one == one.scaled(2)


def test_a_thousand_default_clusters_of_four_against_the_published_ceiling() -> None:
    load = ensemble_load(1000, 4, 1, DEFAULT)
    assert load.writes_per_s == pytest.approx(2452.4, abs=0.1)
    assert load.reads_per_s == pytest.approx(11809.5, abs=0.1)
    assert utilisation(load) == pytest.approx(2452.38 / PUBLISHED_WRITES_PER_S + 11809.52 / PUBLISHED_READS_PER_S, rel=1e-4)
    assert max_clusters(4, 1, DEFAULT) == 990  # at a quarter of the ceiling
    assert max_clusters(4, 1, DEFAULT, limit=1.0) == 3960
    assert max_clusters(4, 1, DEFAULT.replace(lease_s=1.0, stall_s=0.0)) == 580  # the lease-1 s default
    # a longer heartbeat or the relaxed profile buys room; the fast profile costs it
    assert max_clusters(4, 1, DEFAULT.replace(heartbeat_s=10.0)) > 1900
    assert max_clusters(4, 1, PROFILES["relaxed"]) >= 1000
    assert max_clusters(4, 1, PROFILES["fast"]) < 250


def test_relative_error() -> None:
    assert relative_error(97.14, 96.6) == pytest.approx(0.0056, abs=1e-4)
    assert relative_error(0.0, 0.0) == 0.0
    assert math.isinf(relative_error(1.0, 0.0))


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="nodes=0"):
        cluster_load(0, 1, DEFAULT)
    with pytest.raises(ValueError, match="clusters must be >= 0"):
        ensemble_load(-1, 4, 1, DEFAULT)


MNTR = {
    "zk_server_state": "follower",
    "zk_cnt_readlatency": "137",
    "zk_cnt_scale_read_per_namespace": "101",
    "zk_sum_scale_read_per_namespace": "19596",
    "zk_cnt_single_read_per_namespace": "7",
    "zk_cnt_zookeeper_read_per_namespace": "3",  # ZooKeeper's own /zookeeper: not the clusters'
    "zk_cnt_scale_write_per_namespace": "25",
}


def test_reads_are_the_per_namespace_counts_without_zookeepers_own() -> None:
    assert namespace_reads(MNTR) == 108
    assert namespace_reads({}) == 0
