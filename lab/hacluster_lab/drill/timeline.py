"""The drill's timeline picture (PNG, matplotlib's Agg backend: no display needed).

Three panels on one time axis (seconds since the drill started):
  1. who held each role's VIP (one row per candidate; red where two held it at once),
  2. mail accepted / not accepted per second (from the sender's submissions),
  3. queued messages per MTA host (sampled every 0.5 s),
with every step drawn as a vertical line labelled with what it did (faults in red).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from hacluster.plotting import pyplot
from .expect import Recording, holders_timeline
from .playbook import Playbook

FAULT_STEPS = ("fault", "restart_agent", "raid", "spool", "switchover", "maintenance", "standby", "unstandby")


def holding_intervals(rec: Recording, vip: str, t_end: float) -> dict[str, list[tuple[float, float]]]:
    """host -> [(start, end)] it held the VIP (relative to the drill start)."""
    out: dict[str, list[tuple[float, float]]] = {}
    open_: dict[str, float] = {}
    for t, hs in holders_timeline(rec, vip):
        for h in list(open_):
            if h not in hs:
                out.setdefault(h, []).append((open_.pop(h) - rec.t0, t - rec.t0))
        for h in hs:
            open_.setdefault(h, t)
    for h, t in open_.items():
        out.setdefault(h, []).append((t - rec.t0, t_end - rec.t0))
    return out


def render(path: Path, pb: Playbook, rec: Recording, submissions: list[Any],
           queue_samples: list[tuple[float, dict[str, int | None]]]) -> Path:
    plt = pyplot()

    t_end = max(rec.monitor.t_end or rec.t_steps_end, rec.t_steps_end)
    span = max(1.0, t_end - rec.t0)
    fig, (ax_h, ax_m, ax_q) = plt.subplots(3, 1, figsize=(12, 8), sharex=True,
                                           gridspec_kw={"height_ratios": [2, 1.3, 1.3]})
    fig.suptitle(f"drill {pb.name}", fontsize=12)

    # 1. holders
    rows: list[str] = []
    colours = ["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    for role in rec.roles.values():
        if not role.vip:
            continue
        iv = holding_intervals(rec, role.vip, t_end)
        for i, cand in enumerate(role.candidates):
            y = len(rows)
            rows.append(f"{role.name}: {cand}")
            spans = [(a, b - a) for a, b in iv.get(cand, [])]
            if spans:
                ax_h.broken_barh(spans, (y - 0.35, 0.7), color=colours[i % len(colours)])
        for d in rec.monitor.dual_holder_intervals:
            if d.get("vip") == role.vip:
                ax_h.axvspan(d["t_start"] - rec.t0, d["t_end"] - rec.t0, color="red", alpha=0.4)
    ax_h.set_yticks(range(len(rows)), rows)
    ax_h.set_ylim(-0.7, max(0.7, len(rows) - 0.3))
    ax_h.set_title("VIP holder (kernel addresses, sampled every 5 ms)", fontsize=9, loc="left")

    # 2. mail per second
    acc = Counter(int(s.t - rec.t0) for s in submissions if s.accepted)
    rej = Counter(int(s.t - rec.t0) for s in submissions if not s.accepted)
    secs = range(0, int(span) + 1)
    ax_m.bar(list(secs), [acc.get(s, 0) for s in secs], width=0.9, color="tab:green", label="accepted", align="edge")
    ax_m.bar(list(secs), [-rej.get(s, 0) for s in secs], width=0.9, color="tab:red", label="not accepted",
             align="edge")
    ax_m.axhline(0, color="black", linewidth=0.5)
    ax_m.set_ylabel("msgs/s")
    ax_m.legend(loc="upper right", fontsize=7)
    ax_m.set_title("mail submitted by MX (accepted up, not accepted down)", fontsize=9, loc="left")

    # 3. queues
    hosts = sorted({h for _, q in queue_samples for h, v in q.items() if v})
    for h in hosts:
        xs = [t - rec.t0 for t, q in queue_samples]
        ys = [q.get(h) or 0 for _, q in queue_samples]
        ax_q.step(xs, ys, where="post", label=h)
    if hosts:
        ax_q.legend(loc="upper right", fontsize=7, ncol=min(4, len(hosts)))
    else:
        ax_q.text(0.01, 0.5, "no mail queued anywhere", transform=ax_q.transAxes, fontsize=8)
    ax_q.set_ylabel("queued")
    ax_q.set_xlabel("seconds since the drill started")
    ax_q.set_title("MTA queues", fontsize=9, loc="left")

    # steps
    shown = [ev for ev in rec.events if ev["kind"] not in ("wait", "mark", "bind")]
    for i, ev in enumerate(shown):
        x = ev["t"] - rec.t0
        colour = "red" if ev["kind"] in FAULT_STEPS and "power-on" not in ev["label"] else "grey"
        if not ev.get("ok", True):
            colour = "black"
        for ax in (ax_h, ax_m, ax_q):
            ax.axvline(x, color=colour, linestyle="--", linewidth=0.8, alpha=0.8)
        ax_h.text(x, 1.01 + 0.09 * (i % 3), " " + ev["label"][:48], transform=ax_h.get_xaxis_transform(),
                  fontsize=7, va="bottom", ha="left", color=colour)
    ax_q.set_xlim(0, span)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
