"""The one clock for leases: CLOCK_BOOTTIME keeps counting through suspend, unlike
CLOCK_MONOTONIC, so a host resumed from suspend sees its lease as expired (it is)."""

import time
from typing import Protocol


def now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Clock(Protocol):
    """What the agent reads time through (constructor-injected: a test passes a fake one)."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class BootClock:
    """The production clock: `now()` above, and the real sleep."""

    def now(self) -> float:
        return now()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
