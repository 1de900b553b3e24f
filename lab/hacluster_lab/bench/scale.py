"""`hacluster bench scale`: N clusters of K real agents on one real 3-server ZooKeeper ensemble.

Each cluster lives under its own chroot (`/scale/cNNN`), its agents are separate processes on
loopback with a marker resource (no root). First one cluster alone is started and its holder
killed KILLS times (the baseline); then all N clusters run together: an idle window measures what
they cost -- ZooKeeper's own counters (`mntr`: committed writes as the leader's zxid advance, reads
as the per-namespace read counts of every server, the outstanding requests sampled throughout),
the agents' RSS and CPU from /proc -- and then the holder of KILLS sampled clusters is SIGKILLed,
one after the other, while everything else keeps running. `ratio_p50` is the takeover median
under load over the baseline's. The idle rates are set beside the capacity model
(bench/scale_model.py) in `details.model`.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import psutil

from hacluster import clock
from hacluster.agent.claims import read_events
from ..localcluster import LocalCluster, spec_text
from hacluster.timing import PROFILES
from hacluster.zkserver import ZooKeeperEnsemble, four_letter
from .idle import last_zxid, writes_between
from .scale_model import ensemble_load, relative_error

ROLE = "store"
_READS = re.compile(r"^zk_cnt_(.+)_read_per_namespace$")


def mntr(ens: ZooKeeperEnsemble, sid: int) -> dict[str, str]:
    """One server's `mntr` answer as a dict ({} if it does not answer)."""
    spec = next(s for s in ens.servers if s.id == sid)
    try:
        text = four_letter(spec.address, spec.client_port, "mntr", timeout=3.0)
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        if value:
            out[key.strip()] = value.strip()
    return out


def namespace_reads(stats: dict[str, str]) -> int:
    """Reads a server served below every top-level znode but ZooKeeper's own (/zookeeper)."""
    total = 0
    for key, value in stats.items():
        m = _READS.match(key)
        if m and m.group(1) != "zookeeper":
            total += int(float(value))
    return total


def median_max(values: list[float], digits: int = 3) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "max": float("nan")}
    return {"p50": round(statistics.median(values), digits), "max": round(max(values), digits)}


class OutstandingSampler:
    """Samples every server's `zk_outstanding_requests` (and connections) once a second."""

    def __init__(self, ens: ZooKeeperEnsemble, period_s: float = 1.0) -> None:
        self.ens, self.period = ens, period_s
        self.max_outstanding = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mntr-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for sid in self.ens.running_ids():
                v = mntr(self.ens, sid).get("zk_outstanding_requests")
                if v is not None:
                    self.max_outstanding = max(self.max_outstanding, int(float(v)))
            self.samples += 1

    def __enter__(self) -> "OutstandingSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def cluster_spec(zk_hosts: str, name: str, nodes: int, profile: str) -> str:
    """The loopback marker cluster of localcluster.py, under a chroot of its own."""
    return spec_text(zk_hosts, nodes, profile, name).replace("chroot: /hacluster", f"chroot: /scale/{name}")


def current_holder(lc: LocalCluster, timeout: float = 30.0) -> str:
    """The one node whose claim covers now (claims logs); waits out a transition in progress."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        held = lc.believed_holders(ROLE)
        if len(held) == 1:
            return held[0]
        time.sleep(0.05)
    raise click.ClickException(f"{lc.spec.name}: no single holder within {timeout:g}s ({lc.believed_holders(ROLE)})")


def kill_and_wait(lc: LocalCluster, lease_s: float, rng: random.Random) -> tuple[str, str, float]:
    """SIGKILL the holder at a random point of its renewal cycle; (killed, new holder, takeover
    seconds). The holder is looked up right before the kill: under load a holder may have lost
    its lease on its own since the last look (counted as `unplanned_takeovers`). The killed
    agent is started again (it rejoins as a candidate)."""
    time.sleep(lease_s + rng.uniform(0.5, 1.5))
    holder = current_holder(lc)
    tk = lc.kill(holder)
    wait = max(30.0, 10 * lease_s)
    new = lc.wait_holder(ROLE, exclude=(holder,), timeout=wait, after=tk)
    if new is None:
        raise click.ClickException(f"{lc.spec.name}: no takeover within {wait:g}s after killing {holder}; "
                                   f"log: {lc.agent_log_tail(holder, 5)}")
    lc.start(holder)
    return holder, new[0], new[1] - tk


def acquisitions(lc: LocalCluster, start: float, end: float) -> int:
    """`acquired` events in the cluster's claims logs between two CLOCK_BOOTTIME instants."""
    return sum(1 for ev in read_events(lc.dir.glob("claims-*.jsonl"))
               if ev["event"] == "acquired" and start < ev["t"] <= end)


