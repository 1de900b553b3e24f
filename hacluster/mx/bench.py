"""`hacluster bench mx`: simulation throughput on a 5-day scenario with two outages.

Target (issue 5): 1,000,000 messages in under 60 s on a 2-core machine. The figure is the
median wall time of `--repeat` full runs (arrival generation, simulation, summary). A smaller
sample is also run through the reference DES, and both engines must agree exactly, so a fast
number can never come from a wrong engine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Any

import click

from ..errors import EXIT_FAILED
from .model import summarize
from .scenario import Domain, Host, MxRecord, Outage, Policy, Scenario, Traffic

DAY, HOUR = 86400.0, 3600.0


def bench_scenario(messages: int, seed: int = 1) -> Scenario:
    """The lab topology over 5 days, Poisson arrivals, and two incidents: both relays down for
    3 h on day 1 (senders queue and back off), the store VIP down for 4 h on day 3 (relays hand
    mail to the FallbackMX host, which queues and retries)."""
    postfix = Policy()
    to_store = Policy(fallback=("fallback",))
    hosts = {
        "sender": Host("sender", "mx", None, postfix),
        "relay1": Host("relay1", "relay", "store", to_store),
        "relay2": Host("relay2", "relay", "store", to_store),
        "fallback": Host("fallback", "relay", "store", postfix),
        "store": Host("store", "local", None, postfix),
    }
    domains = {"lab.example": Domain("lab.example", (MxRecord(10, "relay1"), MxRecord(20, "relay2")))}
    outages = (
        Outage("relay1", 1 * DAY + 10 * HOUR, 1 * DAY + 13 * HOUR),
        Outage("relay2", 1 * DAY + 10 * HOUR, 1 * DAY + 13 * HOUR),
        Outage("store", 3 * DAY + 2 * HOUR, 3 * DAY + 6 * HOUR),
    )
    traffic = (Traffic("sender", "lab.example", messages, 0.0, 5 * DAY, "poisson"),)
    return Scenario("bench-5d-two-outages", 5 * DAY, domains, hosts, traffic, outages, seed,
                    "5 days; both relays down 3 h on day 1; store VIP down 4 h on day 3", source="<bench>")


@click.command("mx")
@click.option("--messages", default=1_000_000, show_default=True, type=click.IntRange(1, 100_000_000))
@click.option("--repeat", default=3, show_default=True, type=click.IntRange(1, 20), help="Runs; wall_s is their median.")
@click.option("--des-sample", default=20_000, show_default=True, type=click.IntRange(0, 1_000_000),
              help="Also run this many messages through the reference DES and require identical results (0: skip).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def mx_bench_cmd(messages: int, repeat: int, des_sample: int, seed: int, as_json: bool) -> None:
    """Simulate MESSAGES over 5 days with two outages; report wall_s and messages_per_s."""
    from .fast import run_fast

    scn = bench_scenario(messages, seed)
    walls = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = summarize(run_fast(scn))
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    out: dict[str, Any] = {
        "benchmark": "mx",
        "scenario": scn.description,
        "messages": messages,
        "engine": "fast",
        "wall_s": round(wall, 3),
        "messages_per_s": round(messages / wall),
        "runs_wall_s": [round(w, 3) for w in walls],
        "target": {"messages": 1_000_000, "wall_s_max": 60.0},
        "result": result,
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    agree = True
    if des_sample:
        from .des import run_des

        small = bench_scenario(des_sample, seed)
        t0 = time.perf_counter()
        ref = summarize(run_des(small))
        des_wall = time.perf_counter() - t0
        agree = ref == summarize(run_fast(small))
        out["reference_des"] = {"messages": des_sample, "wall_s": round(des_wall, 3),
                                "messages_per_s": round(des_sample / des_wall), "identical_to_fast": agree}
        out["speedup_vs_des"] = round(out["messages_per_s"] / max(1, out["reference_des"]["messages_per_s"]), 1)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"mx bench: {messages} messages in {wall:.2f}s (median of {repeat}) = {out['messages_per_s']} messages/s")
        if des_sample:
            d = out["reference_des"]
            click.echo(f"reference DES: {d['messages']} messages in {d['wall_s']}s = {d['messages_per_s']} messages/s; "
                       f"identical results: {agree}")
    if not agree:
        raise click.exceptions.Exit(EXIT_FAILED)
