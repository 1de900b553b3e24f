"""Polling with a deadline, for tests that wait on real processes (agents, ZooKeeper, Postfix)."""

from __future__ import annotations

import time
from typing import Any, Callable

from hacluster import clock


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `pred` until it returns something truthy (returned); fail naming `what` after `timeout`."""
    end = clock.now() + timeout
    while True:
        got = pred()
        if got:
            return got
        if clock.now() >= end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