def stop_all(clusters: list[LocalCluster]) -> None:
    """SIGTERM every agent at once, then reap (one by one, 100 agents would take minutes)."""
    for lc in clusters:
        for p in lc.procs.values():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
                except ProcessLookupError:
                    pass
    for lc in clusters:
        lc.cleanup()  # waits; SIGKILL after 5 s


def agent_procs(clusters: list[LocalCluster]) -> list[tuple[psutil.Process, bool]]:
    """Every running agent, and whether it holds the role as the window starts (claims logs; on
    a machine so loaded that holders lose their leases, some cluster may have none just then)."""
    out = []
    for lc in clusters:
        holders = set(lc.believed_holders(ROLE))
        for n, p in lc.procs.items():
            try:
                out.append((psutil.Process(p.pid), n in holders))
            except psutil.NoSuchProcess:
                pass
    return out


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def idle_costs(ens: ZooKeeperEnsemble, clusters: list[LocalCluster], seconds: float) -> dict[str, Any]:
    """ZooKeeper writes/reads per second from the servers' counters and the agents' CPU/RSS."""
    procs = agent_procs(clusters)
    cpu0: dict[int, float] = {}
    for p, _ in procs:
        try:
            cpu0[p.pid] = cpu_seconds(p)
        except psutil.NoSuchProcess:
            pass
    c0 = time.monotonic()
    ids = ens.running_ids()
    z0, m0, t0 = last_zxid(ens), {sid: mntr(ens, sid) for sid in ids}, time.monotonic()
    load0 = os.getloadavg()[0]
    time.sleep(seconds)
    # % of one core over the window from the process's own CPU seconds (psutil's cpu_percent
    # rounds to 0.1 %, the size of the differences this measures); holders and standbys apart
    cpu: list[float] = []
    by_role: dict[bool, list[float]] = {True: [], False: []}
    spent = time.monotonic() - c0
    for p, holding in procs:
        try:
            pct = 100 * (cpu_seconds(p) - cpu0[p.pid]) / spent
        except (psutil.NoSuchProcess, KeyError):
            continue
        cpu.append(pct)
        by_role[holding].append(pct)
    m1, z1, t1 = {sid: mntr(ens, sid) for sid in ids}, last_zxid(ens), time.monotonic()
    window = t1 - t0
    reads = sum(namespace_reads(m1[s]) - namespace_reads(m0[s]) for s in ids)
    rss = []
    for p, _ in procs:
        try:
            rss.append(p.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            pass

    def delta(key: str) -> int:
        return sum(int(float(m1[s].get(key, 0))) - int(float(m0[s].get(key, 0))) for s in ids)

    return {
        "window_s": round(window, 2),
        "writes_per_s": round(writes_between(z0, z1) / window, 2),
        "reads_per_s": round(reads / window, 2),
        # every request the servers answered (reads, writes, pings): readlatency counts pings too
        "requests_per_s": round((delta("zk_cnt_readlatency") + delta("zk_cnt_updatelatency")) / window, 2),
        "packets_received_per_s": round(delta("zk_packets_received") / window, 2),
        "connections_by_server": {str(s): int(float(m1[s].get("zk_num_alive_connections", 0))) for s in ids},
        "watches": sum(int(float(m1[s].get("zk_watch_count", 0))) for s in ids),
        # the servers' own latency in the window (ms): writes (updatelatency, counted where the
        # client is connected) and reads; against the profile's request_timeout_s
        "write_latency_ms_avg": round(delta("zk_sum_updatelatency") / max(1, delta("zk_cnt_updatelatency")), 2),
        "read_latency_ms_avg": round(delta("zk_sum_readlatency") / max(1, delta("zk_cnt_readlatency")), 2),
        "write_latency_ms_p99": max(float(m1[s].get("zk_p99_updatelatency", 0)) for s in ids),
        "cpu": cpu,
        "cpu_holders": by_role[True],
        "cpu_standbys": by_role[False],
        "rss": rss,
        "load_avg_1m": [round(load0, 1), round(os.getloadavg()[0], 1)],
    }


def run_scale_bench(clusters: int, nodes: int, kills: int, profile: str, seed: int, zk_port: int,
                    idle_s: float, progress: bool, workdir: Path | None = None) -> dict[str, Any]:
    rng = random.Random(seed)
    timing = PROFILES[profile]
    lease = timing.lease_s

    def say(msg: str) -> None:
        if progress:
            click.echo(f"[{time.strftime('%H:%M:%S')}] {msg}", err=True)

    with ExitStack() as stack:
        tmp = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hacluster-scale-")))
        ens = ZooKeeperEnsemble.local(tmp / "zk", n=3, base_port=zk_port)
        stack.callback(ens.stop)  # not `with`: its __enter__ gives the servers 30 s, too few at load 100
        ens.start(timeout=120)
        say(f"ZooKeeper ensemble up at {ens.hosts}")

        # the baseline: one cluster alone on the ensemble
        single_t: list[float] = []
        single = LocalCluster(ens.hosts, tmp / "single", n=nodes,
                              spec_text_=cluster_spec(ens.hosts, "single", nodes, profile))
        try:
            single.start_all()
            got = single.wait_holder(ROLE, timeout=60)
            if got is None:
                raise click.ClickException(f"single cluster: no holder within 60s; {single.agent_log_tail('node1', 5)}")
            for i in range(kills):
                _, holder, took = kill_and_wait(single, lease, rng)
                single_t.append(took)
                say(f"single cluster kill {i + 1}/{kills}: {holder} took over in {took:.3f}s")
            time.sleep(lease)
            dual = len(single.dual_holders())
        finally:
            stop_all([single])

        # all N clusters together
        lcs: list[LocalCluster] = []
        stack.callback(stop_all, lcs)
        for c in range(1, clusters + 1):
            name = f"c{c:03d}"
            lc = LocalCluster(ens.hosts, tmp / name, n=nodes, spec_text_=cluster_spec(ens.hosts, name, nodes, profile))
            lcs.append(lc)
            lc.start_all()
        say(f"{clusters} clusters of {nodes} agents started")
        deadline = time.monotonic() + 60 + 3 * clusters * nodes
        for lc in lcs:
            if lc.wait_holder(ROLE, timeout=max(1.0, deadline - time.monotonic())) is None:
                raise click.ClickException(f"{lc.spec.name}: no holder within the start deadline; "
                                           f"{lc.agent_log_tail('node1', 5)}")
        say("every cluster has a holder; settling")
        with OutstandingSampler(ens) as sampler:
            time.sleep(max(3.0, 2 * lease))
            settled = clock.now()
            idle = idle_costs(ens, lcs, idle_s)
            idle_end = clock.now()
            say(f"idle window: {idle['writes_per_s']} writes/s, {idle['reads_per_s']} reads/s, "
                f"load {idle['load_avg_1m']}")
            multi_t: list[float] = []
            sample = rng.sample(lcs, min(kills, clusters)) if kills <= clusters else [rng.choice(lcs) for _ in range(kills)]
            for i, lc in enumerate(sample):
                _, new, took = kill_and_wait(lc, lease, rng)
                multi_t.append(took)
                say(f"{lc.spec.name} kill {i + 1}/{len(sample)}: {new} took over in {took:.3f}s")
            time.sleep(lease)
        dual += sum(len(lc.dual_holders()) for lc in lcs)
        # takeovers nobody caused, in the idle window: a holder that lost its lease on its own
        unplanned = sum(acquisitions(lc, settled, idle_end) for lc in lcs)

    model = ensemble_load(clusters, nodes, 1, timing)
    single_p50 = statistics.median(single_t) if single_t else float("nan")
    multi_p50 = statistics.median(multi_t) if multi_t else float("nan")
    return {
        "clusters": clusters,
        "agents": clusters * nodes,
        "takeover_s": median_max(multi_t),
        "takeover_s_single_cluster": median_max(single_t),
        "ratio_p50": round(multi_p50 / single_p50, 3) if single_t and multi_t else float("nan"),
        "zk_writes_per_s": idle["writes_per_s"],
        "zk_reads_per_s": idle["reads_per_s"],
        "zk_outstanding_max": sampler.max_outstanding,
        "agent_rss_mb": median_max(idle["rss"], 1),
        "agent_cpu_pct_idle": median_max(idle["cpu"], 2),
        "dual_holder_events": dual,
        "details": {
            "nodes_per_cluster": nodes,
            "profile": profile,
            "heartbeat_s": timing.heartbeat_s,
            "renew_s": round(timing.renew_s, 3),
            "zookeeper_servers": 3,
            "kills": len(multi_t),
            "takeovers_in_idle_window": unplanned,
            "takeover_all_s": [round(x, 3) for x in multi_t],
            "takeover_single_cluster_all_s": [round(x, 3) for x in single_t],
            "idle_window_s": idle["window_s"],
            "zk_requests_per_s": idle["requests_per_s"],
            "zk_packets_received_per_s": idle["packets_received_per_s"],
            "zk_connections_by_server": idle["connections_by_server"],
            "zk_watches": idle["watches"],
            "zk_write_latency_ms": {"avg": idle["write_latency_ms_avg"], "p99": idle["write_latency_ms_p99"]},
            "zk_read_latency_ms_avg": idle["read_latency_ms_avg"],
            "request_timeout_s": timing.request_timeout_s,
            "outstanding_samples": sampler.samples,
            "load_avg_1m_idle_window": idle["load_avg_1m"],
            "agent_cpu_pct_idle_holders": median_max(idle["cpu_holders"], 2),
            "agent_cpu_pct_idle_standbys": median_max(idle["cpu_standbys"], 2),
            "model": {
                "writes_per_s": round(model.writes_per_s, 2),
                "reads_per_s": round(model.reads_per_s, 2),
                "writes_error": round(relative_error(model.writes_per_s, idle["writes_per_s"]), 3),
                "reads_error": round(relative_error(model.reads_per_s, idle["reads_per_s"]), 3),
            },
        },
    }


@click.command("scale")
@click.option("--clusters", default=25, show_default=True, type=click.IntRange(1, 500))
@click.option("--nodes-per-cluster", default=4, show_default=True, type=click.IntRange(2, 9))
@click.option("--kills", default=8, show_default=True, type=click.IntRange(1, 100),
              help="Holders killed: in that many sampled clusters, and as often in the lone cluster.")
@click.option("--profile", default="default", show_default=True, type=click.Choice(sorted(PROFILES)))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--zk-port", default=23910, show_default=True, type=int,
              help="First client port of the 3-server ensemble (servers at +0, +10, +20).")
