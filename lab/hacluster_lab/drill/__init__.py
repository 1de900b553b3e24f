"""`hacluster drill run PLAYBOOK... | --all`: rehearse outages from YAML playbooks (docs/drills.md).

Every playbook is read and checked against the target's hosts and roles before anything runs
(errors: FILE:LINE: field: message, exit 2). The namespace lab is brought up once for all the
playbooks of a run (each drill starts by settling it: faults undone, one holder, queues empty).
Exit 0 when every expectation passed, 1 otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from hacluster.config_path import config_option
from hacluster.errors import UserError

DEFAULT_STATE_DIR = "/run/hacluster-lab-drill"
DEFAULT_PREFIX = "hdr-"


def default_playbook_dir() -> Path:
    """./playbooks if there is one, else the package's own (package data of hacluster-lab)."""
    here = Path("playbooks")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent / "playbooks"


def collect(paths: tuple[str, ...], run_all: bool, directory: str | None) -> list[Path]:
    if run_all and paths:
        raise UserError("give playbook files or --all, not both")
    if run_all:
        d = Path(directory) if directory else default_playbook_dir()
        found = sorted(d.glob("*.yml"))
        if not found:
            raise UserError(f"no playbooks (*.yml) in {d}")
        return found
    if not paths:
        raise UserError("give a playbook file (or --all)")
    return [Path(p) for p in paths]


def load_all(files: list[Path]):
    """Every playbook parsed; all problems of all files at once."""
    from .playbook import PlaybookError, load_playbook

    books, problems = [], []
    for f in files:
        try:
            books.append(load_playbook(f))
        except PlaybookError as err:
            problems.extend(err.problems)
    if problems:
        raise PlaybookError(problems)
    names: dict[str, str] = {}
    for pb in books:
        if pb.name in names:
            raise PlaybookError([f"{pb.source}:1: name: {pb.name!r} is also the name of {names[pb.name]}"])
        names[pb.name] = pb.source
    return books


def make_target(kind: str, state_dir: str, prefix: str, spec: Path | None, vagrant_dir: str | None, keep: bool,
                lab_setup: dict | None = None):
    if kind == "vagrant":
        from .vagrant import VagrantTarget

        if spec is not None:
            raise UserError("drill run --target vagrant: the VM lab's spec is VAGRANT_DIR/cluster.yml; -c/--config is for the lab target")

        d = Path(vagrant_dir) if vagrant_dir else Path(__file__).resolve().parents[3] / "vagrant"
        target = VagrantTarget(d)
        from .vagrant_docker import DockerVagrantTarget, container_ids

        ids = container_ids(d, target.hosts())
        if ids:  # machines made by Vagrant's docker provider
            return DockerVagrantTarget(d, ids)
        return target
    from .labtarget import LabTarget

    return LabTarget(state_dir, prefix, spec, keep, lab_setup)


def _print_report(rep) -> None:
    if rep.not_applicable:
        click.echo(f"drill {rep.name} ({rep.playbook}) on {rep.target}: NOT APPLICABLE: {rep.not_applicable}")
        return
    verdict = "PASSED" if rep.passed else "FAILED"
    click.echo(f"drill {rep.name} ({rep.playbook}) on {rep.target}: {verdict} in {rep.seconds:.1f}s")
    if rep.setup:
        did = {"restart_s": "restarted", "deploy_s": "deployed"}
        took = ", ".join(f"{did[k]} in {v} s" for k, v in rep.setup.items() if k in did)
        click.echo(f"  agents moved to spec {rep.setup.get('spec')} first ({took})")
    for r in rep.expectations:
        where = f"line {r.line}" if r.line else "implicit"
        measured = json.dumps(r.measured) if not isinstance(r.measured, str) else r.measured
        click.echo(f"  {'PASS' if r.passed else 'FAIL'} {r.expect:<17} measured {measured}  (bound {r.bound}; {where})"
                   + (f"  {r.detail}" if r.detail else ""))
    if rep.timeline:
        click.echo(f"  timeline: {rep.timeline}")


@click.group("drill")
def drill() -> None:
    """Outage rehearsals: YAML playbooks of faults and expectations, run in the lab.

    The lab target builds the embedded lab spec (plus drill health checks) unless -c FILE;
    $HACLUSTER_CONFIG is not read."""


