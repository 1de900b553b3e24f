"""The production path in the suite (issue 14, "Done when"): `tests/wheel_check.py --quick`, the
short form of `make wheel-check`. The wheels `python -m build` makes, installed into an empty venv
outside the tree; from there `hacluster --help`, `config check`, the agent holding its role on a
real ZooKeeper, the deploy tests' dry run and first deploy against real sshd (pytest with that
venv's python on a copy of tests/), and one drill in the namespace lab. The whole deploy file and
a lab failover test run in `make wheel-check` (by hand: ~4 min).

Needs the package index once for the dependency wheelhouse (cached afterwards: see the script)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.zk, pytest.mark.timeout(600)]

SCRIPT = Path(__file__).resolve().parents[1] / "wheel_check.py"


def test_wheels_installed_in_an_empty_venv_run_the_agent_deploy_and_a_drill() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=570,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    print(out)
    assert proc.returncode == 0, out[-6000:]
    lines = [ln for ln in out.splitlines() if ln.startswith("wheel-check:")]
    text = "\n".join(lines)
    # every step said its piece, in order, from the installed copy
    for step in ("export:", "python -m build --wheel: hacluster-", "mail node: pip install", "lab install:",
                 "hacluster --help:", "hacluster config check:", "agent held role store", "2 passed",
                 "drill store-holder-power-off passed", "all passed"):
        assert step in text, (step, text)
    assert "/venv/lib/" in text and str(SCRIPT.parents[1]) + "/hacluster" not in text
    deployed = float(re.search(r"mail node: .*, ([0-9.]+) MB without pip and setuptools", text).group(1))
    assert deployed < 60, f"a mail node's venv is {deployed} MB as deployed (target: under 60)"
