"""Queue check: `postqueue -c CONFIG_DIR -j` -> counts per queue, oldest age, top deferral reasons,
a per-destination shape like Postfix's `qshape`, and whether the queue keeps growing.

`parse_postqueue_json` is pure and total: postqueue prints one JSON object per message, but a
truncated read, a warning on stdout or a future field type must cost one skipped line
(`bad_lines`), never the check. A queue problem only alerts (the policy never demotes on it):
the queue is the MTA's buffer and growth usually means a downstream outage.

The result travels in the node's heartbeat (rewritten in ZooKeeper every agent loop), so its size
is bounded whatever the queue holds: at most `shape_top` destination rows (the rest summed into
one "(other)" row), `top` deferral reasons of at most 200 characters, domains cut at 100.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .checks import QUEUE, CheckResult, result

_REASON_MAX = 200
_DOMAIN_MAX = 100

#: qshape's age buckets in minutes: column i holds ages in [edge[i-1], edge[i]); the last is open
AGE_EDGES_MIN: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
SHAPE_COLUMNS: tuple[str, ...] = ("0-5", "5-10", "10-20", "20-40", "40-80", "80-160", "160-320", "320+")
OTHER = "(other)"


def age_bucket(age_s: float) -> int:
    """Index into SHAPE_COLUMNS for a message age in seconds (negative ages: clock skew, bucket 0)."""
    minutes = age_s / 60.0
    for i, edge in enumerate(AGE_EDGES_MIN):
        if minutes < edge:
            return i
    return len(AGE_EDGES_MIN)


def recipient_domain(address: object) -> str:
    """The destination a recipient counts under: its domain, lower case; `(local)` without one."""
    if not isinstance(address, str) or "@" not in address:
        return "(local)"
    dom = address.rsplit("@", 1)[1].strip().strip("<>[]").lower()
    return dom[:_DOMAIN_MAX] or "(local)"


@dataclass(frozen=True)
class QueueShape:
    """`qshape` over all queues: messages per recipient domain and age bucket.

    Like qshape, a message counts once under each distinct recipient domain, and the TOTAL row
    counts messages (so it can be less than the sum of the rows). Messages without an arrival
    time are left out. `rows` are the `top` busiest destinations; `other` sums the rest."""

    total: tuple[int, ...]  # per bucket
    rows: tuple[tuple[str, tuple[int, ...]], ...]  # (domain, per bucket), busiest first
    other: tuple[int, ...] | None  # the destinations beyond `rows`, summed; None if none
    destinations: int  # distinct destinations in the queue

    def to_json(self) -> dict[str, Any]:
        """Compact, for the heartbeat: rows are [domain, total, bucket...]."""
        return {"columns": list(SHAPE_COLUMNS), "total": [sum(self.total), *self.total],
                "rows": [[d, sum(b), *b] for d, b in self.rows],
                "other": None if self.other is None else [sum(self.other), *self.other],
                "destinations": self.destinations}


def build_shape(per_domain: Mapping[str, list[int]], total: list[int], top: int) -> QueueShape:
    ranked = sorted(per_domain.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    keep, rest = ranked[: max(top, 0)], ranked[max(top, 0):]
    other = None
    if rest:
        other = tuple(sum(b[i] for _, b in rest) for i in range(len(SHAPE_COLUMNS)))
    return QueueShape(tuple(total), tuple((d, tuple(b)) for d, b in keep), other, len(per_domain))


@dataclass(frozen=True)
class QueueSnapshot:
    counts: Mapping[str, int]  # queue_name -> messages (maildrop, incoming, active, deferred, hold, ...)
    total: int
    oldest_arrival: float | None  # epoch seconds of the oldest message
    oldest_age_s: float | None
    top_deferral_reasons: tuple[tuple[str, int], ...]  # (reason, recipients), most frequent first
    bad_lines: int
    shape: QueueShape | None = None

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "total": self.total, "oldest_age_s": self.oldest_age_s,
                "top_deferral_reasons": [list(r) for r in self.top_deferral_reasons], "bad_lines": self.bad_lines,
                "shape": None if self.shape is None else self.shape.to_json()}


def parse_postqueue_json(text: str, now: float | None = None, top: int = 5, shape_top: int = 10) -> QueueSnapshot:
    """Summarise `postqueue -j` output; lines that are not a message object are counted, not fatal."""
    now = time.time() if now is None else now
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    oldest: float | None = None
    bad = 0
    ncol = len(SHAPE_COLUMNS)
    per_domain: dict[str, list[int]] = {}
    shape_total = [0] * ncol
    for line in text.splitlines() if isinstance(text, str) else ():
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        queue = msg.get("queue_name") if isinstance(msg, dict) else None
        if not isinstance(queue, str) or not queue:
            bad += 1
            continue
        counts[queue] += 1
        arrival = msg.get("arrival_time")
        bucket: int | None = None
        if isinstance(arrival, (int, float)) and not isinstance(arrival, bool) and arrival == arrival:
            if abs(arrival) < 1e12:
                if oldest is None or arrival < oldest:
                    oldest = float(arrival)
                bucket = age_bucket(now - arrival)
        recipients = msg.get("recipients")
        domains: set[str] = set()
        for rcpt in recipients if isinstance(recipients, list) else ():
            if not isinstance(rcpt, dict):
                continue
            reason = rcpt.get("delay_reason")
            if isinstance(reason, str) and reason:
                reasons[reason[:_REASON_MAX]] += 1
            domains.add(recipient_domain(rcpt.get("address")))
        if bucket is not None:
            shape_total[bucket] += 1
            for dom in domains:
                per_domain.setdefault(dom, [0] * ncol)[bucket] += 1
    total = sum(counts.values())
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[: max(top, 0)]
    return QueueSnapshot(
        counts=dict(sorted(counts.items())),
        total=total,
        oldest_arrival=oldest,
        oldest_age_s=None if oldest is None else max(0.0, now - oldest),
        top_deferral_reasons=tuple(ranked),
        bad_lines=bad,
        shape=build_shape(per_domain, shape_total, shape_top),
    )


def growth(history: "deque[tuple[float, int]]", window_s: float) -> int | None:
    """Messages added over the window: newest total minus the oldest sample at least half a window
    old; None until there is such a sample (one blip is not a trend)."""
    if len(history) < 2:
        return None
    t_new, n_new = history[-1]
    for t, n in history:
        if t_new - t <= window_s:
            return n_new - n if t_new - t >= window_s / 2 else None
    return None


@dataclass
class QueueCheck:
    """warn when the queue is large, old or growing; ok=False (still warn) when it cannot be listed."""

    config_dir: str = "/etc/postfix"
    warn_messages: int = 1000
    warn_age_s: float = 4 * 3600.0
    growth_window_s: float = 300.0
    growth_min: int = 100
    shape_top: int = 10  # destination rows in the published qshape (the rest are summed)
    postqueue: str = "postqueue"
    clock: Callable[[], float] = time.time
    name: str = QUEUE
    _history: "deque[tuple[float, int]]" = field(default_factory=lambda: deque(maxlen=1024), init=False, repr=False)

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        try:
            out = subprocess.run([self.postqueue, "-c", self.config_dir, "-j"], capture_output=True, text=True,
                                 errors="replace", timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return result(self.name, "warn", f"postqueue -j timed out after {timeout_s:g}s", time.monotonic() - t0,
                          ok=False, config_dir=self.config_dir, timed_out=True)
        except OSError as err:
            return result(self.name, "warn", f"cannot run postqueue: {err}", time.monotonic() - t0, ok=False,
                          config_dir=self.config_dir)
        latency = time.monotonic() - t0
        if out.returncode != 0:
            msg = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
            return result(self.name, "warn", f"postqueue -j failed: {msg}", latency, ok=False,
                          config_dir=self.config_dir)
        return self.judge(parse_postqueue_json(out.stdout, now=self.clock(), shape_top=self.shape_top), latency)

    def judge(self, snap: QueueSnapshot, latency_s: float) -> CheckResult:
        """Severity from a snapshot (also records it for the growth trend)."""
        now = self.clock()
        while self._history and now - self._history[0][0] > self.growth_window_s:
            self._history.popleft()
        self._history.append((now, snap.total))
        grown = growth(self._history, self.growth_window_s)
        growing = grown is not None and grown >= self.growth_min
        problems = []
        too_many = snap.total > self.warn_messages
        oldest = snap.oldest_age_s
        too_old = oldest is not None and oldest > self.warn_age_s
        if too_many:
            problems.append(f"{snap.total} messages > {self.warn_messages}")
        if oldest is not None and too_old:
            problems.append(f"oldest {oldest / 3600:.1f} h > {self.warn_age_s / 3600:.1f} h")
        if growing:
            problems.append(f"grew by {grown} in {self.growth_window_s:g}s")
        summary = " ".join(f"{q}={n}" for q, n in snap.counts.items()) or "empty"
        data = {**snap.to_json(), "growing": growing, "growth": grown, "too_many": too_many, "too_old": too_old, "config_dir": self.config_dir}
        if problems:
            return result(self.name, "warn", f"queue {summary}: " + "; ".join(problems), latency_s, ok=True, **data)
        return result(self.name, "ok", f"queue {summary}", latency_s, **data)


# ---------------------------------------------------------------------------------------------
# Reading it back: the queue check's result as published in a heartbeat (ZooKeeper), for
# `hacluster status`, the status page and /metrics. Pure and tolerant: a rogue znode can hold
# anything, so a malformed field becomes absent, never an exception.
# ---------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _count_row(v: Any, n: int) -> list[int] | None:
    """[total, bucket...] with n buckets of non-negative ints, or None."""
    if not isinstance(v, list) or len(v) != n + 1:
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
        return None
    return list(v)


def shape_view(data: Any) -> dict[str, Any] | None:
    """A published qshape, checked: {"columns", "total": [T, b...], "rows": [[dom, T, b...]], "other", "destinations"}."""
    if not isinstance(data, dict):
        return None
    cols = data.get("columns")
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
        return None
    n = len(cols)
    total = _count_row(data.get("total"), n)
    if total is None:
        return None
    rows = []
    for row in _list(data.get("rows")):
        if isinstance(row, list) and row and isinstance(row[0], str):
            counts = _count_row(row[1:], n)
            if counts is not None:
                rows.append([row[0][:_DOMAIN_MAX], *counts])
    other = _count_row(data.get("other"), n)
    dests = data.get("destinations")
    return {"columns": list(cols), "total": total, "rows": rows, "other": other,
            "destinations": dests if isinstance(dests, int) and not isinstance(dests, bool) else len(rows)}


def queue_view(health: Mapping[str, Any]) -> dict[str, Any] | None:
    """The MTA queue from a member's `queue` check (its heartbeat `health` mapping): severity,
    total, per queue, oldest age, growing, top deferral reasons, shape; None without the check."""
    res = health.get("queue") if isinstance(health, Mapping) else None
    if not isinstance(res, dict):
        return None
    data = _dict(res.get("data"))
    counts = _dict(data.get("counts"))
    reasons = []
    for r in _list(data.get("top_deferral_reasons")):
        if isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and _num(r[1]) is not None:
            reasons.append([r[0][:_REASON_MAX], r[1]])
    return {"severity": res.get("severity"), "detail": res.get("detail"), "ok": res.get("ok") is True,
            "total": _num(data.get("total")),
            "counts": {str(k): v for k, v in counts.items() if _num(v) is not None},
            "oldest_age_s": _num(data.get("oldest_age_s")), "growing": bool(data.get("growing")),
            "top_deferral_reasons": reasons, "shape": shape_view(data.get("shape"))}


def format_age(seconds: float | None) -> str:
    """Compact age for tables: 42s, 7.5m, 3.2h, 2.1d; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def format_shape(shape: Mapping[str, Any]) -> list[str]:
    """qshape-style table lines: a TOTAL row, the busiest destinations, then (other)."""
    cols = list(shape["columns"])
    rows: list[tuple[str, list[int]]] = [("TOTAL", shape["total"])]
    rows += [(r[0], r[1:]) for r in shape["rows"]]
    if shape.get("other"):
        rows.append((f"{OTHER} {shape['destinations'] - len(shape['rows'])} more", shape["other"]))
    name_w = max(12, *(len(n) for n, _ in rows))
    widths = [max(5, len(c) + 1) for c in ["T", *cols]]
    lines = [" " * name_w + "".join(f"{c:>{w}}" for c, w in zip(["T", *cols], widths, strict=True))]
    for name, vals in rows:
        lines.append(f"{name:>{name_w}}" + "".join(f"{v:>{w}}" for v, w in zip(vals, widths, strict=True)))
    return lines
