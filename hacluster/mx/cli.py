"""`hacluster mx lint|zone|simulate`: the mail-routing model on the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..cli import LazyGroup
from ..config_path import config_option, rule
from ..errors import EXIT_FAILED, UserError


# `validate` (issue 5 item 3: the same scenario in the netns lab with real Postfix) lives in the lab
# toolkit (hacluster_lab.mx.validate), plugged in through its `hacluster.mx_commands` entry point.
@click.group(cls=LazyGroup, plugins="hacluster.mx_commands", optional=("validate",))
def mx() -> None:
    """MX lint, zone fragment, delivery simulation (RFC 5321 §5.1, Postfix/sendmail retries), lab validation."""


@mx.command("lint")
@click.option("--zone", "zone_file", type=str, help="Zone file to lint (dnspython syntax, like BIND).")
@click.option("--origin", type=str, help="Zone origin / mail domain (default: $ORIGIN in the file, or the spec's mail domain).")
@config_option(alias="--spec", required=False)
@click.option("--json", "as_json", is_flag=True, help='Print {"findings": [...]}.')
def lint_cmd(zone_file: str | None, origin: str | None, config: Path | None, as_json: bool) -> None:
    """Lint MX records of a zone file and/or the cluster spec (the MX records it implies).

    The spec is the usual one (-c FILE, $HACLUSTER_CONFIG, /etc/hacluster/cluster.yml); with
    --zone and no spec at the default place the zone is linted alone. Exit 1 if any finding is
    an error, 2 if the zone or spec cannot be read."""
    from .lint import compare_zone_spec, has_errors, lint_spec, lint_zone, load_zone, sort_findings

    if not zone_file and config is None:
        raise UserError(f"mx lint: give --zone FILE (with --origin DOMAIN) and/or a cluster spec ({rule()}; none found)")
    findings = []
    spec = None
    if config is not None:
        from ..spec import load_spec

        spec = load_spec(config)
        findings += lint_spec(spec)
    if zone_file:
        zone = load_zone(zone_file, origin or (spec.mail.domain if spec else None))
        findings += lint_zone(zone)
        if spec is not None:
            findings += compare_zone_spec(zone, spec)
    findings = sort_findings(findings)
    if as_json:
        click.echo(json.dumps({"findings": [f.as_dict() for f in findings]}, indent=2))
    else:
        for f in findings:
            click.echo(f.line())
        counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
        click.echo(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
    if has_errors(findings):
        raise click.exceptions.Exit(EXIT_FAILED)


@mx.command("zone")
@config_option(alias="--spec")
def zone_cmd(config: Path) -> None:
    """Print the zone fragment for the spec: MX records and the targets' A/AAAA records."""
    from ..spec import load_spec
    from .lint import zone_fragment

    click.echo(zone_fragment(load_spec(config)), nl=False)


@mx.command("simulate")
@click.option("--scenario", "scenario_file", required=True, type=str,
              help="Scenario YAML (docs/mx.md), or the name of a shipped one, e.g. relay1-down.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--plot", "plot_file", type=str, help="Write a PNG of queue depth per host over time.")
@click.option("--seed", type=int, help="Override the scenario's seed (arrivals, equal-preference choices).")
@click.option("--scale", type=float, help="Multiply every time in the scenario by this factor (as the lab does).")
@click.option("--engine", type=click.Choice(["fast", "des"]), default="fast", show_default=True,
              help="fast: cohort engine; des: the reference event-by-event simulation (same results, slower).")
def simulate_cmd(scenario_file: str, as_json: bool, plot_file: str | None, seed: int | None,
                 scale: float | None, engine: str) -> None:
    """Simulate mail through MX-selected relays, the FallbackMX host and the store."""
    from .model import summarize
    from .scenario import example_scenarios, load_scenario

    if plot_file:
        from ..plotting import require_matplotlib

        require_matplotlib()
    shipped = example_scenarios()
    scn = load_scenario(shipped[scenario_file] if scenario_file in shipped else scenario_file)
    if seed is not None:
        scn = scn.with_seed(seed)
    if scale is not None:
        scn = scn.scaled(scale)
    t0 = time.perf_counter()
    if engine == "des":
        from .des import run_des

        trace = run_des(scn)
    else:
        from .fast import run_fast

        trace = run_fast(scn)
    wall = time.perf_counter() - t0
    result = summarize(trace)
    if plot_file:
        from .plot import plot_queues

        plot_queues(scn, trace, plot_file)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"scenario {scn.name} ({scn.source}), seed {scn.seed}, engine {engine}, {wall:.2f}s")
    if scn.description:
        click.echo(f"  {scn.description}")
    d = result["delay_s"]
    click.echo(f"messages {result['messages']}: delivered {result['delivered']}, bounced {result['bounced']}, "
               f"in queue at end {result['in_queue_at_end']}")
    fmt = lambda v: "-" if v is None else f"{v:g}s"  # noqa: E731
    click.echo(f"delay p50 {fmt(d['p50'])}, p95 {fmt(d['p95'])}, max {fmt(d['max'])}")
    click.echo(f"{'host':<12} {'accepted':>9} {'queue peak':>11}")
    for h in result["accepted_by"]:
        click.echo(f"{h:<12} {result['accepted_by'][h]:>9} {result['queue_peak'][h]:>11}")
    if plot_file:
        click.echo(f"plot: {plot_file}")
