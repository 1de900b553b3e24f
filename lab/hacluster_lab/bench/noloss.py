"""`hacluster bench no-loss`: the seeds' vendor test in the lab -- submit N messages (unique
Message-ID each) to the store VIP as fast as the tier accepts them, power off the store holder
mid-stream, let the peer take over, power the old holder on again, then count every message.

The spool is really used: `--spool shared` runs the store role with a `spool` resource whose
Maildir *and* Postfix queue_directory live on one spool bind-mounted on the holder only (owner
marker with the fencing token); `--spool mirrored` gives each store its own Maildir, replicated
per message by the holder to the standby, and drains a returning node's leftover queue to the
new holder (hacluster.spool.drain).

Counts (hacluster_lab.lab.mailload, docs/spool.md "What no-loss counts"): accepted (250 after DATA),
delivered_once, lost (accepted and in no store's Maildir after the old holder is back and the
queues are drained), duplicates (a Message-ID under two Maildir unique names), late (accepted,
not readable on the new holder before the old holder's power-on, readable after it), stranded
(only in a non-holder's Maildir at the end), failover_s (power-off -> first 250 after it),
vip_moved_s (power-off -> VIP configured on the new holder, polled every ~20 ms).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import click

from ..lab.demo import store_holder
from ..lab.lab import Lab
from ..lab.netns import LabError
from ..lab.mailload import MailLoad, audit, lab_stores, scan_maildirs, in_store
from ..lab.postfix import with_block_spool, with_spool
from ..lab.state import LabOptions
from hacluster.spec import default_spec_text, parse_spec
from .progress import report, say, wait_for

MODES = ("shared", "mirrored")


_say = say


def _wait(what: str, pred: Callable[[], Any], timeout_s: float, step_s: float = 0.05) -> Any:
    return wait_for("no-loss", what, pred, timeout_s, step_s)


FAULTS = ("power-off", "freeze", "kill-agent", "freeze-agent")


def lab_for(mode: str, state_dir: str | Path, prefix: str, block_mb: int = 0, fencing: bool = True) -> Lab:
    """The default lab with the store role's spool in `mode`; `block_mb` > 0: shared on a loop
    device of that size, with fence_hacluster_lab for the stores (or `fencing: self-only`)."""
    if mode not in MODES:
        raise click.BadParameter(f"spool mode {mode!r}: one of {', '.join(MODES)}")
    if block_mb and mode == "shared":
        text = with_block_spool(default_spec_text(), state_dir, fencing)
        return Lab(None, state_dir, prefix, LabOptions(spool_mode=mode, spool_block_mb=block_mb), spec_text=text)
    return Lab(None, state_dir, prefix, LabOptions(spool_mode=mode), spec_text=with_spool(default_spec_text(), mode))


def fence_events(lab: Lab, node: str, after: float) -> list[dict[str, Any]]:
    """The `fencing`/`fenced` events of `node`'s agent (its claims log, CLOCK_BOOTTIME) after `after`."""
    from hacluster.agent.claims import read_events

    return [e for e in read_events([lab.paths.claims(node)]) if e["event"] in ("fencing", "fenced") and e["t"] >= after]


def apply_fault(lab: Lab, node: str, fault: str) -> dict[str, Any]:
    """power-off; freeze = every process of the host SIGSTOPped (freeze-host); kill-agent;
    freeze-agent = the agent alone SIGSTOPped (its guard and Postfix run on: the guard must kill
    Postfix at the deadline, before the peer starts its own on the same queue)."""
    return lab.fault(node, {"power-off": "power-off", "freeze": "freeze-host", "kill-agent": "kill-agent",
                            "freeze-agent": "freeze"}[fault])


