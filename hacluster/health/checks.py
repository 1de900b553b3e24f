"""Health checks: the result type, the check spec, rise/fall debouncing and the runners.

A *probe* is a callable `probe(timeout_s) -> CheckResult` (SMTP, MTA process, queue, spool,
RAID live in their own modules). A `Check` adds the schedule: interval, timeout and HAProxy /
keepalived style rise/fall counts. `CheckRunner` runs one check with a hard timeout and
debounces it; `HealthMonitor` runs every check on its own thread so a hung probe (an NFS spool
stuck in D state) never stalls the agent loop, and hands out an immutable snapshot that the
pure policy (`policy.evaluate`) turns into a verdict.

Debouncing: the first result sets the state (no optimistic "up" at start: a node must not look
healthy before it was ever checked). After that the state flips to failing only after `fall`
consecutive failures and back after `rise` consecutive successes. While a flip is pending, the
*effective* result stays the last one that agreed with the state, annotated with the streak.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Protocol

Severity = Literal["ok", "warn", "crit"]
SEVERITIES: tuple[str, ...] = ("ok", "warn", "crit")

# Canonical check names; policy.evaluate keys its rules on these.
SMTP, MTA, QUEUE, SPOOL, RAID = "smtp", "mta", "queue", "spool", "raid"
COMMAND, LINK = "command", "link"
CONFIG_DIGEST = "config_digest"


@dataclass(frozen=True)
class CheckResult:
    """One probe outcome. `ok` says whether the thing works; `severity` how urgent it is:
    "ok" implies ok=True, "crit" implies ok=False, "warn" goes either way (a degraded array
    works, ok=True; a queue listing that could not be read is ok=False but only a warning).
    `data` is check-specific, JSON-serialisable, and read-only by convention."""

    name: str
    ok: bool
    severity: Severity
    detail: str
    latency_s: float
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if (self.severity == "ok" and not self.ok) or (self.severity == "crit" and self.ok):
            raise ValueError(f"{self.name}: ok={self.ok} contradicts severity {self.severity}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "severity": self.severity, "detail": self.detail,
                "latency_s": round(self.latency_s, 6), "data": self.data}


def result(name: str, severity: Severity, detail: str, latency_s: float, ok: bool | None = None,
           **data: Any) -> CheckResult:
    """Shorthand: ok defaults to `severity != "crit"`."""
    return CheckResult(name, severity != "crit" if ok is None else ok, severity, detail, latency_s, data)


class Probe(Protocol):
    def __call__(self, timeout_s: float) -> CheckResult: ...


@dataclass(frozen=True)
class Check:
    """A probe plus its schedule. `name` is the key the policy looks up (see SMTP, MTA, ...)."""

    name: str
    probe: Probe
    interval_s: float = 2.0
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 3

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.timeout_s <= 0:
            raise ValueError(f"check {self.name}: interval_s and timeout_s must be > 0")
        if self.rise < 1 or self.fall < 1:
            raise ValueError(f"check {self.name}: rise and fall must be >= 1")


# ---------------------------------------------------------------------------------------------
# Debounce: a pure state machine, tested table-driven.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Debounce:
    """`up`: None before the first result; `streak`: consecutive results disagreeing with `up`."""

    up: bool | None = None
    streak: int = 0


def debounce(state: Debounce, ok: bool, rise: int, fall: int) -> Debounce:
    """Next state after one result: flip down after `fall` failures, up after `rise` successes."""
    if state.up is None:
        return Debounce(ok, 0)
    if ok == state.up:
        return Debounce(state.up, 0)
    streak = state.streak + 1
    if streak >= (fall if state.up else rise):
        return Debounce(ok, 0)
    return Debounce(state.up, streak)


# ---------------------------------------------------------------------------------------------
# Runner: one check, hard timeout, debounced effective result.
# ---------------------------------------------------------------------------------------------


class CheckRunner:
    """Runs one check. A probe that overruns its timeout is abandoned on its daemon thread (a
    thread stuck in the kernel cannot be killed) and counts as a crit failure; no second copy
    starts while it is still stuck, so a hung mount costs one thread, not one per interval."""

    def __init__(self, check: Check, clock: Callable[[], float] = time.monotonic,
                 on_transition: Callable[[str, bool, CheckResult], None] | None = None) -> None:
        self.check = check
        self._clock = clock
        self._on_transition = on_transition
        self._lock = threading.Lock()
        self._state = Debounce()
        self._raw: CheckResult | None = None
        self._agreeing: CheckResult | None = None  # last raw result whose ok == state.up
        self._stuck: threading.Thread | None = None
        self._stuck_since = 0.0
        self.last_run: float | None = None

    @property
    def state(self) -> Debounce:
        return self._state

    @property
    def raw(self) -> CheckResult | None:
        return self._raw

    def due(self, now: float | None = None) -> bool:
        now = self._clock() if now is None else now
        return self.last_run is None or now - self.last_run >= self.check.interval_s

    def run_once(self) -> CheckResult:
        """Run the probe now (bounded by its timeout), update the debounce state, return the raw result."""
        start = self._clock()
        self.last_run = start
        raw = self._probe(start)
        with self._lock:
            before = self._state.up
            self._state = debounce(self._state, raw.ok, self.check.rise, self.check.fall)
            self._raw = raw
            if raw.ok == self._state.up:
                self._agreeing = raw
            flipped = before is not None and before != self._state.up
        if flipped and self._on_transition is not None:
            self._on_transition(self.check.name, bool(self._state.up), raw)
        return raw

    def effective(self) -> CheckResult | None:
        """The debounced view: None before the first run."""
        with self._lock:
            state, raw, agreeing = self._state, self._raw, self._agreeing
        if raw is None or agreeing is None:
            return None
        if raw is agreeing:
            return raw
        need = self.check.fall if state.up else self.check.rise
        word = "failure" if state.up else "success"
        return dataclasses.replace(
            agreeing,
            detail=f"{agreeing.detail} [pending: {state.streak}/{need} {word}s, latest: {raw.detail}]",
            data={**agreeing.data, "pending": {"streak": state.streak, "of": need, "latest": raw.to_json()}},
        )

    def _probe(self, start: float) -> CheckResult:
        name, timeout = self.check.name, self.check.timeout_s
        if self._stuck is not None and self._stuck.is_alive():
            stuck_for = start - self._stuck_since
            return result(name, "crit", f"previous probe still running after {stuck_for:.1f}s", 0.0, timed_out=True)
        self._stuck = None
        box: list[CheckResult] = []

        def target() -> None:
            t0 = self._clock()
            try:
                box.append(self.check.probe(timeout))
            except Exception as err:  # a probe bug must read as a failed check, not kill the runner
                box.append(result(name, "crit", f"probe error: {type(err).__name__}: {err}", self._clock() - t0,
                                  error=type(err).__name__))

        worker = threading.Thread(target=target, name=f"check-{name}", daemon=True)
        worker.start()
        worker.join(timeout + 0.05)  # the probe honours `timeout` itself; this is the backstop
        if worker.is_alive():
            self._stuck, self._stuck_since = worker, start
            return result(name, "crit", f"timed out after {timeout:g}s", self._clock() - start, timed_out=True)
        res = box[0]
        if res.name != name:  # the policy keys on the check's name
            res = dataclasses.replace(res, name=name)
        return res


class HealthMonitor:
    """Runs each check on its own thread every `interval_s`; `snapshot()` never blocks on a probe."""

    def __init__(self, checks: Iterable[Check], clock: Callable[[], float] = time.monotonic,
                 on_transition: Callable[[str, bool, CheckResult], None] | None = None) -> None:
        self.runners = {c.name: CheckRunner(c, clock, on_transition) for c in checks}
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run_all_once(self) -> dict[str, CheckResult]:
        """Run every check once, synchronously (for `hacluster status` and tests)."""
        for runner in self.runners.values():
            runner.run_once()
        return self.snapshot()

    def snapshot(self) -> dict[str, CheckResult]:
        """Effective (debounced) results of the checks that have run at least once."""
        out = {}
        for name, runner in self.runners.items():
            eff = runner.effective()
            if eff is not None:
                out[name] = eff
        return out

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for runner in self.runners.values():
            t = threading.Thread(target=self._loop, args=(runner,), name=f"health-{runner.check.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def __enter__(self) -> "HealthMonitor":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self, runner: CheckRunner) -> None:
        while not self._stop.is_set():
            t0 = self._clock()
            runner.run_once()
            self._stop.wait(max(0.0, runner.check.interval_s - (self._clock() - t0)))
