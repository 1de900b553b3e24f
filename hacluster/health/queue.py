"""Queue check: `postqueue -c CONFIG_DIR -j` -> counts per queue, oldest age, top deferral reasons,
and whether the queue keeps growing.

`parse_postqueue_json` is pure and total: postqueue prints one JSON object per message, but a
truncated read, a warning on stdout or a future field type must cost one skipped line
(`bad_lines`), never the check. A queue problem only alerts (the policy never demotes on it):
the queue is the MTA's buffer and growth usually means a downstream outage.
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


@dataclass(frozen=True)
class QueueSnapshot:
    counts: Mapping[str, int]  # queue_name -> messages (maildrop, incoming, active, deferred, hold, ...)
    total: int
    oldest_arrival: float | None  # epoch seconds of the oldest message
    oldest_age_s: float | None
    top_deferral_reasons: tuple[tuple[str, int], ...]  # (reason, recipients), most frequent first
    bad_lines: int

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "total": self.total, "oldest_age_s": self.oldest_age_s,
                "top_deferral_reasons": [list(r) for r in self.top_deferral_reasons], "bad_lines": self.bad_lines}


def parse_postqueue_json(text: str, now: float | None = None, top: int = 5) -> QueueSnapshot:
    """Summarise `postqueue -j` output; lines that are not a message object are counted, not fatal."""
    now = time.time() if now is None else now
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    oldest: float | None = None
    bad = 0
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
        if isinstance(arrival, (int, float)) and not isinstance(arrival, bool) and arrival == arrival:
            if abs(arrival) < 1e12 and (oldest is None or arrival < oldest):
                oldest = float(arrival)
        recipients = msg.get("recipients")
        for rcpt in recipients if isinstance(recipients, list) else ():
            reason = rcpt.get("delay_reason") if isinstance(rcpt, dict) else None
            if isinstance(reason, str) and reason:
                reasons[reason[:_REASON_MAX]] += 1
    total = sum(counts.values())
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[: max(top, 0)]
    return QueueSnapshot(
        counts=dict(sorted(counts.items())),
        total=total,
        oldest_arrival=oldest,
        oldest_age_s=None if oldest is None else max(0.0, now - oldest),
        top_deferral_reasons=tuple(ranked),
        bad_lines=bad,
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
        return self.judge(parse_postqueue_json(out.stdout, now=self.clock()), latency)

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
        too_old = snap.oldest_age_s is not None and snap.oldest_age_s > self.warn_age_s
        if too_many:
            problems.append(f"{snap.total} messages > {self.warn_messages}")
        if too_old:
            problems.append(f"oldest {snap.oldest_age_s / 3600:.1f} h > {self.warn_age_s / 3600:.1f} h")
        if growing:
            problems.append(f"grew by {grown} in {self.growth_window_s:g}s")
        summary = " ".join(f"{q}={n}" for q, n in snap.counts.items()) or "empty"
        data = {**snap.to_json(), "growing": growing, "growth": grown, "too_many": too_many, "too_old": too_old, "config_dir": self.config_dir}
        if problems:
            return result(self.name, "warn", f"queue {summary}: " + "; ".join(problems), latency_s, ok=True, **data)
        return result(self.name, "ok", f"queue {summary}", latency_s, **data)
