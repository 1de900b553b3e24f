"""`hacluster bench false-failover`: how often a busy but healthy cluster moves its role anyway.

The namespace lab with no fault at all, for `--minutes`, under one bounded load on the host that
holds the store VIP when the window opens and on the ZooKeeper servers (hacluster_lab.bench.loads:
`cpu`, `io`, `zk-gc`). The invariant monitor samples the store VIP every 5 ms; every change of
its holder is an **unplanned move** and every stretch with no holder a **VIP gap**
(hacluster_lab.bench.moves). Then the same window, the same load, on a second lab built from the same
spec without agents, where keepalived manages the VIP (hacluster_lab.bench.keepalived, the peer of
`bench failover --vs keepalived`) at the advert interval that matches the profile: 1 s (VRRP
defaults) against `default`, 0.1 s (VRRPv3) against `fast`.

A failover that happens for nothing is an outage too: a short lease buys a quick failover at the
price of moves like these, and this bench puts a number on that price (docs/vip.md, the table).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any, Callable

import click

from hacluster.errors import UserError
from ..lab.demo import store_holder
from ..lab.lab import Lab
from ..lab.monitor import Snapshot
from ..lab.netns import LabError
from ..lab.state import LabOptions
from hacluster.spec import default_spec_text, parse_spec
from hacluster.timing import PROFILES
from .failover import _both, keepalived_system
from .keepalived import Keepalived, check_advert
from .loads import LOADS, Load, LoadParams
from .moves import count_moves

log = logging.getLogger("hacluster_lab.bench.falsefailover")

#: keepalived's advert interval that matches each profile (issue 19): as shipped against the
#: default profile, tuned for speed (VRRPv3, 0.1 s) against fast
MATCHING_ADVERT_S = {"default": 1.0, "fast": 0.1, "relaxed": 1.0}
SETTLE_S = 3.0  # a settled lab before the window: a few renewals or adverts, the standby watching
TAIL_S = 2.0  # after the load: a move the last instant of load caused still shows

#: a hook the suite's test uses to inject a move on purpose: (system, lab, holder) at `at_s`
Inject = Callable[[str, Lab, str], None]


def with_profile(spec_text: str, profile: str) -> str:
    """`spec_text` with `timing.profile` set (explicit timing keys beside it are dropped, so the
    profile is what runs)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    root = yaml.load(spec_text)
    if not hasattr(root, "get"):
        raise ValueError("the spec is not a YAML mapping")
    timing = root.get("timing")
    if not hasattr(timing, "get"):
        root["timing"] = timing = {}
    for key in list(timing):
        if key != "heartbeat_s":
            del timing[key]
    timing["profile"] = profile
    out = StringIO()
    yaml.dump(root, out)
    return out.getvalue()


@dataclass
class Window:
    """One observed window: the VIP's holder changes (from the monitor's samples) and the
    machine's load average every few seconds."""

    vip: str
    changes: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    loadavg: list[float] = field(default_factory=list)

    def observe(self, snap: Snapshot) -> None:
        holders = tuple(sorted(snap.holders.get(self.vip, {})))
        if not self.changes or self.changes[-1][1] != holders:
            self.changes.append((snap.t, holders))


_WHY = re.compile(r" (store): (demoted from term \d+ \((?P<why>.*)\)|released term \d+ \((?P<rel>[^)]*)\))")


def log_offsets(lab: Lab) -> dict[str, int]:
    """Each store agent's log size now: what it writes from here on belongs to the window."""
    out = {}
    for h in lab.plan.of_kind("store"):
        p = lab.paths.agent_log(h.name)
        out[h.name] = p.stat().st_size if p.exists() else 0
    return out


def why_moved(lab: Lab, offsets: dict[str, int]) -> list[dict[str, str]]:
    """The store agents' own words for every demotion and release since `offsets` (the lease
    expired with no acknowledged renewal, a failed health check, ...): what item 3 acts on."""
    out: list[dict[str, str]] = []
    for node, off in offsets.items():
        try:
            with open(lab.paths.agent_log(node), errors="replace") as f:
                f.seek(off)
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            m = _WHY.search(line)
            if m:
                what = "demoted" if m.group("why") is not None else "released"
                out.append({"node": node, "what": what, "why": (m.group("why") or m.group("rel") or "")[:160],
                            "at": line[:23]})
    return out[:50]


