"""`check: link`: the link the VIP lives on is up (keepalived's track_interface).

A store whose VIP interface lost its carrier cannot be reached however healthy its Postfix is;
keepalived puts its instance into FAULT for that, and so does this check by default (`on_fail`,
as for the command check). Read from sysfs, which shows the agent's own network namespace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .checks import LINK, CheckResult, result
from .command import ON_FAIL

SYS_NET = Path("/sys/class/net")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # missing, or carrier of a link that is administratively down (EINVAL)
        return None


@dataclass(frozen=True)
class LinkProbe:
    interface: str
    on_fail: str = "demote"
    name: str = LINK
    sys_net: Path = SYS_NET

    def __post_init__(self) -> None:
        if self.on_fail not in ON_FAIL:
            raise ValueError(f"on_fail must be one of {', '.join(ON_FAIL)}, not {self.on_fail!r}")

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        base = self.sys_net / self.interface
        if "/" in self.interface or not base.exists():
            return result(self.name, "crit", f"{self.interface}: no such interface", time.monotonic() - t0,
                          on_fail=self.on_fail, interface=self.interface, operstate=None, carrier=None)
        oper = _read(base / "operstate")
        carrier = _read(base / "carrier")
        up = oper == "up" or (oper == "unknown" and carrier == "1")  # "unknown": drivers without operstate
        detail = f"{self.interface}: operstate {oper}, carrier {carrier if carrier is not None else 'n/a'}"
        return result(self.name, "ok" if up else "crit", detail, time.monotonic() - t0,
                      on_fail=self.on_fail, interface=self.interface, operstate=oper, carrier=carrier)
