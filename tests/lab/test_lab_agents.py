"""The whole lab with real agents: both stores run Postfix (the `mta` resource with the lab's
per-node config dir and `standby: running`, started by each agent), only the holder has the VIP;
mail flows by MX through the VIP to the holder's Maildir; powering the holder off moves the VIP,
the mail still arrives, and the monitor sees no dual holder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from hacluster_lab.lab.lab import Lab

from .running import running_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

PREFIX = "hfa-"  # its own: other lab tests use hcl-
STATE = Path("/run/hacluster-lab-hf-test-agents")
USER = "user@lab.example"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(STATE, PREFIX)


def _logs(lab: Lab) -> str:
    """The stores' agent log tails: what a failed takeover assertion needs to be understood."""
    out = []
    for name in ("store1", "store2"):
        try:
            lines = [ln for ln in lab.paths.agent_log(name).read_text().splitlines() if " renew (" not in ln]
        except OSError:
            lines = ["(no log)"]
        out.append(f"--- {name}\n" + "\n".join(lines[-25:]))
    return "\n".join(out)


def _holder(lab: Lab, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        holders = lab.status()["roles"]["store"]
        if len(holders) == 1:
            return holders[0]
        time.sleep(0.1)
    raise AssertionError(f"no single store holder within {timeout_s}s: {lab.status()['roles']}")


def test_both_stores_run_postfix_only_the_holder_has_the_vip_mail_flows(lab: Lab) -> None:
    holder = _holder(lab, 20)
    other = "store2" if holder == "store1" else "store1"
    deadline = time.monotonic() + 20  # the standby's agent starts its Postfix in the background
    while lab.status()["hosts"][other]["services"] != {"postfix": True, "agent": True}:
        assert time.monotonic() < deadline, lab.status()["hosts"][other]["services"]
        time.sleep(0.1)
    st = lab.status()
    assert st["hosts"][holder]["services"] == {"postfix": True, "agent": True}
    assert st["roles"]["store"] == [holder]
    token = lab.send_mail(USER)
    store, _ = lab.wait_mail(token, timeout_s=30)
    assert store == holder


def test_power_off_holder_moves_role_and_mail_follows(lab: Lab) -> None:
    old = _holder(lab, 20)
    new = "store2" if old == "store1" else "store1"
    log_from = lab.paths.agent_log(new).stat().st_size
    mon = lab.monitor(duration_s=60).start()
    try:
        rec = lab.fault(old, "power-off")
        deadline = rec["t_mono"] + 15
        while lab.status()["roles"]["store"] != [new]:
            assert time.monotonic() < deadline, (lab.status()["roles"], _logs(lab))
            time.sleep(0.05)
        token = lab.send_mail(USER)
        store, _ = lab.wait_mail(token, timeout_s=30)
        assert store == new
    finally:
        rep = mon.stop()
    assert rep.dual_holder_samples == 0, rep.dual_holder_intervals
    move = next(m for m in rep.moves if m["vip"] == "198.51.100.20")
    assert (move["from"], move["to"]) == (old, new)
    print(f"power-off -> VIP on {new}: {move['t_vip'] - rec['t_mono']:.3f}s")
    assert move["t_vip"] > rec["t_mono"]
    # the new holder probed for the VIP before its takeover (ha.py rule 10), not after the CAS
    since = lab.paths.agent_log(new).read_text()[log_from:]
    assert "(rest of a probe sent ahead)" in since, "\n".join(ln for ln in since.splitlines() if " renew (" not in ln)
    lab.fault(old, "power-on")
    time.sleep(2 * lab.spec.timing.lease_s)
    assert lab.status()["roles"]["store"] == [new]  # the rebooted host doesn't grab the VIP back
    # its agent brings its Postfix back as a standby's: ready for the next takeover
    deadline = time.monotonic() + 20
    while not lab.status()["hosts"][old]["services"]["postfix"]:
        assert time.monotonic() < deadline, lab.status()["hosts"][old]["services"]
        time.sleep(0.1)
    assert lab.status()["roles"]["store"] == [new]


def test_agent_killed_holder_loses_the_vip_to_the_standby(lab: Lab) -> None:
    """kill -9 of the holder's agent: its guard removes the VIP, the standby takes over after the
    lease, Postfix keeps running on both, and no instant has two holders."""
    old = _holder(lab, 20)
    new = "store2" if old == "store1" else "store1"
    mon = lab.monitor(duration_s=60).start()
    try:
        rec = lab.fault(old, "kill-agent")
        deadline = rec["t_mono"] + 15
        while lab.status()["roles"]["store"] != [new]:
            assert time.monotonic() < deadline, (lab.status()["roles"], _logs(lab))
            time.sleep(0.05)
    finally:
        rep = mon.stop()
    assert rep.dual_holder_samples == 0, rep.dual_holder_intervals
    assert lab.status()["hosts"][old]["services"] == {"postfix": True, "agent": False}
    lab.start_agent(old)