def observe_window(lab: Lab, name: str, seconds: float, load: Load, progress: bool,
                   inject: Inject | None = None, inject_at_s: float = 0.0, keep_logs: Path | None = None) -> dict[str, Any]:
    """Run `load` for `seconds` on a settled lab and count what the VIP did meanwhile."""
    vip = str(lab.spec.roles["store"].vips[0].ip)
    win = Window(vip)
    mon = lab.monitor(duration_s=seconds + TAIL_S + 60)
    mon.tracker.observe = _both(mon.tracker.observe, win.observe)
    mon.start()
    injected = False
    offsets = log_offsets(lab)
    try:
        t0 = time.monotonic()
        load.start()
        end = t0 + seconds
        next_avg = t0
        while (now := time.monotonic()) < end:
            if now >= next_avg:
                win.loadavg.append(os.getloadavg()[0])
                next_avg = now + 5.0
                if load.kind == "cpu":
                    load.pin_holder()  # processes started since (an agent's check, a restarted guard)
            if inject is not None and not injected and now - t0 >= inject_at_s:
                injected = True
                inject(name, lab, load.host)
            time.sleep(min(0.2, max(0.0, end - now)))
        t1 = time.monotonic()
        load_report = load.stop()
        win.loadavg.append(os.getloadavg()[0])
        time.sleep(TAIL_S)
    finally:
        load.stop()
        rep = mon.stop()
    c = count_moves(win.changes, t0, t1 + TAIL_S)
    out = {
        "unplanned_moves": c.unplanned_moves,
        "vip_gap_s_total": c.vip_gap_s_total,
        "vip_gaps": len(c.gaps),
        "vip_gap_s_max": c.vip_gap_s_max,
        "dual_holder_s": c.dual_holder_s,
        "dual_holder_samples": rep.dual_holder_samples,
        "moves": [m.to_dict(t0) for m in c.moves[:50]],
        "holder_at_start": load.host,
        "holder_at_end": c.last_holder,
        "window_s": round(t1 - t0, 1),
        "monitor_max_gap_s": round(rep.max_gap_s, 4),
        "loadavg_1m": {"start": round(win.loadavg[0], 1), "max": round(max(win.loadavg), 1),
                       "mean": round(sum(win.loadavg) / len(win.loadavg), 1)},
        "load": load_report,
        **({"injected": True} if injected else {}),
    }
    if lab.options.agents:
        out["agent_says"] = why_moved(lab, offsets)
    if progress:
        click.echo(f"{name}: {out['unplanned_moves']} unplanned moves, VIP gaps {out['vip_gap_s_total']}s "
                   f"({out['vip_gaps']}), load average {out['loadavg_1m']}", err=True)
    return out


def _up(lab: Lab, attempts: int = 2) -> None:
    """`lab.up()`, once more after a failure: on a saturated machine a Postfix start can run past
    its 20 s (`up` tears down what it built before it raises)."""
    for i in range(attempts):
        try:
            lab.up()
            return
        except LabError as err:
            if i + 1 == attempts:
                raise
            log.warning("false-failover: lab up failed (%s); once more", err)
            time.sleep(5)


def _settled(lab: Lab, what: str, attempts: int = 5) -> str:
    """The store holder once it kept the VIP for SETTLE_S (a few tries: on a saturated machine the
    fast profile can move it before any load starts, which the window would then not count)."""
    for _ in range(attempts):
        holder = store_holder(lab, 60)
        time.sleep(SETTLE_S)
        if store_holder(lab, 60) == holder:
            return holder
    raise click.ClickException(f"false-failover: the {what} lab kept moving its VIP before the window opened "
                               f"({attempts} tries of {SETTLE_S:g}s)")


