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


def until_done(call: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Call `call` until it returns without a ZooKeeper error (its result returned): a client
    whose server just came back may still be reconnecting, and kazoo fails a request made in
    that window (ConnectionLoss, SessionExpired) rather than holding it. Other errors propagate."""
    from kazoo.exceptions import KazooException

    last: list[BaseException] = []

    def attempt() -> tuple[Any] | None:
        try:
            return (call(),)
        except KazooException as err:
            last[:] = [err]
            return None

    try:
        return wait_for(attempt, timeout, what, interval)[0]
    except AssertionError as err:
        raise AssertionError(f"{err} (last error: {last[0]!r})" if last else str(err)) from None
