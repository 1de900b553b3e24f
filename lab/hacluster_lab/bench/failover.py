"""`hacluster bench failover`: in the namespace lab, fault the store-role holder N times and
measure, from the fault: VIP configured on the new holder (`to_vip_s`), the router's neighbour
entry showing the new MAC (`to_arp_s`), and a client in the client namespace reading an SMTP 220
banner through the VIP from the new holder's Postfix (`to_smtp_s`); plus the invariant monitor's
dual-holder samples.

`--vs keepalived` runs the same trials on a second lab built from the same spec without agents:
keepalived (VRRP defaults, advert_int 1; `--keepalived-advert 0.1`: VRRPv3 tuned for speed)
manages the store VIP on store1/store2 and both stores
run Postfix listening on all addresses, as keepalived users do. Its kill-agent fault is SIGKILL of
keepalived: the kernel keeps the VIP and keeps answering ARP, so the monitor sees two holders.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import click

from hacluster.config_path import config_option
from hacluster.errors import UserError
from ..lab.demo import SmtpWaiter, store_holder
from ..lab.lab import Lab
from ..lab.monitor import Snapshot
from ..lab.netns import run as ns_run
from ..lab.state import LabOptions, now_stamp
from .election import summary
from .keepalived import Keepalived, check_advert

FAULTS = ("power-off", "kill-agent")
SYSTEMS = ("hacluster", "keepalived")
#: the targets of issue 3 on the default profile
TARGET_SMTP_P50_S = 1.0
TARGET_SMTP_MAX_S = 2.0
TARGET_RATIO = 0.4


@dataclass
class FirstSeen:
    """Per trial, from the monitor's snapshots: the first sample in which a host other than the
    faulted one holds the VIP, and the first in which the router's neighbour entry shows that
    host's MAC. Works with two holders at once too (keepalived after kill -9), where the
    monitor's own move records stay silent."""

    vip: str
    old: str
    t_vip: float | None = None
    to: str | None = None
    mac: str | None = None
    t_arp: float | None = None

    def observe(self, snap: Snapshot) -> None:
        holders = snap.holders.get(self.vip, {})
        if self.t_vip is None:
            new = sorted(h for h in holders if h != self.old)
            if not new:
                return
            self.t_vip, self.to, self.mac = snap.t, new[0], holders[new[0]]
        if self.t_arp is None and self.mac is not None and snap.neighbour.get(self.vip) == self.mac:
            self.t_arp = snap.t


def ratio(ours: dict[str, float], theirs: dict[str, float]) -> float | None:
    """ours/theirs of two summaries' p50 (None if either is missing)."""
    a, b = ours.get("p50"), theirs.get("p50")
    return round(a / b, 3) if a is not None and b else None


def targets(res: dict[str, Any]) -> dict[str, bool | None]:
    """Which of issue 3's targets the result meets (None: not measured)."""
    smtp = res.get("hacluster", {}).get("to_smtp_s", {})
    r = res.get("ratio_smtp_p50")
    return {
        "to_smtp_p50_le_1s": smtp["p50"] <= TARGET_SMTP_P50_S if smtp else None,
        "to_smtp_max_le_2s": smtp["max"] <= TARGET_SMTP_MAX_S if smtp else None,
        "ratio_smtp_p50_le_0.4": r <= TARGET_RATIO if r is not None else None,
        "hacluster_dual_holder_samples_0": res.get("hacluster", {}).get("dual_holder_samples") == 0,
    }


@dataclass
class System:
    """How one contender is faulted and brought back; the trial loop is shared."""

    name: str
    lab: Lab
    fault: Callable[[str, str], float]  # (node, fault) -> CLOCK_MONOTONIC of the fault
    restore: Callable[[str, str], None]
    ready: Callable[[], None]  # both stores ready for the next trial (standby's MTA up)
    settle_s: float
    notes: list[str] = field(default_factory=list)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise click.ClickException(f"bench failover: {what} within {timeout:g}s")
        time.sleep(0.05)


def _stores(lab: Lab) -> list[str]:
    return [h.name for h in lab.plan.of_kind("store")]


def _mtas_up(lab: Lab) -> bool:
    off = lab.powered_off()
    return all(lab.mta(s).master_pid() is not None for s in _stores(lab) if s not in off)


def _both(first: Callable[[Snapshot], None], then: Callable[[Snapshot], None]) -> Callable[[Snapshot], None]:
    """One observer feeding every snapshot to two: the monitor's tracker, then this trial's FirstSeen."""
    def observe(snap: Snapshot) -> None:
        first(snap)
        then(snap)
    return observe


def _store_moved(lab: Lab, old: str) -> bool:
    """Some node other than `old` holds the store role."""
    return any(h != old for h in (lab.status()["roles"].get("store") or []))


def _since(t: float | None, t0: float) -> str:
    return f"{t - t0:.3f}s" if t is not None else "-"