def run_noloss(lab: Lab, messages: int, size: int, connections: int = 2, cut_fraction: float = 0.4,
               progress: bool = False, wait_s: float = 300.0, rate_per_s: float | None = None,
               fault: str = "power-off", resend: bool = True) -> dict[str, Any]:
    """One run on a lab that is up. Returns the figures (see the module docstring). `resend`: the
    client sends again every message it saw no 250 for, ambiguous ones included (a real MTA does:
    the store must then suppress the second copy of one it had queued)."""
    from hacluster import clock

    vip = str(lab.spec.roles["store"].vips[0].ip)
    old = store_holder(lab)
    stores = lab_stores(lab)
    # the path works before the clock starts: one message through the VIP into the holder's Maildir
    warm = MailLoad(lab, vip, size=500, retry_s=20, run_id="warmup").send(1, timeout_s=30)
    if not (warm and warm[0].accepted):
        raise click.ClickException(f"no-loss: the store VIP does not accept mail: {warm}")
    audit(lab, warm, wait_s=30)
    _say(progress, f"holder {old}; sending {messages} x {size} B to {vip} over {connections} connections")
    load = MailLoad(lab, vip, size=size, count=messages, connections=connections, retry_s=120.0, retry_delay_s=0.1,
                    timeout_s=5.0, max_s=wait_s, rate_per_s=rate_per_s, retry_ambiguous=resend)
    spool_audit = None
    if lab.options.spool_block_mb:
        from ..lab.spool_audit import SpoolAudit

        spool_audit = SpoolAudit.for_lab(lab, lab.paths.spool_device).start()
    t_boot_cut = clock.now()
    t_start = time.monotonic()
    load.start()
    try:
        cut = max(1, int(messages * cut_fraction))
        _wait(f"{cut} accepted messages", lambda: load.accepted_count() >= cut or load.wait(0), wait_s)
        t_boot_cut = clock.now()
        rec = apply_fault(lab, old, fault)
        t_off = rec["t_mono"] + rec["duration_s"]
        _say(progress, f"{fault.upper()} {old} after {load.accepted_count()} accepted")
        new = _wait("a new store holder", lambda: _vip_on(lab, vip, exclude=old), 60, 0.02)
        t_vip = time.monotonic()
        _say(progress, f"VIP on {new} {t_vip - t_off:.3f}s after power-off")
        if not load.wait(wait_s):
            _say(progress, "load did not finish in time; stopping it")
        subs = load.stop()
    finally:
        if load._proc is not None and load._proc.poll() is None:
            load.stop()
    t_sent = time.monotonic()
    accepted_after = sorted(s.t for s in subs if s.accepted and s.t > t_off)
    failover_s = round(accepted_after[0] - t_off, 3) if accepted_after else None
    # before power-on: what the new holder has (users can read) once its own queue is drained
    pre_led = audit(lab, subs, wait_s=wait_s / 2, stores={new: stores[new]}, holder=new)
    pre = {m for m, ds in scan_maildirs({new: stores[new]}, {s.msgid for s in subs}).items()
           if any(in_store(d, new) for d in ds)}
    accepted = {s.msgid for s in subs if s.accepted}
    missing_before = sorted(accepted - pre)
    _say(progress, f"before power-on: {len(accepted & pre)}/{len(accepted)} accepted messages on {new}")
    fences = fence_events(lab, new, t_boot_cut)
    fenced = [e for e in fences if e["event"] == "fenced"]
    if fault in ("freeze", "freeze-agent"):
        try:  # a fenced host's processes are gone; unfenced ones resume here
            lab.fault(old, "thaw-host" if fault == "freeze" else "thaw")
        except LabError:
            pass  # no agent left to thaw: it was fenced
        time.sleep(2.0)  # what a thawed, unfenced host would write, it writes now
    writes = spool_audit.summary(old, fenced[0]["t"] if fenced and fenced[0]["ok"] else None) if spool_audit else None
    if spool_audit is not None:
        spool_audit.stop()
    if old in lab.powered_off():
        lab.fault(old, "power-on")
    _say(progress, f"powered {old} on again; auditing every store")
    led = audit(lab, subs, wait_s=wait_s, holder=new, settle_s=8.0, empty_queues=True)
    final = {m for m, ds in scan_maildirs(stores, accepted).items() if any(in_store(d, new) for d in ds)}
    late = sorted((accepted - pre) & final)
    out = led.to_dict()
    suspects = (led.duplicate_msgids + led.lost_msgids)[:10]
    if suspects:
        out["detail"] = explain(lab, subs, stores, suspects)
    out.update({
        "fault": fault, "fencing": parse_spec(lab.spec_text).requires_fencing("store"),
        "fence_s": fenced[0]["seconds"] if fenced else None,
        "fence_ok": fenced[0]["ok"] if fenced else None, "fenced": fenced[0]["target"] if fenced else None,
        "spool_writes": writes,
        "messages": messages, "size": size, "connections": connections,
        "holder_before": old, "holder_after": new,
        "failover_s": failover_s, "vip_moved_s": round(t_vip - t_off, 3),
        "send_s": round(t_sent - t_start, 3),
        "accepted_per_s": round(len(accepted) / max(1e-9, t_sent - t_start), 1),
        "missing_before_power_on": len(missing_before), "late": len(late),
        "late_msgids": late[:50], "pre_power_on_waited_s": pre_led.waited_s,
        "retried": sum(1 for s in subs if s.attempts > 1), "resend_ambiguous": resend,
    })
    return out


def explain(lab: Lab, subs: list, stores: dict[str, Path], msgids: list[str]) -> list[dict[str, Any]]:
    """For lost or duplicated messages: the client's record, every delivered copy, and the store
    and fallback maillog lines of every Postfix queue id that carried the message."""
    by_id = {s.msgid: s for s in subs}
    found = scan_maildirs(stores, set(msgids))
    out = []
    for m in msgids:
        lines: list[str] = []
        for h in lab.plan.of_kind("store", "relay", "fallback"):
            try:
                text = lab.paths.maillog(h.name).read_text(errors="replace").splitlines()
            except OSError:
                continue
            qids = {ln.split(": ")[1] for ln in text if m in ln and ": " in ln and len(ln.split(": ")) > 2}
            lines += [f"{h.name}: {ln}" for ln in text if any(q and q in ln for q in qids)][:40]
        sub = by_id.get(m)
        out.append({"msgid": m, "submission": sub.__dict__ if sub else None,
                    "copies": [{"store": d.store, "path": d.path, "mtime": d.mtime} for d in found.get(m, [])],
                    "maillog": lines})
    return out


