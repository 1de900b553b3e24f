"""`hacluster demo --keep --json`: stdout is the JSON result only (progress on stderr), the lab
stays up, and the next steps it prints work: with no spec configured on the host, `hacluster
status` and `switchover` reach the lab by themselves (hacluster.lab_access)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hacluster_lab.lab import netns
from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.topology import DEFAULT_PREFIX

from .running import host_env, host_hacluster

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

STATE = Path("/run/hacluster-lab-test-demo")


def test_demo_keep_json_leaves_a_lab_to_explore() -> None:
    # --keep uses the `lab` default state dir; no spec configured, so operator commands find the lab
    env = host_env(STATE)
    try:
        r = subprocess.run([sys.executable, "-m", "hacluster", "demo", "--keep", "--json"], env=env,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        result = json.loads(r.stdout)  # nothing but the JSON on stdout
        assert result["dual_holder_samples"] == 0
        assert result["holder_after"] != result["holder_before"]
        # the second scenario: both stores off, the mail waits on the FallbackMX, then drains, once
        fq = result["fallback_queue"]
        assert (fq["fallback_peak"], fq["fallback_after"], fq["copies"]) == (5, 0, 5), fq
        assert re.search(r"MTA queues \(hacluster status\): fallback 5, relay1 \d+, relay2 \d+", r.stderr), r.stderr[-3000:]
        assert "the FallbackMX queue drained in" in r.stderr
        assert "the lab stays up" in r.stderr
        steps = [m.group(1) for m in re.finditer(r"^\[[\d:]+\]\s+(hacluster .*)$", r.stderr, re.M)]
        assert netns.list_ns(DEFAULT_PREFIX), "the lab was torn down"
        # the printed next step: `hacluster status` on the host, no spec anywhere -> the lab
        assert "hacluster status" in steps
        st = host_hacluster(STATE, "status", "--json")  # whatever this host has in /etc/hacluster
        assert st.returncode == 0, st.stderr[-2000:]
        assert f"using the lab up at {STATE}" in st.stderr
        roles = json.loads(st.stdout)["roles"]
        assert roles["store"]["holder"] == result["holder_end"]
        # the operator's own switchover goes through the same way in
        sw = host_hacluster(STATE, "switchover", "store", "--yes", timeout=90)
        assert sw.returncode == 0, sw.stderr[-2000:]
        st2 = host_hacluster(STATE, "status", "--json")
        assert json.loads(st2.stdout)["roles"]["store"]["holder"] not in (None, result["holder_end"])
    finally:
        Lab.teardown(STATE, DEFAULT_PREFIX)
    assert not netns.list_ns(DEFAULT_PREFIX)
