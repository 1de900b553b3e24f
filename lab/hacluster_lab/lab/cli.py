"""`hacluster lab up|down|status|exec|fault|monitor`: a thin CLI over hacluster_lab.lab.Lab."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from hacluster.config_path import config_option
from .lab import FAULTS, Lab
from .netns import LabError
from .state import DEFAULT_STATE_DIR, LabOptions
from .topology import DEFAULT_PREFIX

state_opt = click.option("--state-dir", type=click.Path(file_okay=False), default=str(DEFAULT_STATE_DIR),
                         show_default=True, envvar="HACLUSTER_LAB_STATE", help="Where the lab keeps its files.")


@click.group("lab")
def lab() -> None:
    """The network-namespace lab: real Postfix, dnsmasq, ZooKeeper and agents, with faults.

    `lab up` builds the embedded lab spec (hacluster/examples/lab.yml) unless -c FILE;
    $HACLUSTER_CONFIG is not read."""


@lab.command("up")
@config_option(lab=True, alias="--spec")
@click.option("--no-agents", is_flag=True, help="Don't start node agents (stores' Postfix and the VIP stay down).")
@click.option("--prefix", default=DEFAULT_PREFIX, show_default=True, envvar="HACLUSTER_LAB_PREFIX",
              help="Namespace name prefix.")
@state_opt
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def up_cmd(config: Path | None, no_agents: bool, prefix: str, state_dir: str, as_json: bool) -> None:
    """Build the lab from a cluster spec (default: the embedded lab spec, hacluster/examples/lab.yml)."""
    lab_ = Lab(config, state_dir, prefix, LabOptions(agents=not no_agents))
    report = lab_.up()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"lab up in {report.seconds:.1f}s: {len(report.namespaces)} namespaces ({prefix}*), "
               f"ZooKeeper leader zk{report.zk_leader}, state in {state_dir}")
    click.echo("phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in report.phases.items()))
    for node, state in report.agents.items():
        click.echo(f"agent {node}: {state}")
    from .demo import next_steps

    click.echo("try next:")
    for line in next_steps(lab_):
        click.echo(f"  {line}")


@lab.command("down")
@click.option("--prefix", default=None, envvar="HACLUSTER_LAB_PREFIX",
              help="Namespace prefix (default: from the state dir, else hcl-).")
@state_opt
@click.option("--json", "as_json", is_flag=True)
def down_cmd(prefix: str | None, state_dir: str, as_json: bool) -> None:
    """Remove every namespace, process, file and main.cf change of the lab (idempotent)."""
    report = Lab.teardown(state_dir, prefix)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"lab down in {report.seconds:.1f}s: {len(report.namespaces)} namespaces removed, "
               f"{report.processes_killed} processes killed, main.cf {'restored' if report.maincf_restored else 'unchanged'}")


@lab.command("status")
@state_opt
@click.option("--json", "as_json", is_flag=True)
def status_cmd(state_dir: str, as_json: bool) -> None:
    """Namespaces, addresses, processes and VIP holders."""
    st = Lab.attach(state_dir).status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"lab {st['status']} ({st['state_dir']}, prefix {st['prefix']}), {st['faults']} faults logged")
    for name, h in st["hosts"].items():
        if not h["exists"]:
            click.echo(f"  {name:9} missing namespace {h['ns']}")
            continue
        flags = []
        if h.get("powered_off"):
            flags.append("POWERED-OFF")
        if h.get("agent_frozen"):
            flags.append("agent-frozen")
        flags += [f"nft:{f.replace(' ', '/')}" for f in h.get("filters", [])]
        addrs = " ".join(a for ln in h["links"].values() for a in ln["addresses"] if not a.startswith("fe80:"))
        svc = " ".join(f"{k}={'up' if v else 'down'}" for k, v in h.get("services", {}).items())
        click.echo(f"  {name:9} {addrs:48} {svc} {' '.join(flags)}".rstrip())
    for role, holders in st["roles"].items():
        click.echo(f"role {role}: VIP held by {', '.join(holders) or 'nobody'}"
                   + ("  << DUAL HOLDER" if len(holders) > 1 else ""))


@lab.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@state_opt
@click.argument("node")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(state_dir: str, node: str, cmd: tuple[str, ...]) -> None:
    """Run CMD in NODE's namespace; its exit code is ours. Use `--` before CMD's options."""
    lab_ = Lab.attach(state_dir)
    ns = lab_.ns(node)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise click.UsageError("no command given")
    sys.stdout.flush()
    sys.stderr.flush()
    # become `ip netns exec`: exit code, signals and the terminal pass straight through
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])


@lab.command("fault")
@state_opt
@click.argument("node")
@click.argument("kind", required=False)
@click.argument("peer", required=False)
@click.option("--json", "as_json", is_flag=True)
def fault_cmd(state_dir: str, node: str, kind: str | None, peer: str | None, as_json: bool) -> None:
    """Inject a fault: NODE kill-agent|kill-mta|freeze|thaw|power-off|power-on|isolate|restart-agent|
    raid-degraded|raid-repair,
    `partition A B` (A, B: host or comma list), or `heal`."""
    lab_ = Lab.attach(state_dir)
    if node == "partition":
        if kind is None or peer is None:
            raise click.UsageError("usage: hacluster lab fault partition A B")
        rec = lab_.partition(kind, peer)
    elif node == "heal":
        if kind is not None:
            raise click.UsageError("usage: hacluster lab fault heal")
        rec = lab_.heal()
    else:
        if kind is None:
            raise click.UsageError("usage: hacluster lab fault NODE KIND (or `partition A B`, `heal`)")
        if kind not in FAULTS:
            raise click.UsageError(f"unknown fault {kind!r} (known: {', '.join(FAULTS)}, or `partition A B`, `heal`)")
        rec = lab_.fault(node, kind)
    if as_json:
        click.echo(json.dumps(rec))
    else:
        click.echo(f"{rec['fault']} {rec['node']}{' ' + rec['peer'] if rec.get('peer') else ''} "
                   f"at t_mono={rec['t_mono']:.6f} ({time.strftime('%H:%M:%S', time.localtime(rec['t_wall']))})")


@lab.command("faults")
@state_opt
def faults_cmd(state_dir: str) -> None:
    """Print the fault log (JSON lines)."""
    for rec in Lab.attach(state_dir).faults():
        click.echo(json.dumps(rec, sort_keys=True))


@lab.command("monitor")
@state_opt
@click.option("--duration", type=float, default=10.0, show_default=True, help="Seconds to sample.")
@click.option("--json", "as_json", is_flag=True)
def monitor_cmd(state_dir: str, duration: float, as_json: bool) -> None:
    """Sample VIP holders and the router's neighbour table; exit 1 on any dual holder."""
    mon = Lab.attach(state_dir).monitor(duration_s=duration)
    mon.start()
    mon.wait()
    rep = mon.stop()
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
    else:
        click.echo(f"{rep.samples} samples over {rep.seconds:.1f}s (max gap {rep.max_gap_s * 1000:.1f} ms): "
                   f"{rep.dual_holder_samples} dual-holder samples, {len(rep.moves)} VIP moves")
        for m in rep.moves:
            arp = f"{m['arp_s'] * 1000:.0f} ms" if m.get("arp_s") is not None else "not seen"
            click.echo(f"  {m['vip']}: {m['from'] or '-'} -> {m['to']}, ARP converged {arp}")
    if rep.dual_holder_samples:
        raise LabError(f"invariant broken: {rep.dual_holder_samples} samples with two holders of one VIP", exit_code=1)