def keep_store_logs(lab: Lab, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for h in lab.plan.of_kind("store"):
        for src, name in ((lab.paths.agent_log(h.name), f"{h.name}-agent.log"), (lab.paths.maillog(h.name), f"{h.name}-maillog")):
            if src.exists():
                shutil.copy(src, dest / name)


def _vip_on(lab: Lab, vip: str, exclude: str) -> str | None:
    """The store (other than `exclude`) that has the VIP configured: one `ip` call per store, so
    the poll is cheap enough to time the move to a few tens of ms even on a loaded machine."""
    for h in lab.plan.of_kind("store"):
        if h.name == exclude:
            continue
        out = subprocess.run(["ip", "-n", lab.ns(h.name), "-4", "-o", "addr", "show"], capture_output=True,
                             text=True, timeout=10)
        if f" {vip}/" in out.stdout:
            return h.name
    return None


def _disk_check(state_dir: str, messages: int, size: int, mode: str) -> None:
    parent = Path(state_dir).parent
    need = messages * size * (3 if mode == "mirrored" else 2) + 200 * 2**20
    free = shutil.disk_usage(parent).free
    if free < need * 1.2:
        raise click.ClickException(f"no-loss: needs ~{need / 2**30:.1f} GiB under {parent}, {free / 2**30:.1f} GiB free")


@click.command("no-loss")
@click.option("--messages", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--size", default=1_000_000, show_default=True, type=click.IntRange(500, 20_000_000),
              help="Message size in bytes.")
@click.option("--spool", "mode", default="shared", show_default=True, type=click.Choice(MODES))
@click.option("--connections", default=2, show_default=True, type=click.IntRange(1, 16),
              help="Parallel SMTP sessions of the client.")
@click.option("--cut-at", default=0.4, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Power the holder off after this fraction of the messages was accepted.")
@click.option("--rate", default=None, type=click.FloatRange(0.1, 100_000),
              help="Messages per second (default: as fast as the tier accepts them).")
@click.option("--fault", default="power-off", show_default=True, type=click.Choice(FAULTS),
              help="What happens to the holder: power-off, freeze (every process SIGSTOPped), kill-agent, "
                   "freeze-agent (the agent alone SIGSTOPped).")
@click.option("--spool-device", default="dir", show_default=True, type=click.Choice(["dir", "loop"]),
              help="Shared spool on a bind-mounted directory, or on an ext4 loop device (fencing required).")
@click.option("--fencing/--no-fencing", default=True, show_default=True,
              help="With --spool-device loop: fence_hacluster_lab for the stores, or `fencing: self-only`.")
@click.option("--state-dir", default="/run/hacluster-lab-hnb", show_default=True)
@click.option("--prefix", default="hnb-", show_default=True)
@click.option("--keep-logs", type=click.Path(file_okay=False), default=None,
              help="Copy the store agents' logs and maillogs here before the lab goes down.")
@click.option("--allow-duplicates", default=0, show_default=True, type=click.IntRange(0, None),
              help="Duplicated messages the run may have before it fails (an explicit budget; default none).")
@click.option("--resend/--no-resend", default=True, show_default=True,
              help="Send again a message whose end-of-data got no reply (as an MTA does); --no-resend "
                   "counts it ambiguous instead.")
@click.option("--json", "as_json", is_flag=True)
def noloss_cmd(messages: int, size: int, mode: str, connections: int, cut_at: float, rate: float | None,
               fault: str, spool_device: str, fencing: bool,
               state_dir: str, prefix: str, keep_logs: str | None, allow_duplicates: int, resend: bool,
               as_json: bool) -> None:
    """Power off (freeze, kill the agent of) the store holder while mail streams in; count lost and
    duplicated mail."""
    _disk_check(state_dir, messages, size, mode)
    if spool_device == "loop" and mode != "shared":
        raise click.UsageError("--spool-device loop needs --spool shared")
    block_mb = max(64, (messages * size * 2) >> 20) + 64 if spool_device == "loop" else 0
    lab = lab_for(mode, state_dir, prefix, block_mb, fencing)
    t0 = time.monotonic()
    try:
        lab.up()
        res = run_noloss(lab, messages, size, connections, cut_at, progress=not as_json, rate_per_s=rate, fault=fault,
                         resend=resend)
    finally:
        if keep_logs:
            keep_store_logs(lab, Path(keep_logs))
        lab.down()
    res = {"bench": "no-loss", "spool": mode, "spool_device": spool_device, **res, "allow_duplicates": allow_duplicates,
           "wall_s": round(time.monotonic() - t0, 1)}
    report(res, as_json, f"spool {mode}: {res['accepted']}/{messages} accepted, delivered_once {res['delivered_once']}, "
           f"lost {res['lost']}, duplicates {res['duplicates']}, late {res['late']}, "
           f"failover_s {res['failover_s']}, fence_s {res['fence_s']}")
    late = (res.get("spool_writes") or {}).get("old_holder_writes_after_fence")
    if res["lost"] or res["duplicates"] > allow_duplicates or late:
        raise click.exceptions.Exit(1)
