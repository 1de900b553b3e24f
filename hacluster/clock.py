"""The one clock for leases: CLOCK_BOOTTIME keeps counting through suspend, unlike
CLOCK_MONOTONIC, so a host resumed from suspend sees its lease as expired (it is)."""

import time


def now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)
