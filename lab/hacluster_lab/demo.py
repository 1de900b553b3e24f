"""`hacluster demo` runs the namespace mail lab demo (hacluster_lab.lab.demo, needs root).
`--loopback`: a real ZooKeeper and three real agents on loopback elect a holder; the demo
SIGKILLs it and shows the takeover. Needs no root and no network namespaces."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import click

from hacluster.errors import UserError
from .lab.demo import progress_printer
from .localcluster import LocalCluster
from hacluster.zkserver import ZooKeeperEnsemble


def loopback_demo(profile: str = "default", kills: int = 2, zk_port: int = 22810,
                  say: Callable[[str], None] | None = None) -> dict:
    _say = say or progress_printer()
    with tempfile.TemporaryDirectory(prefix="hacluster-demo-") as tmp:
        base = Path(tmp)
        _say("starting a 3-server ZooKeeper ensemble on 127.0.0.1 (Debian's zookeeper package)")
        with ZooKeeperEnsemble.local(base / "zk", n=3, base_port=zk_port) as ens:
            ens.start(timeout=60)
            _say(f"ZooKeeper serving at {ens.hosts}, leader is server {ens.leader_id()}")
            with LocalCluster(ens.hosts, base / "agents", n=3, profile=profile, cluster="demo") as lc:
                t = lc.spec.timing
                _say(f"starting agents {', '.join(lc.nodes)} (profile {profile}: lease {t.lease_s:g}s, loop {t.loop_s:g}s)")
                lc.start_all()
                got = lc.wait_holder(timeout=30)
                if got is None:
                    raise click.ClickException("no agent acquired the role within 30s; see " + str(lc.dir))
                holder = got[0]
                _say(f"elected: {holder} holds role 'store' ({got[1] - lc.t0:.2f}s after start; a fresh cluster waits one lease)")
                takeovers = []
                for _ in range(kills):
                    time.sleep(1.0)
                    _say(f"kill -9 {holder} (pid {lc.pid(holder)})")
                    tk = lc.kill(holder)
                    new = lc.wait_holder(exclude=(holder,), timeout=15, after=tk)
                    if new is None:
                        raise click.ClickException("no takeover within 15s")
                    took = new[1] - tk
                    takeovers.append(took)
                    _say(f"takeover: {new[0]} holds 'store' {took:.3f}s after the kill")
                    lc.start(holder)
                    _say(f"restarted {holder}: it rejoins as a candidate")
                    holder = new[0]
                time.sleep(1.0)
                dual = lc.dual_holders()
                _say(f"holder claims checked for overlap: {len(dual)} dual-holder events")
                with _Coord(lc) as coord:
                    hist = coord.history(20)
                _say("history: " + ", ".join(f"{h['node']} {h['event']} t{h.get('term', '')}" for h in hist[-6:]))
                return {"takeover_s": [round(x, 3) for x in takeovers], "dual_holder_events": len(dual)}


class _Coord:
    def __init__(self, lc: LocalCluster) -> None:
        self.c = lc.coordinator("demo")

    def __enter__(self):
        return self.c

    def __exit__(self, *a: object) -> None:
        self.c.stop()


@click.command("demo")
@click.option("--profile", default="default", show_default=True, type=click.Choice(["default", "fast", "relaxed"]))
@click.option("--kills", default=2, show_default=True, type=click.IntRange(1, 10))
@click.option("--loopback/--lab", default=False, help="The full netns mail lab (default, needs root) or loopback agents only.")
@click.option("--keep", is_flag=True, help="Leave the lab up after the story (at the `hacluster lab` default state "
                                           "dir) and print what to try next.")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON on stdout (progress goes to stderr).")
def demo_cmd(profile: str, kills: int, loopback: bool, keep: bool, as_json: bool) -> None:
    """Show an election and failover on real ZooKeeper and real agents.

    On the embedded default cluster (the network-namespace lab built from the embedded lab spec,
    hacluster/examples/lab.yml; needs root); --loopback: three agents around a real ZooKeeper on
    loopback, no root needed. Neither reads -c or $HACLUSTER_CONFIG (they never touch a real cluster)."""
    if not loopback:
        if os.geteuid() != 0:
            raise UserError("the lab demo builds network namespaces and needs root; "
                            "`hacluster demo --loopback` shows the election and failover without root")
        from .lab.demo import lab_demo

        if keep:
            from .lab.state import DEFAULT_STATE_DIR
            from .lab.topology import DEFAULT_PREFIX

            result = lab_demo(str(DEFAULT_STATE_DIR), DEFAULT_PREFIX, keep=True, say=progress_printer(as_json))
        else:
            result = lab_demo(say=progress_printer(as_json))
    else:
        if keep:
            raise UserError("--keep applies to the lab demo (the loopback agents always stop)")
        result = loopback_demo(profile, kills, say=progress_printer(as_json))
    if as_json:
        click.echo(json.dumps(result))
    if result.get("dual_holder_events") or result.get("dual_holder_samples"):
        raise click.exceptions.Exit(1)
