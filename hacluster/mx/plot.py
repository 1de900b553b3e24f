"""Queue depth per host over time, outages shaded: where mail waits, and for how long."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..plotting import pyplot
from .model import Timeline, Trace, depth_steps
from .scenario import Scenario


def plot_queues(scn: Scenario, trace: Trace, path: str | Path) -> None:
    """Write a PNG. Hosts whose queue never held mail are left out of the curves (listed in
    the title instead) but their outages are still shaded."""
    plt = pyplot()

    end = scn.duration_s
    unit, div = ("days", 86400.0) if end > 3 * 86400 else ("hours", 3600.0)
    tl = Timeline(scn)
    cmap = plt.get_cmap("tab10")
    colors = [cmap(i) for i in range(cmap.N)]
    color = {h: colors[i % len(colors)] for i, h in enumerate(scn.hosts)}
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    idle = []
    for h in scn.hosts:
        steps = depth_steps(trace.intervals[h])
        if not steps or max(d for _, d in steps) == 0:
            idle.append(h)
            continue
        xs = [0.0] + [t / div for t, _ in steps] + [end / div]
        ys = [0] + [d for _, d in steps] + [steps[-1][1]]
        ax.step(xs, ys, where="post", color=color[h], linewidth=1.6, label=f"{h} queue (peak {max(ys)})")
    down_hosts = [h for h in scn.hosts if tl.outages(h)]
    for row, h in enumerate(down_hosts):
        for a, b in tl.outages(h):
            b = min(b, end)
            ax.axvspan(a / div, b / div, color=color[h], alpha=0.12, linewidth=0)
            bars.broken_barh([(a / div, (b - a) / div)], (row - 0.4, 0.8), color=color[h], alpha=0.7)
    bars.set_yticks(range(len(down_hosts)), [f"{h} down" for h in down_hosts])
    bars.set_ylim(-0.6, max(len(down_hosts), 1) - 0.4)
    bars.set_xlabel(f"time ({unit})")
    bars.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, end / div)
    ax.set_ylabel("messages queued")
    ax.grid(alpha=0.3)
    title = f"{scn.name}: queue depth per host ({scn.messages} messages; shaded: outages)"
    if idle:
        title += f"\nno queue at: {', '.join(idle)}"
    ax.set_title(title, fontsize=11)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no host queued any mail", transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as err:
        raise UserError(f"{path}: cannot write plot: {err.strerror or err}") from None
    finally:
        plt.close(fig)
