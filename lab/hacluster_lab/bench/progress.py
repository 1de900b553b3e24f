"""What the lab benches (no-loss, zk-outage) share: a timestamped progress line on stderr, and
a bounded wait that ends the bench with a clear error naming what never happened."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import click


def say(progress: bool, msg: str) -> None:
    if progress:
        click.echo(f"[{time.strftime('%H:%M:%S')}] {msg}", err=True)


def wait_for(bench: str, what: str, pred: Callable[[], Any], timeout_s: float, step_s: float) -> Any:
    """pred()'s first true answer, polled every step_s; a ClickException after timeout_s."""
    end = time.monotonic() + timeout_s
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise click.ClickException(f"{bench}: timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(step_s)


def report(res: dict[str, Any], as_json: bool, *lines: str) -> None:
    """The bench's result: the whole record as JSON (--json), else its summary lines."""
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    for line in lines:
        click.echo(line)