def run_bench(profile: str = "default", load: str = "cpu", minutes: float = 10.0, keepalived: bool = True,
              hacluster: bool = True,
              keepalived_advert: float | None = None, state_dir: str = "/run/hacluster-lab-bff", prefix: str = "hff-",
              progress: bool = False, params: LoadParams | None = None,
              inject: Inject | None = None, inject_at_s: float = 0.0, keep_logs: Path | None = None) -> dict[str, Any]:
    """The benchmark as a Python API (the CLI and the lab test call this); the JSON result."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    if load not in LOADS:
        raise ValueError(f"unknown load {load!r}")
    advert = keepalived_advert if keepalived_advert is not None else MATCHING_ADVERT_S[profile]
    check_advert(advert)
    params = params or LoadParams()
    seconds = minutes * 60
    text = with_profile(default_spec_text(), profile)
    spec = parse_spec(text, f"<lab spec, profile {profile}>")
    t = spec.timing
    res: dict[str, Any] = {"bench": "false-failover", "profile": profile, "load": load, "minutes": minutes,
                           "timing": {"lease_s": t.lease_s, "loop_s": t.loop_s, "request_timeout_s": t.request_timeout_s,
                                      "margin_s": t.margin_s, "renew_s": round(t.renew_s, 3)},
                           "load_params": params.describe(load), "cpus_online": os.cpu_count()}
    if hacluster:
        _hacluster_window(res, spec, text, seconds, state_dir, prefix, progress, params, inject, inject_at_s, keep_logs)
    if keepalived:
        _keepalived_window(res, spec, text, seconds, advert, state_dir, prefix, progress, params, inject, inject_at_s,
                           keep_logs)
    return res


def _hacluster_window(res: dict[str, Any], spec: Any, text: str, seconds: float, state_dir: str, prefix: str,
                      progress: bool, params: LoadParams, inject: Inject | None, inject_at_s: float,
                      keep_logs: Path | None) -> None:
    load = res["load"]
    lab = Lab(spec, state_dir, prefix, spec_text=text)
    try:
        _up(lab)
        holder = _settled(lab, "hacluster")
        if progress:
            click.echo(f"hacluster ({res['profile']}): {load} load on {holder} for {seconds:g}s", err=True)
        res["hacluster"] = observe_window(lab, "hacluster", seconds, Load(load, lab, holder, seconds + 5, params),
                                          progress, inject, inject_at_s)
    finally:
        if keep_logs is not None:
            _keep_logs(lab, keep_logs / "hacluster")
        lab.down()


def _keepalived_window(res: dict[str, Any], spec: Any, text: str, seconds: float, advert: float, state_dir: str,
                       prefix: str, progress: bool, params: LoadParams, inject: Inject | None, inject_at_s: float,
                       keep_logs: Path | None) -> None:
    load = res["load"]
    lab = Lab(spec, state_dir, prefix, LabOptions(agents=False), spec_text=text)
    ka: Keepalived | None = None
    try:
        _up(lab)
        sysm, ka = keepalived_system(lab, advert)
        sysm.ready()
        holder = _settled(lab, "keepalived")
        if progress:
            click.echo(f"keepalived (advert_int {advert:g}s): {load} load on {holder} for {seconds:g}s", err=True)
        res["keepalived"] = {"advert_int": advert, "vrrp_version": 3 if advert < 1 else 2,
                             **observe_window(lab, "keepalived", seconds, Load(load, lab, holder, seconds + 5, params),
                                              progress, inject, inject_at_s)}
    finally:
        if ka is not None:
            ka.stop()
        if keep_logs is not None:
            _keep_logs(lab, keep_logs / "keepalived")
        lab.down()


def _keep_logs(lab: Lab, dest: Path) -> None:
    """The store agents' and keepalived's logs, before the lab and its state directory go."""
    dest.mkdir(parents=True, exist_ok=True)
    for h in lab.plan.of_kind("store"):
        for src in (lab.paths.agent_log(h.name), lab.paths.root / "keepalived" / f"keepalived-{h.name}.log"):
            if src.exists():
                shutil.copy(src, dest / f"{h.name}-{src.name}")


@click.command("false-failover")
@click.option("--profile", default="default", show_default=True, type=click.Choice(["default", "fast"]))
@click.option("--load", "load", required=True, type=click.Choice(list(LOADS)),
              help="cpu: hogs pinned with the holder's processes to one core; io: fsync-heavy writers on the "
                   "holder; zk-gc: SIGSTOP/SIGCONT of a ZooKeeper follower and the leader, a few hundred ms.")
@click.option("--minutes", default=10.0, show_default=True, type=click.FloatRange(0.05, 120),
              help="Length of each window (hacluster, then keepalived).")
@click.option("--keepalived-advert", "keepalived_advert", default=None, type=click.FloatRange(0.01, 255),
              help="keepalived's advert_int [default: 1 against the default profile, 0.1 (VRRPv3) against fast].")
@click.option("--only", "only", default=None, type=click.Choice(["hacluster", "keepalived"]),
              help="Only this contender's window (figures taken in parts; the JSON then has only its key).")
@click.option("--state-dir", default="/run/hacluster-lab-bff", show_default=True)
@click.option("--prefix", default="hff-", show_default=True, help="Namespace prefix of the bench's labs.")
@click.option("--keep-logs", type=click.Path(file_okay=False), default=None,
              help="Copy the store agents' (and keepalived's) logs here before each lab goes down.")
@click.option("--json", "as_json", is_flag=True)
def false_failover_cmd(profile: str, load: str, minutes: float, keepalived_advert: float | None, only: str | None,
                       state_dir: str, prefix: str, keep_logs: str | None, as_json: bool) -> None:
    """No fault, a bounded load for MINUTES: count unplanned role moves and VIP gaps, then the
    same with keepalived at the matching advert interval.

    Exit 1 if the invariant monitor saw two hosts holding the VIP under hacluster."""
    if keepalived_advert is not None:
        try:
            check_advert(keepalived_advert)
        except ValueError as err:
            raise UserError(f"--keepalived-advert: {err}") from None
    res = run_bench(profile, load, minutes, only != "hacluster", only != "keepalived", keepalived_advert, state_dir, prefix,
                    progress=not as_json, keep_logs=Path(keep_logs) if keep_logs else None)
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        for name in ("hacluster", "keepalived"):
            r = res.get(name)
            if r:
                click.echo(f"{name}: {load} load, {minutes:g} min: unplanned_moves {r['unplanned_moves']}, "
                           f"vip_gap_s_total {r['vip_gap_s_total']}, load average {r['loadavg_1m']}")
    if res.get("hacluster", {}).get("dual_holder_samples"):
        raise click.exceptions.Exit(1)
