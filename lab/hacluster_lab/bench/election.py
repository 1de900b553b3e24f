"""`hacluster bench election`: three real agents on loopback around a real ZooKeeper; SIGKILL
the holder N times at a random point of its renewal cycle and measure kill -> new lease holder.

Reported: medians and tails, dual-holder events from the merged claims logs (must be 0), the
agents' peak RSS, and what the idle cluster costs once the first holder is elected (bench/idle.py):
CPU % of one core per agent (p50/max over agents) and ZooKeeper writes per second per agent.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import click

from ..localcluster import LocalCluster
from hacluster.zkserver import ZooKeeperEnsemble
from .idle import idle_window


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured run)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p95": round(pct(values, 95), 3), "max": round(max(values), 3)} if values else {}


def run_election_bench(runs: int, profile: str, seed: int, zk_port: int, servers: int, progress: bool,
                       idle_s: float = 10.0) -> dict:
    rng = random.Random(seed)
    takeovers: list[float] = []
    rss_max = 0.0
    with tempfile.TemporaryDirectory(prefix="hacluster-bench-") as tmp:
        with ZooKeeperEnsemble.local(Path(tmp) / "zk", n=servers, base_port=zk_port) as ens:
            ens.start(timeout=60)
            with LocalCluster(ens.hosts, Path(tmp) / "agents", n=3, profile=profile, cluster="bench") as lc:
                lc.start_all()
                got = lc.wait_holder(timeout=30)
                if got is None:
                    raise click.ClickException("no holder elected within 30 s")
                holder = got[0]
                time.sleep(2.0)
                idle = idle_window(lc, ens, idle_s)
                rss_max = max(lc.rss_mb().values())
                lease = lc.spec.timing.lease_s
                for i in range(runs):
                    # a random phase of the holder's renewal cycle, after the cluster settled
                    time.sleep(lease + rng.uniform(0.5, 1.5))
                    rss_max = max([rss_max, *lc.rss_mb().values()])
                    tk = lc.kill(holder)
                    new = lc.wait_holder(exclude=(holder,), timeout=max(15.0, 10 * lease), after=tk)
                    if new is None:
                        raise click.ClickException(f"run {i + 1}: no takeover after killing {holder}")
                    takeovers.append(new[1] - tk)
                    if progress:
                        click.echo(f"run {i + 1}/{runs}: killed {holder}, {new[0]} took over in {takeovers[-1]:.3f}s", err=True)
                    lc.start(holder)
                    holder = new[0]
                time.sleep(lease)
                dual = lc.dual_holders()
    return {
        "bench": "election",
        "profile": profile,
        "zookeeper_servers": servers,
        "runs": runs,
        "takeover_s": summary(takeovers),
        "takeover_all_s": [round(x, 3) for x in takeovers],
        "dual_holder_events": len(dual),
        "agent_rss_mb": {"max": round(rss_max, 1)},
        **idle,
    }


@click.command("election")
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1, 200))
@click.option("--profile", default="default", show_default=True, type=click.Choice(["default", "fast", "relaxed"]))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--zk-servers", default=3, show_default=True, type=click.IntRange(1, 5))
@click.option("--zk-port", default=23810, show_default=True, type=int)
@click.option("--idle-s", default=10.0, show_default=True, type=click.FloatRange(1.0, 600.0),
              help="Idle window after the first election: agents' CPU and ZooKeeper writes.")
@click.option("--json", "as_json", is_flag=True)
def election_cmd(runs: int, profile: str, seed: int, zk_servers: int, zk_port: int, idle_s: float, as_json: bool) -> None:
    """Three local agents; SIGKILL the holder RUNS times; takeover time, dual holders, RSS, idle CPU and writes."""
    res = run_election_bench(runs, profile, seed, zk_port, zk_servers, progress=not as_json, idle_s=idle_s)
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        t = res["takeover_s"]
        click.echo(f"takeover p50 {t['p50']}s p95 {t['p95']}s max {t['max']}s over {runs} runs; "
                   f"dual holders {res['dual_holder_events']}; RSS max {res['agent_rss_mb']['max']} MB; "
                   f"idle CPU p50 {res['agent_cpu_pct_idle']['p50']}% max {res['agent_cpu_pct_idle']['max']}%; "
                   f"idle ZooKeeper writes/s per agent p50 {res['zk_writes_per_s_idle']['p50']} max {res['zk_writes_per_s_idle']['max']}")
    if res["dual_holder_events"]:
        raise click.exceptions.Exit(1)
