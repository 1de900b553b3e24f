"""The agent's scheduling priority (hacluster/agent/priority.py): the decision as a table, and
`apply` in a child process (it changes the caller's priority), once allowed and once without
CAP_SYS_NICE (setpriv drops it from the bounding set): refused, logged, running as started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from hacluster.agent import priority
from hacluster.agent.priority import FLOOR, Plan, decide


@pytest.mark.parametrize(("raise_by", "current", "target"), [
    (0, 0, None),        # 1. off
    (0, 19, None),
    (10, 0, -10),        # 2. relative: systemd starts the agent at 0
    (10, 19, 9),         #    a test suite under nice 19 keeps it niced
    (10, 5, -5),
    (19, 0, FLOOR),      #    never below the floor: the VIP guard's nice -20 stays above
    (15, -10, FLOOR),
    (10, -19, None),     # 3. already at the floor
    (10, -20, None),     #    above the floor already (started at -20): left alone, never raised
])
def test_decide(raise_by: int, current: int, target: int | None) -> None:
    plan = decide(raise_by, current)
    assert plan.target == target
    if target is not None:
        assert FLOOR <= plan.target < current and -20 < plan.target  # type: ignore[operator]


def test_decide_refuses_out_of_range() -> None:
    for bad in (-1, 20):
        with pytest.raises(ValueError, match="0..19"):
            decide(bad, 0)
    assert decide(0, 0) == Plan(None, "off (--raise-priority 0)")


def test_normal_argv_without_apply_is_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priority, "_started_at", None)
    assert priority.normal_argv(["postfix", "start"]) == ["postfix", "start"]


CHILD = """
import logging, os, subprocess, sys, threading
logging.basicConfig(level=logging.INFO, format="%(message)s")
from hacluster.agent import priority
t = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True); t.start()  # a thread already running
out = priority.apply(int(sys.argv[1]))
nices = {int(open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()[16]) for tid in os.listdir("/proc/self/task")}
child = subprocess.run(priority.normal_argv(["sh", "-c", "cut -d' ' -f19 /proc/$$/stat"]), capture_output=True, text=True).stdout.split()
print(out.before, out.after, sorted(nices), child[0])
"""


def run_child(raise_by: int, *prefix: str) -> tuple[list[str], str]:
    res = subprocess.run([*prefix, sys.executable, "-c", CHILD, str(raise_by)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.split(), res.stderr


def test_apply_lowers_every_thread_and_children_run_as_started() -> None:
    start = os.getpriority(os.PRIO_PROCESS, 0)
    want = max(FLOOR, start - 10)
    (before, after, nices, child), err = run_child(10)
    assert (int(before), int(after), nices, int(child)) == (start, want, f"[{want}]", start)
    assert f"scheduling priority: nice {start} -> {want} (raised by {start - want})" in err
    (before, after, nices, child), err = run_child(0)
    assert (int(before), int(after), int(child)) == (start, start, start) and "off" in err


def test_apply_without_cap_sys_nice_is_refused_and_logged() -> None:
    assert os.geteuid() == 0 and shutil.which("setpriv")  # root, to drop a capability (util-linux)
    start = os.getpriority(os.PRIO_PROCESS, 0)
    (before, after, nices, child), err = run_child(10, "setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice")
    assert (int(before), int(after), nices, int(child)) == (start, start, f"[{start}]", start)
    assert "not permitted" in err and "CAP_SYS_NICE" in err
