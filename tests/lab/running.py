"""A lab with its agents up for a test module, torn down whatever happens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from hacluster_lab.bench.progress import wait_for
from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.state import LabOptions
from hacluster.resources.base import OCF


def lab_wait(what: str, pred: Callable[[], Any], timeout: float, step: float) -> Any:
    """pred()'s first true answer, polled every `step` (the benches' bounded wait); a test failure
    naming `what` after `timeout`."""
    try:
        return wait_for("lab test", what, pred, timeout, step)
    except click.ClickException as err:
        raise AssertionError(err.message) from None


def running_lab(state: Path, prefix: str, agents: bool = True, store_mta: bool = False) -> Iterator[Lab]:
    """Yield a lab from the embedded spec (for a module fixture): every agent started, or none
    (agents=False); with store_mta, store1's Postfix running and holding the store VIP."""
    lab = Lab(None, state, prefix, LabOptions(agents=agents))
    try:
        report = lab.up()
        assert all(st == "running" for st in report.agents.values()), report.agents
        if store_mta:
            assert lab.start_mta("store1") == OCF.SUCCESS
            lab.hold_vip("store1")
        yield lab
    finally:
        lab.down()


# `hacluster` as an operator on this host runs it, except that the rule's last place
# (/etc/hacluster/cluster.yml) is moved to a path that never exists: a host that has that file
# must not change what these tests see (the lab's way in is used only when no spec is found)
HOST_CLI = ("import pathlib, sys\n"
            "import hacluster.config_path as cp\n"
            "cp.DEFAULT_PATH = pathlib.Path('/nonexistent/etc/hacluster/cluster.yml')\n"
            "from hacluster.cli import main\n"
            "sys.exit(main())\n")


def host_env(state: Path) -> dict[str, str]:
    """The environment of an operator shell with no spec configured and the lab at `state`."""
    return {k: v for k, v in os.environ.items() if k != "HACLUSTER_CONFIG"} | {"HACLUSTER_LAB_STATE": str(state)}


def host_hacluster(state: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`hacluster ARGS` from the host shell (no spec configured; the lab at `state` is up)."""
    return subprocess.run([sys.executable, "-c", HOST_CLI, *args], env=host_env(state), capture_output=True,
                          text=True, timeout=timeout)
