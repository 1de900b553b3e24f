"""`hacluster mx validate`: one scenario in the model and in the netns lab (real Postfix), side
by side, with the difference and the issue's targets (identical delivered/bounced counts,
accepted_by within 5 % per host). Exit 1 when a target is missed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hacluster.errors import EXIT_FAILED
from .labcount import compare
from .labplan import LAB_HOSTS, LabPlanRun, plan_run
from hacluster.mx.scenario import Scenario

if TYPE_CHECKING:
    from ..lab.lab import Lab

DEFAULT_STATE_DIR = Path("/run/hacluster-lab-hm")
DEFAULT_PREFIX = "hm-"


def plan_for_lab(lab: "Lab", scn: Scenario, scale: Any = None) -> LabPlanRun:
    from ..lab.dns import mx_records

    ips = {h.name: h.address for h in lab.plan.hosts}
    return plan_run(scn, lab.plan.domain, mx_records(lab.spec), {n: ips.get(n, "") for n in LAB_HOSTS.values()}, scale)


def run_model(plan: LabPlanRun) -> tuple[dict, dict[str, dict]]:
    """The model's result keys and every message's fate (for the disagreement list)."""
    from hacluster.mx.fast import run_fast
    from .labcount import model_fates
    from hacluster.mx.model import summarize

    trace = run_fast(plan.scenario, record_outcomes=True)
    origin = {i: t.origin for i, t in enumerate(plan.scenario.traffic)}
    final = {h for h, x in plan.scenario.hosts.items() if x.final}
    return summarize(trace), model_fates(trace.outcomes or {}, trace.attempts or {}, origin, final)


def validate_in_lab(lab: "Lab", scn: Scenario, scale: Any = None) -> dict[str, Any]:
    """Model and lab results for `scn` in a running lab (agents off; store1 serves the VIP).
    Resets the lab's mail state first, so one lab serves several scenarios in turn."""
    from .labrun import LabRun

    plan = plan_for_lab(lab, scn, scale)
    t0 = time.monotonic()
    model, fates = run_model(plan)
    run = LabRun(lab, plan)
    try:
        t_prep = time.monotonic()
        run.prepare()
        prepare_s = time.monotonic() - t_prep
        observed = run.run()
        observed["lab_detail"]["prepare_s"] = round(prepare_s, 2)
    finally:
        run.cleanup()
    cmp = compare(model, observed["lab"])
    from .labcount import disagreements

    observed["lab_detail"]["disagreements"] = disagreements(fates, run.fates, run.arrivals)
    return {
        "scenario": scn.name, "source": scn.source, "scale": round(plan.scale, 9),
        "scale_text": _fraction(plan.scale), "lab_seconds": round(plan.duration_s, 3),
        "lab_params": plan.params, "model": model, "lab": observed["lab"], **cmp,
        "lab_detail": {**observed["lab_detail"], "wall_s": round(time.monotonic() - t0, 2)},
    }


def _fraction(f: float) -> str:
    from fractions import Fraction

    fr = Fraction(f).limit_denominator(100000)
    return f"{fr.numerator}/{fr.denominator}"


def lab_options():
    from ..lab.state import LabOptions

    return LabOptions(agents=False, smtp_connect_timeout_s=1)


@click.command("validate")
@click.option("--scenario", "scenario_file", required=True, type=str,
              help="Scenario YAML, or the name of a shipped one (relay1-down, both-relays-down, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print model, lab, difference and targets as JSON.")
@click.option("--scale", type=str, help="Time factor, e.g. 1/300 (default: the scenario's lab.scale, else 1/300).")
@click.option("--state-dir", type=str, default=str(DEFAULT_STATE_DIR), show_default=True, help="Lab state directory.")
@click.option("--prefix", type=str, default=DEFAULT_PREFIX, show_default=True, help="Lab namespace prefix.")
def validate_cmd(scenario_file: str, as_json: bool, scale: str | None, state_dir: str, prefix: str) -> None:
    """Run a scenario in the model and in the netns lab (real Postfix), print both and the difference.

    Needs root (network namespaces). Builds its own lab (agents off, store1 holds the store VIP)
    and tears it down afterwards. Exit 1 if delivered/bounced differ or accepted_by misses 5 %."""
    from ..lab.lab import Lab
    from hacluster.mx.scenario import example_scenarios, load_scenario

    shipped = example_scenarios()
    scn = load_scenario(shipped[scenario_file] if scenario_file in shipped else scenario_file)
    lab = Lab(None, state_dir, prefix, lab_options())
    plan_for_lab(lab, scn, scale)  # input errors before anything is built
    try:
        lab.up()
        lab.start_mta("store1")
        lab.hold_vip("store1")
        result = validate_in_lab(lab, scn, scale)
    finally:
        lab.down()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(render(result))
    if not result["ok"]:
        raise click.exceptions.Exit(EXIT_FAILED)


def render(r: dict[str, Any]) -> str:
    """The human-readable table: model vs lab per key and per host."""
    m, lab, d = r["model"], r["lab"], r["difference"]
    lines = [f"scenario {r['scenario']} ({r['source']}), scale {r['scale_text']}: {r['lab_seconds']:g} s in the lab",
             f"{'':<18} {'model':>8} {'lab':>8} {'diff':>6}"]
    for k in ("messages", "delivered", "bounced", "in_queue_at_end"):
        lines.append(f"{k:<18} {m[k]:>8} {lab[k]:>8} {d[k]:>+6}")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for k in ("p50", "p95", "max"):
        lines.append(f"{'delay ' + k + ' (s)':<18} {fmt(m['delay_s'][k]):>8} {fmt(lab['delay_s'][k]):>8}")
    lines.append(f"{'accepted_by':<18} {'model':>8} {'lab':>8} {'diff':>6}  ok  (queue peak model/lab)")
    for h, a in d["accepted_by"].items():
        lines.append(f"  {h:<16} {a['model']:>8} {a['lab']:>8} {a['diff']:>+6}  {'yes' if a['ok'] else 'NO ':<3} "
                     f"({m['queue_peak'].get(h, 0)}/{lab['queue_peak'].get(h, 0)})")
    det = r["lab_detail"]
    late = max((f["late_s"] for f in det["faults"]), default=0.0)
    lines.append(f"lab: ndr_received {det['ndr_received']}, faults {len(det['faults'])} (latest {late:+.3f} s), "
                 f"arrival lag {det['arrival_lag_s']['min']}..{det['arrival_lag_s']['max']} s, wall {det['wall_s']} s")
    lines.append("targets: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in r["targets"].items()))
    lines.extend(f"  {f}" for f in r["failures"])
    for dis in det.get("disagreements", [])[:10]:
        m, n = dis["model"] or {}, dis["lab"] or {}
        lines.append(f"  message {dis['msg']} (arrival {dis['arrival_s']} s): model {m.get('status')} via "
                     f"{','.join(m.get('via', [])) or '-'} at {m.get('t')}, lab {n.get('status')} via {','.join(n.get('via', [])) or '-'}")
    return "\n".join(lines)