@drill.command("run")
@click.argument("playbooks", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--all", "run_all", is_flag=True, help="Run every playbook in --dir (default: playbooks/).")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None, help="Playbook directory for --all.")
@click.option("--target", "target_kind", type=click.Choice(["lab", "vagrant"]), default="lab", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report(s) as JSON.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="drill-results", show_default=True,
              help="Where the timeline pictures and JSON reports go.")
@config_option(lab=True, alias="--spec",
               lab_default="on the lab target the embedded lab spec plus the drill health checks")
@click.option("--state-dir", default=DEFAULT_STATE_DIR, show_default=True, envvar="HACLUSTER_DRILL_STATE",
              help="Lab state dir; an already running lab there is used as is and left up.")
@click.option("--prefix", default=DEFAULT_PREFIX, show_default=True, help="Namespace prefix of a lab the drill brings up.")
@click.option("--vagrant-dir", type=click.Path(file_okay=False), default=None, help="The VM lab (default: vagrant/).")
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards (to look at it).")
def run_cmd(playbooks: tuple[str, ...], run_all: bool, directory: str | None, target_kind: str, as_json: bool,
            out_dir: str, config: Path | None, state_dir: str, prefix: str, vagrant_dir: str | None, keep: bool) -> None:
    """Run PLAYBOOKS (or --all) and judge every expectation; exit 1 if any failed."""
    from .playbook import check_against
    from .runner import DrillReport, run_playbook

    from hacluster.plotting import require_matplotlib

    require_matplotlib()  # the timeline pictures: say so before the lab is built, not after the drill
    # playbooks that need another lab (`lab:`) run on a lab of their own, after the others; within a
    # lab, drills with the same spec overrides run together: the agents restart once per variant
    books = sorted(load_all(collect(playbooks, run_all, directory)), key=lambda pb: (bool(pb.spec), repr(pb.spec)))
    groups: dict[tuple, list] = {}
    for pb in books:
        groups.setdefault(pb.lab, []).append(pb)
    targets = [(make_target(target_kind, state_dir, prefix, config, vagrant_dir, keep, dict(setup)), group)
               for setup, group in sorted(groups.items(), key=lambda kv: len(kv[0]))]
    for target, group in targets:
        for pb in group:
            check_against(pb, target.hosts(), set(target.roles()))
    out = Path(out_dir)
    reports = []
    for target, group in targets:
        runnable = []
        for pb in group:  # what the target cannot run is said, not run (and neither passed nor failed)
            cannot_run = getattr(target, "cannot_run", None)  # (duck-typed targets may lack it)
            why = cannot_run(pb) if cannot_run is not None else None
            if why is None:
                runnable.append(pb)
                continue
            rep = DrillReport(pb.source, pb.name, target.name, False, 0.0, [], not_applicable=why)
            reports.append(rep)
            if not as_json:
                _print_report(rep)
        if not runnable:
            continue
        try:
            target.open()
            for pb in runnable:
                rep = run_playbook(pb, target, out)
                reports.append(rep)
                out.mkdir(parents=True, exist_ok=True)
                if not rep.passed and hasattr(target, "collect_logs"):
                    rep.logs = str(target.collect_logs(out / f"{pb.name}-logs"))
                (out / f"{pb.name}.json").write_text(json.dumps(rep.to_dict(), indent=2, default=str))
                if not as_json:
                    _print_report(rep)
        finally:
            target.close()
    if as_json:
        if run_all or len(reports) > 1:
            click.echo(json.dumps({"drills": [r.to_dict() for r in reports]}, indent=2, default=str))
        else:
            click.echo(json.dumps(reports[0].to_dict(), indent=2, default=str))
    ran = [r for r in reports if r.not_applicable is None]
    if not all(r.passed for r in ran):
        raise click.exceptions.Exit(1)
    if not ran:
        click.echo(f"drill run: the {target_kind} target cannot run any of these playbooks (see above)", err=True)
        raise click.exceptions.Exit(2)


@drill.command("check")
@click.argument("playbooks", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--all", "run_all", is_flag=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None)
def check_cmd(playbooks: tuple[str, ...], run_all: bool, directory: str | None) -> None:
    """Read and check playbooks against the lab spec without running anything."""
    from .labtarget import LabTarget
    from .playbook import check_against

    books = load_all(collect(playbooks, run_all, directory))
    t = LabTarget(DEFAULT_STATE_DIR, DEFAULT_PREFIX)
    for pb in books:
        check_against(pb, t.hosts(), set(t.roles()))
        click.echo(f"{pb.source}: ok ({len(pb.steps)} steps, {len(pb.expect)} expectations)")
