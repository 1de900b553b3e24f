"""RAID check: the md arrays under the spool, from /proc/mdstat (or a sample file in the lab).

crit when a watched array is failed, inactive or missing (the policy demotes); warn while one is
degraded, recovering, resyncing or reshaping (the policy only lowers candidacy); ok when all are
clean or checking (a scrub keeps full redundancy). With no md driver (/proc/mdstat absent) and
no arrays named, there is nothing to guard: ok. A file we cannot parse is a warning (ok=False):
we cannot tell, and not knowing must not demote a working store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .checks import RAID, CheckResult, result
from .mdstat import MdstatError, parse_mdstat

CRIT_STATES = ("failed", "inactive")
WARN_STATES = ("degraded", "recovering", "resyncing", "reshaping")


@dataclass(frozen=True)
class RaidCheck:
    mdstat_path: str = "/proc/mdstat"
    arrays: tuple[str, ...] | None = None  # watch only these (e.g. the spool's md device); None: all
    simulated: bool = False  # the file is a lab's stand-in for /proc/mdstat (no md driver): status says so
    name: str = RAID

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        base: dict[str, Any] = {"path": self.mdstat_path, "watched": list(self.arrays) if self.arrays is not None else None,
                                "simulated": self.simulated}
        try:
            with open(self.mdstat_path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            if not self.arrays:
                return result(self.name, "ok", f"no md arrays ({self.mdstat_path} absent)", time.monotonic() - t0,
                              **base, arrays=[], failed=[], degraded=[], missing=[])
            return result(self.name, "crit", f"{self.mdstat_path} absent; missing {', '.join(self.arrays)}",
                          time.monotonic() - t0, **base, arrays=[], failed=[], degraded=[], missing=list(self.arrays))
        except OSError as err:
            return result(self.name, "warn", f"cannot read {self.mdstat_path}: {err.strerror}", time.monotonic() - t0,
                          ok=False, **base, error=str(err))
        try:
            arrays = parse_mdstat(text, source=self.mdstat_path)
        except MdstatError as err:
            return result(self.name, "warn", f"cannot parse: {err}", time.monotonic() - t0, ok=False, **base,
                          error=str(err))
        by_name = {a.name: a for a in arrays}
        watched = [by_name[n] for n in self.arrays if n in by_name] if self.arrays is not None else list(arrays)
        missing = [n for n in self.arrays if n not in by_name] if self.arrays is not None else []
        failed = [a.name for a in watched if a.state in CRIT_STATES]
        degraded = [a.name for a in watched if a.state in WARN_STATES]
        data: dict[str, Any] = {**base, "arrays": [a.to_json() for a in watched], "failed": failed, "degraded": degraded,
                "missing": missing}
        states = ", ".join(f"{a.name} {a.state}" + (f" {a.progress_pct:.1f}%" if a.progress_pct is not None else "")
                           for a in watched) or "no arrays"
        latency = time.monotonic() - t0
        if failed or missing:
            extra = f"; missing {', '.join(missing)}" if missing else ""
            return result(self.name, "crit", states + extra, latency, **data)
        if degraded:
            return result(self.name, "warn", states, latency, ok=True, **data)
        return result(self.name, "ok", states, latency, **data)