@lab.command("zk")
@state_opt
@click.option("--json", "as_json", is_flag=True)
def zk_cmd(state_dir: str, as_json: bool) -> None:
    """Each ZooKeeper server's mode (leader/follower/down), asked inside its namespace."""
    modes = Lab.attach(state_dir).zk_modes()
    if as_json:
        click.echo(json.dumps(modes))
        return
    for name, mode in modes.items():
        click.echo(f"{name}: {mode or 'down (not serving)'}")


@lab.command("mail-path")
@click.option("--inventory", "inventory", type=click.Path(dir_okay=False, exists=True), required=True,
              help="The deploy inventory of the machines (e.g. vagrant/inventory.yml).")
@click.option("--dry-run", is_flag=True, help="Print what each machine would get; change nothing.")
def mail_path_cmd(inventory: str, dry_run: bool) -> None:
    """Configure the mail path on the Vagrant lab's machines over SSH (postconf and files under
    /etc/postfix, rendered like the namespace lab's; Dovecot on the stores; dnsmasq with the MX
    records on the client)."""
    from .machine_mail import configure

    machines, results = configure(inventory, dry_run)
    for m in machines:
        if dry_run:
            click.echo(f"# {m.host} ({m.kind})\n{m.script()}")
        else:
            click.echo(f"mail-path {m.host} ({m.kind}): {results[m.host]}")
    if any(r != "ok" for r in results.values()):
        sys.exit(1)
