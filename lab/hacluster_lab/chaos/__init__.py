"""`hacluster chaos`: seeded random faults in the namespace lab under mail load, then invariants.

Modules: schedule (pure seeded generator), netfaults (per-fault nft tables), runner (applies a
schedule, heals, times recovery), check (pure invariants), shrink (pure ddmin), session (one run
in a fresh lab; run + check + shrink). docs/chaos.md describes the faults, checks and bounds.
"""

from __future__ import annotations

import json
import random

import time
from typing import Any

import click

from hacluster.errors import UserError


def _parse_only(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        ids = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--only {text!r}: comma-separated fault ids (numbers), e.g. 3,7") from None
    return ids


@click.command("chaos")
@click.option("--duration", "duration_s", default=60.0, show_default=True, type=click.FloatRange(5, 86400),
              help="Seconds of faults (then heal, recovery, mail audit).")
@click.option("--seed", default=None, type=int, help="Schedule seed (default: random, printed).")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@click.option("--kinds", default=None, help="Comma-separated fault kinds to draw from (default: all).")
@click.option("--only", default=None, help="Run only these fault ids of the seed's schedule (a shrunk sequence).")
@click.option("--max-active", default=3, show_default=True, type=click.IntRange(1, 20), help="Faults in force at once.")
@click.option("--rate", "rate_per_s", default=2.0, show_default=True, type=click.FloatRange(0.1, 100),
              help="Messages per second per mail stream (by MX, and to the store VIP).")
@click.option("--recovery-bound", "recovery_bound_s", default=30.0, show_default=True, type=click.FloatRange(1, 600),
              help="max_recovery_s after the final heal above this fails the run.")
@click.option("--shrink/--no-shrink", "do_shrink", default=True, show_default=True)
@click.option("--shrink-tests", default=6, show_default=True, type=click.IntRange(1, 50), help="Re-runs the shrinker may do.")
@click.option("--shrink-budget", "shrink_budget_s", default=900.0, show_default=True, type=click.FloatRange(10, 86400),
              help="Wall seconds the shrinker may spend.")
@click.option("--restart-sec", "restart_s", default=1.0, show_default=True, type=click.FloatRange(0, 60),
              help="Restart an agent that exited by itself after this long, like systemd's RestartSec (0: never).")
@click.option("--allow-duplicates", default=0, show_default=True, type=click.IntRange(0, None),
              help="Duplicated messages the run may have before it fails (an explicit budget; default none).")
@click.option("--failsafe", "failsafe", default="off", show_default=True, type=click.Choice(["on", "off"]),
              help="Run the lab with failsafe mode on, on the failsafe schedule (adds whole-ZooKeeper outages "
                   "and mail nodes cut from every ZooKeeper server).")
@click.option("--maildirs", type=click.Choice(["shared", "per-node"]), default="shared", show_default=True,
              help="The stores deliver into one Maildir tree (shared storage, as a store pair has; the "
                   "delivery agent's duplicate record is then one) or one each (before issue 21).")
@click.option("--plan", is_flag=True, help="Print the schedule and exit (no lab, no root).")
@click.option("--state-dir", default="/run/hacluster-lab-hx", show_default=True)
@click.option("--prefix", default="hx-", show_default=True, help="Namespace prefix of the lab.")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Also write the JSON report here.")
def chaos_cmd(duration_s: float, seed: int | None, as_json: bool, kinds: str | None, only: str | None,
              max_active: int, rate_per_s: float, recovery_bound_s: float, do_shrink: bool, shrink_tests: int,
              shrink_budget_s: float, restart_s: float, allow_duplicates: int, failsafe: str, maildirs: str, plan: bool,
              state_dir: str, prefix: str, output: str | None) -> None:
    """Random, reproducible faults in the lab under mail load; then check the invariants.

    The lab is the embedded lab spec (hacluster/examples/lab.yml); $HACLUSTER_CONFIG is not read.
    --failsafe on runs it with `failsafe: true` (the file is not changed) and draws from the
    failsafe schedule, which adds zk-outage (every ZooKeeper server off) and zk-cut.

    Faults: agent SIGKILL/SIGSTOP, power-off, partitions between any two hosts (ZooKeeper
    servers included), isolation, flapping links, ZooKeeper server and quorum loss. Checks after
    healing everything: dual_holder_samples == 0, lost == 0, duplicates <= --allow-duplicates (0),
    max_recovery_s <= the bound. A
    failing run prints the seed and the minimal fault sequence (shrunk by re-running subsets).
    Exit 0 ok, 1 an invariant broke, 2 usage error."""
    from .schedule import Params, generate, parse_kinds
    from .session import RunOptions, chaos, run_once

    if seed is None:
        seed = random.SystemRandom().randrange(1, 10**6)
    try:
        params = Params(duration_s=duration_s, max_active=max_active, weights=parse_kinds(kinds, failsafe == "on"))
        sched = generate(seed, params=params)
    except ValueError as err:
        raise UserError(f"--kinds/--duration: {err}") from None
    ids = _parse_only(only)
    if ids is not None:
        unknown = sorted(set(ids) - set(sched.ids()))
        if unknown:
            raise UserError(f"--only: no fault {unknown} in the schedule of seed {seed} ({len(sched.faults)} faults)")
        sched = sched.subset(ids, compact=True)
    if plan:
        if as_json:
            click.echo(json.dumps(sched.to_dict(), indent=1))
        else:
            click.echo(f"seed {seed}: {len(sched.faults)} faults over {sched.duration_s:g}s {sched.counts()}")
            for f in sched.faults:
                click.echo("  " + f.describe())
        return

    def progress(msg: str) -> None:
        click.echo(f"[{time.strftime('%H:%M:%S')}] {msg}", err=True)

    opts = RunOptions(state_dir=state_dir, prefix=prefix, rate_per_s=rate_per_s, recovery_bound_s=recovery_bound_s,
                      supervise_s=restart_s or None, allow_duplicates=allow_duplicates, failsafe=failsafe == "on",
                      shared_maildir=maildirs == "shared")
    progress(f"chaos seed {seed}{' (failsafe on)' if failsafe == 'on' else ''}: {len(sched.faults)} faults "
             f"{sched.counts()}")
    report = chaos(sched, lambda s: run_once(s, opts, progress), do_shrink=do_shrink, shrink_tests=shrink_tests,
                   shrink_budget_s=shrink_budget_s, progress=progress)
    if only:
        report["only"] = ids
    if failsafe == "on":  # the schedule (and the spec) depend on it: a repro must say so
        for key in ("repro", "minimal_repro"):
            if report.get(key):
                report[key] += " --failsafe on"
    if output:
        with open(output, "w") as fh:
            json.dump(report, fh, indent=1)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(summary_text(report))
    if not report["ok"]:
        raise click.exceptions.Exit(1)


MAX_LISTED = 40


def summary_text(r: dict[str, Any]) -> str:
    lines = [f"chaos seed {r['seed']} duration {r['duration_s']:g}s: {'OK' if r['ok'] else 'FAILED'}",
             f"  faults {r['faults']['count']} {r['faults']['by_kind']} actions {r['faults']['actions']} "
             f"(failed {r['faults']['failed_actions']}, max late {r['faults']['max_late_s']}s, "
             f"agent restarts {r['faults'].get('agent_restarts', 0)})",
             f"  dual_holder_samples {r['dual_holder_samples']}  accepted {r['accepted']}  lost {r['lost']}  "
             f"duplicates {r['duplicates']}",
             f"  max_recovery_s {r['max_recovery_s']} (bound {r['recovery_bound_s']}s)  "
             f"monitor {r['monitor']['samples']} samples, max gap {r['monitor']['max_gap_s']:.3f}s"]
    for name, m in r["mail"].items():
        lines.append(f"  mail {name}: submitted {m['submitted']} accepted {m['accepted']} delivered_once "
                     f"{m['delivered_once']} lost {m['lost']} duplicates {m['duplicates']} not_accepted {m['not_accepted']}")
    for v in r["violations"]:
        lines.append(f"  VIOLATION {v['kind']}: {v['detail']}")
    for d in r.get("duplicate_details") or []:
        where = ", ".join(f"{c['store']}/{c['mailbox']}" for c in d["copies"])
        lines.append(f"  duplicate {d['msgid']} ({d['stream']}, t={d['t']}s): copies in {where}; "
                     f"faults in force: {'; '.join(d['faults_in_force']) or 'none'}")
    if not r["ok"]:
        lines.append(f"  seed {r['seed']}; reproduce: {r['repro']}")
        if r.get("minimal") is not None and r.get("minimal_repro"):
            lines.append(f"  minimal fault sequence ({len(r['minimal'])} faults):")
            lines += [f"    {d}" for d in r["minimal"][:MAX_LISTED]]
            if len(r["minimal"]) > MAX_LISTED:
                lines.append(f"    ... {len(r['minimal']) - MAX_LISTED} more (--json for all)")
            lines.append(f"  reproduce the minimal sequence: {r['minimal_repro']}")
        elif r.get("shrink") is not None:
            sh = r["shrink"]
            lines.append(f"  shrinking: no smaller failing subset in {sh['tests']} re-runs"
                         f"{' (budget exhausted)' if sh['exhausted'] else ''}: the failure needs the whole schedule "
                         "or its timing; the full fault list is in --json")
    return "\n".join(lines)


__all__ = ["chaos_cmd", "summary_text"]

