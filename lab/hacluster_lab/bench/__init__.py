"""`hacluster bench ...`: benchmarks report medians and, where a peer exists, ratios against it."""

from hacluster.cli import LazyGroup
import click


@click.group(
    cls=LazyGroup,
    lazy={
        "election": "hacluster_lab.bench.election:election_cmd",
        "failover": "hacluster_lab.bench.failover:failover_cmd",
        "false-failover": "hacluster_lab.bench.falsefailover:false_failover_cmd",
        "no-loss": "hacluster_lab.bench.noloss:noloss_cmd",
        "scale": "hacluster_lab.bench.scale:scale_cmd",
        "zk-outage": "hacluster_lab.bench.zkoutage:zkoutage_cmd",
        "mx": "hacluster.mx.bench:mx_bench_cmd",
    },
)
def bench() -> None:
    """Benchmarks (JSON with medians; ratios against keepalived where it applies).

    They build their own clusters: the embedded lab spec (hacluster/examples/lab.yml) unless
    `bench failover -c FILE`; $HACLUSTER_CONFIG is not read."""