def run_trials(sysm: System, runs: int, fault: str, progress: bool) -> dict[str, Any]:
    lab = sysm.lab
    vip = str(lab.spec.roles["store"].vips[0].ip)
    domain = lab.plan.domain
    to_vip: list[float] = []
    to_arp: list[float] = []
    to_smtp: list[float] = []
    dual = 0
    unplanned = 0
    for i in range(runs):
        for _ in range(5):
            sysm.ready()
            holder = store_holder(lab)
            time.sleep(sysm.settle_s)  # a few renewals/adverts seen; random phase from timing noise
            if store_holder(lab) == holder:
                break
            unplanned += 1  # the VIP moved without a fault (an overloaded holder lost its lease)
        else:
            raise click.ClickException(f"{sysm.name}: the VIP keeps moving without a fault")
        waiter = SmtpWaiter(lab, vip, avoid=f"{holder}.{domain}")
        seen = FirstSeen(vip, holder)
        mon = lab.monitor(duration_s=60)
        mon.tracker.observe = _both(mon.tracker.observe, seen.observe)
        mon.start()
        try:
            waiter.go()
            t0 = sysm.fault(holder, fault)
            _wait(partial(_store_moved, lab, holder), 30,
                  f"{sysm.name} run {i + 1}: no new holder after {fault} of {holder}")
            t_smtp = waiter.result()
            time.sleep(0.3)
        finally:
            rep = mon.stop()
        dual += rep.dual_holder_samples
        if seen.t_vip is not None:
            to_vip.append(seen.t_vip - t0)
        if seen.t_arp is not None:
            to_arp.append(seen.t_arp - t0)
        if t_smtp is not None:
            to_smtp.append(t_smtp - t0)
        if progress:
            click.echo(f"{sysm.name} run {i + 1}/{runs}: {fault} {holder} -> {seen.to}: vip {_since(seen.t_vip, t0)} "
                       f"arp {_since(seen.t_arp, t0)} smtp {_since(t_smtp, t0)} dual {rep.dual_holder_samples}",
                       err=True)
        sysm.restore(holder, fault)
    return {"runs": runs, "fault": fault, "to_vip_s": summary(to_vip), "to_arp_s": summary(to_arp),
            "to_smtp_s": summary(to_smtp), "to_smtp_all_s": [round(x, 3) for x in to_smtp],
            "to_vip_all_s": [round(x, 3) for x in to_vip], "dual_holder_samples": dual,
            "unplanned_moves": unplanned, **({"notes": sysm.notes} if sysm.notes else {})}


# --------------------------------------------------------------------------- hacluster


def agent_deciding(log_text: str, node: str, role: str = "store") -> bool:
    """True once an agent's log (from its restart on) shows a candidate's verdict: it runs, is
    connected and watches the lease, so the next trial's takeover is not its startup."""
    return f"{node} {role}: wait (" in log_text


def hacluster_system(lab: Lab) -> System:
    restarted: dict[str, int] = {}  # node -> agent log offset at its restart

    def fault(node: str, kind: str) -> float:
        return lab.fault(node, kind)["t_mono"]

    def restore(node: str, kind: str) -> None:
        log = lab.paths.agent_log(node)
        restarted[node] = log.stat().st_size if log.exists() else 0
        if kind == "power-off":
            lab.fault(node, "power-on")
        else:
            lab.start_agent(node)

    def deciding(node: str) -> bool:
        try:
            with open(lab.paths.agent_log(node), errors="replace") as f:
                f.seek(restarted[node])
                return agent_deciding(f.read(), node)
        except OSError:
            return False

    def ready() -> None:
        _wait(lambda: _mtas_up(lab), 30, "the stores' Postfix (run_on_standby) not up")
        for node in list(restarted):
            _wait(partial(deciding, node), 30, f"the restarted agent on {node} not deciding")
            del restarted[node]

    return System("hacluster", lab, fault, restore, ready, lab.spec.timing.lease_s + 0.5)


# --------------------------------------------------------------------------- keepalived


def keepalived_system(lab: Lab, advert_int: float = 1.0) -> tuple[System, Keepalived]:
    stores = _stores(lab)
    vip = lab.spec.roles["store"].vips[0]
    iface = vip.interface
    ka = Keepalived(lab.paths.root / "keepalived", {s: lab.ns(s) for s in stores}, f"{vip.ip}/{vip.prefixlen}", iface,
                    advert_int)
    prio = {s: lab.spec.nodes[s].priority for s in stores}

    def start(node: str) -> None:
        rc = lab.start_mta(node)
        if int(rc) != 0:
            raise click.ClickException(f"postfix on {node} did not start ({rc.name})")
        ka.start(node, prio.get(node, 100))

    def fault(node: str, kind: str) -> float:
        if kind == "power-off":
            return lab.fault(node, "power-off")["t_mono"]
        t0 = now_stamp()["t_mono"]
        ka.kill(node)  # kill -9 of keepalived (parent and VRRP child): the kernel keeps the VIP
        return t0

    def restore(node: str, kind: str) -> None:
        ka.kill(node)  # reap what power-off killed
        if kind == "power-off":
            lab.fault(node, "power-on")
        else:
            # what a keepalived operator must do by hand: the dead node still holds the VIP
            ns_run(["ip", "-n", lab.ns(node), "addr", "del", f"{vip.ip}/{vip.prefixlen}", "dev", iface], check=False)
        start(node)

    def ready() -> None:
        _wait(lambda: _mtas_up(lab), 30, "the stores' Postfix not up")
        _wait(lambda: len(lab.status()["roles"].get("store") or []) == 1, 30, "keepalived: no single VIP holder")

    for s in stores:
        start(s)
    vrrp = f"VRRPv3, advert_int {advert_int:g}" if advert_int < 1 else f"VRRP defaults, advert_int {advert_int:g}"
    # settle: a few adverts seen before the next fault (2.5 s at keepalived's default of 1 s)
    sysm = System("keepalived", lab, fault, restore, ready, max(0.5, 2.5 * advert_int),
                  [f"{vrrp}, nopreempt; both stores run Postfix on all addresses",
                   "kill-agent = SIGKILL of keepalived (the stale VIP is removed by hand before restarting it)"])
    return sysm, ka