@click.option("--idle-s", default=20.0, show_default=True, type=click.FloatRange(2.0, 600.0),
              help="Idle window for ZooKeeper rates and the agents' CPU.")
@click.option("--json", "as_json", is_flag=True)
def scale_cmd(clusters: int, nodes_per_cluster: int, kills: int, profile: str, seed: int, zk_port: int,
              idle_s: float, as_json: bool) -> None:
    """N clusters of K local agents on one 3-server ensemble: takeover under load vs alone, ZooKeeper rates, agent CPU/RSS."""
    res = run_scale_bench(clusters, nodes_per_cluster, kills, profile, seed, zk_port, idle_s, progress=True)
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        t, s = res["takeover_s"], res["takeover_s_single_cluster"]
        click.echo(f"{res['clusters']} clusters, {res['agents']} agents: takeover p50 {t['p50']}s max {t['max']}s "
                   f"(alone p50 {s['p50']}s: ratio {res['ratio_p50']}); ZooKeeper {res['zk_writes_per_s']} writes/s, "
                   f"{res['zk_reads_per_s']} reads/s, outstanding max {res['zk_outstanding_max']}; agent RSS p50 "
                   f"{res['agent_rss_mb']['p50']} MB, idle CPU p50 {res['agent_cpu_pct_idle']['p50']}%; "
                   f"dual holders {res['dual_holder_events']}")
    if res["dual_holder_events"]:
        raise click.exceptions.Exit(1)
