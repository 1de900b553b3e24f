"""Issue 13 items 2 and 3 in the whole lab (network namespaces, real Postfix, 3 ZooKeepers):

* a rolling change of timing: the standby store restarted on the `fast` profile while the holder
  still runs `default`; the holder's agent is frozen (SIGSTOP): the fast standby takes the VIP only
  after the holder's promised lease (ha.py rule 11), and no instant has two holders;
* the FallbackMX agent started while it cannot reach any ZooKeeper: its Postfix runs anyway, the
  agent keeps trying, and joins (and takes its role) once the partition heals.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from hacluster import clock
from hacluster.agent.claims import claims, overlaps, read_events
from hacluster_lab.lab.lab import Lab

from .running import running_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

PREFIX = "hrl-"  # its own: other lab tests use hcl-, hfa-
STATE = Path("/run/hacluster-lab-hr-test-rolling")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(STATE, PREFIX)


def _wait(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _log(lab: Lab, name: str) -> str:
    return lab.paths.agent_log(name).read_text(errors="replace")


def _holder(lab: Lab) -> str:
    return _wait(lambda: (lambda h: h[0] if len(h) == 1 else None)(lab.status()["roles"]["store"]), 30,
                 "one store holder")


def test_fast_standby_waits_out_a_frozen_default_holder(lab: Lab) -> None:
    holder = _holder(lab)
    other = "store2" if holder == "store1" else "store1"
    fast = lab.paths.node(other) / "fast.yml"
    text = lab.paths.spec.read_text()
    assert "profile: default" in text
    fast.write_text(text.replace("profile: default", "profile: fast", 1))
    lab.stop_agent(other)
    lab.start_agent(other, config=fast)
    log_from = len(_log(lab, other))
    _wait(lambda: f"{other} store: wait (holder {holder} term" in _log(lab, other)[log_from:], 30,
          f"{other} (fast) to wait on {holder}'s lease")
    assert lab.status()["roles"]["store"] == [holder]
    mon = lab.monitor(duration_s=60).start()
    try:
        rec = lab.fault(holder, "freeze")
        try:
            _wait(lambda: lab.status()["roles"]["store"] == [other], 15, f"{other} to take the VIP")
            time.sleep(0.5)
        finally:
            lab.fault(holder, "thaw")
    finally:
        rep = mon.stop()
    try:
        evs = read_events([lab.paths.claims(n) for n in ("store1", "store2")])
        assert overlaps(claims(evs, clock.now())) == [], "the fast standby acquired while the frozen holder was valid"
        assert rep.dual_holder_samples == 0, rep.dual_holder_intervals
        move = next(m for m in rep.moves if m["vip"] == "198.51.100.20")
        print(f"frozen default holder -> VIP on the fast {other} after {move['t_vip'] - rec['t_mono']:.3f}s")
        since = _log(lab, other)[log_from:]
        line = [ln for ln in since.splitlines() if f"{other} store: acquire (" in ln][-1]
        promised = lab.spec.timing.lease_s  # the lab's spec: the default profile
        assert f"(promised lease {promised:g}s) unchanged for " in line, line
        waited = float(line.split("unchanged for ")[1].split("s")[0])
        assert waited >= promised, line  # the holder's lease, not the fast profile's 0.3 s
        _wait(lambda: "demoted from term" in _log(lab, holder), 10, f"the thawed {holder} to demote")
    finally:
        # back to the lab's own spec for the tests after this one
        lab.stop_agent(other)
        lab.start_agent(other)


def test_fallback_agent_started_without_zookeeper_runs_postfix_and_joins_later(lab: Lab) -> None:
    zks = [h.name for h in lab.plan.of_kind("zk")]
    lab.stop_agent("fallback")
    lab.stop_mta("fallback")
    assert lab.status()["hosts"]["fallback"]["services"]["postfix"] is False
    log_from = len(_log(lab, "fallback"))
    lab.partition("fallback", zks)
    try:
        lab.start_agent("fallback")
        _wait(lambda: lab.status()["hosts"]["fallback"]["services"]["postfix"], 30,
              "the FallbackMX Postfix (run_on_standby) without ZooKeeper")
        _wait(lambda: _log(lab, "fallback")[log_from:].count("fallback: ZooKeeper unreachable (attempt") >= 2, 40,
              "two connection attempts")
        assert lab.agent_pid("fallback") is not None, _log(lab, "fallback")[log_from:][-3000:]
    finally:
        lab.heal()
    _wait(lambda: "fallback fallback: acquired lease" in _log(lab, "fallback")[log_from:], 40,
          "the fallback agent to join and take its role")
    assert "ZooKeeper reached after" in _log(lab, "fallback")[log_from:]
    assert lab.status()["hosts"]["fallback"]["services"] == {"postfix": True, "agent": True}