# --------------------------------------------------------------------------- driver


def run_bench(runs: int = 20, fault: str = "power-off", vs: str | None = None,
              state_dir: str = "/run/hacluster-lab-bench", prefix: str = "hcb-", progress: bool = False,
              spec: str | Path | None = None, keepalived_advert: float = 1.0) -> dict[str, Any]:
    """The benchmark as a Python API (the CLI and tests call this); returns the JSON result."""
    if fault not in FAULTS:
        raise click.BadParameter(f"fault must be one of {', '.join(FAULTS)}")
    res: dict[str, Any] = {"bench": "failover", "fault": fault, "runs": runs}
    lab = Lab(spec, state_dir, prefix)
    t = lab.spec.timing
    res["timing"] = {"lease_s": t.lease_s, "loop_s": t.loop_s, "margin_s": t.margin_s, "probe_lead_s": round(t.probe_lead_s, 3)}
    try:
        lab.up()
        res["hacluster"] = run_trials(hacluster_system(lab), runs, fault, progress)
    finally:
        lab.down()
    if vs == "keepalived":
        lab = Lab(spec, state_dir, prefix, LabOptions(agents=False))
        ka: Keepalived | None = None
        try:
            lab.up()
            sysm, ka = keepalived_system(lab, keepalived_advert)
            res["keepalived"] = run_trials(sysm, runs, fault, progress)
            res["keepalived"]["advert_int"] = keepalived_advert
            res["keepalived"]["vrrp_version"] = 3 if keepalived_advert < 1 else 2
        finally:
            if ka is not None:
                ka.stop()
            lab.down()
        res["ratio_smtp_p50"] = ratio(res["hacluster"]["to_smtp_s"], res["keepalived"]["to_smtp_s"])
    res["targets"] = targets(res)
    return res


@click.command("failover")
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1, 100))
@click.option("--fault", default="power-off", show_default=True, type=click.Choice(list(FAULTS)))
@click.option("--vs", "vs", default=None, type=click.Choice(["keepalived"]),
              help="Also run the trials with keepalived managing the same VIP in the same lab.")
@click.option("--keepalived-advert", "keepalived_advert", default=1.0, show_default=True,
              type=click.FloatRange(0.01, 255),
              help="keepalived's advert_int in seconds (below 1 s: VRRPv3, as an operator tunes it for speed).")
@config_option(lab=True, alias="--spec")
@click.option("--state-dir", default="/run/hacluster-lab-bench", show_default=True)
@click.option("--prefix", default="hcb-", show_default=True, help="Namespace prefix of the bench's labs.")
@click.option("--json", "as_json", is_flag=True)
def failover_cmd(runs: int, fault: str, vs: str | None, keepalived_advert: float, config: Path | None,
                 state_dir: str, prefix: str, as_json: bool) -> None:
    """Fault the store holder RUNS times in the lab; VIP, ARP and SMTP times; dual holders.

    Exit 1 if the invariant monitor saw two hosts holding the VIP under hacluster."""
    try:
        check_advert(keepalived_advert)
    except ValueError as err:
        raise UserError(f"--keepalived-advert: {err}") from None
    res = run_bench(runs, fault, vs, state_dir, prefix, progress=not as_json, spec=config,
                    keepalived_advert=keepalived_advert)
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        for name in SYSTEMS:
            h = res.get(name)
            if h:
                click.echo(f"{name}: {fault} x{runs}: to_vip {h['to_vip_s']} to_arp {h['to_arp_s']} "
                           f"to_smtp {h['to_smtp_s']} dual_holder_samples {h['dual_holder_samples']} "
                           f"unplanned_moves {h['unplanned_moves']}")
        if "ratio_smtp_p50" in res:
            click.echo(f"ratio_smtp_p50 (hacluster/keepalived at advert_int {keepalived_advert:g}s): "
                       f"{res['ratio_smtp_p50']}")
        click.echo(f"targets: {res['targets']}")
    if res["hacluster"]["dual_holder_samples"]:
        raise click.exceptions.Exit(1)
