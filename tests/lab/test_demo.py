"""`hacluster demo --keep --json`: stdout is the JSON result only (progress on stderr), the lab
stays up, and the next steps it prints work (operator commands from the router's namespace)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hacluster.lab import netns
from hacluster.lab.lab import Lab
from hacluster.lab.topology import DEFAULT_PREFIX

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

STATE = Path("/run/hacluster-lab-test-demo")


def test_demo_keep_json_leaves_a_lab_to_explore() -> None:
    env = {**os.environ, "HACLUSTER_LAB_STATE": str(STATE)}  # --keep uses the `lab` default state dir
    try:
        r = subprocess.run([sys.executable, "-m", "hacluster", "demo", "--keep", "--json"], env=env,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        result = json.loads(r.stdout)  # nothing but the JSON on stdout
        assert result["dual_holder_samples"] == 0
        assert result["holder_after"] != result["holder_before"]
        assert "the lab stays up" in r.stderr
        steps = [m.group(1) for m in re.finditer(r"^\[[\d:]+\]\s+(hacluster .*)$", r.stderr, re.M)]
        status_step = next(s for s in steps if s.startswith("hacluster lab exec router -- hacluster status"))
        assert netns.list_ns(DEFAULT_PREFIX), "the lab was torn down"
        # the printed step, with this interpreter's module instead of the entry point on PATH
        argv = status_step.split()
        i = argv.index("--")
        cmd = [sys.executable, "-m", "hacluster", "lab", "exec", "router", "--",
               sys.executable, "-m", "hacluster", *argv[i + 2:], "--json"]
        st = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stderr[-2000:]
        roles = json.loads(st.stdout)["roles"]
        assert roles["store"]["holder"] == result["holder_after"]
    finally:
        Lab.teardown(STATE, DEFAULT_PREFIX)
    assert not netns.list_ns(DEFAULT_PREFIX)
