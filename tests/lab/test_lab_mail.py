"""Mail through the lab's real Postfix instances: client -> MX (dnsmasq) -> relay -> store VIP ->
Maildir, the backup MX when the primary is powered off, and the FallbackMX when the VIP is gone.

These run without agents: the store Postfix and the VIP are put on store1 by hand (what the
agent's `mta` and `vip` resources do), so they test the lab's mail path, not the failover."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from hacluster_lab.lab.lab import Lab

from .running import running_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

PREFIX = "hcl-"
STATE = Path("/run/hacluster-lab-test-mail")
USER = "user@lab.example"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(STATE, PREFIX, agents=False, store_mta=True)


def _received(path: Path) -> list[str]:
    """The `Received: from X` hosts of a delivered message, newest first."""
    return [line.split()[2] for line in path.read_text().splitlines() if line.startswith("Received: from")]


def test_mail_by_mx_reaches_store_maildir_via_relay1(lab: Lab) -> None:
    token = lab.send_mail(USER)
    store, path = lab.wait_mail(token, timeout_s=30)
    assert store == "store1"
    assert path.parent.name == "new" and path.parent.parent.name == "user"
    assert _received(path) == ["relay1.lab.example", "client.lab.example"]
    # the client looked the relays up by MX in the lab's DNS, not by a configured relayhost
    log = lab.paths.maillog("client").read_text()
    assert f"to=<{USER}>, relay=relay1.lab.example[192.0.2.11]:25" in log


def test_relay1_powered_off_mail_goes_via_relay2(lab: Lab) -> None:
    before = len(lab.faults())
    lab.fault("relay1", "power-off")
    try:
        st = lab.status()
        assert st["hosts"]["relay1"]["powered_off"] is True
        assert st["hosts"]["relay1"]["processes"] == 0
        assert st["hosts"]["relay1"]["links"]["eth0"]["up"] is False
        token = lab.send_mail(USER)
        store, path = lab.wait_mail(token, timeout_s=45)
        assert store == "store1"
        assert _received(path)[0] == "relay2.lab.example"
    finally:
        lab.fault("relay1", "power-on")
    st = lab.status()
    assert st["hosts"]["relay1"]["powered_off"] is False
    assert st["hosts"]["relay1"]["services"]["postfix"] is True
    faults = lab.faults()[before:]
    assert [(f["fault"], f["node"]) for f in faults] == [("power-off", "relay1"), ("power-on", "relay1")]
    assert faults[0]["t_mono"] < faults[1]["t_mono"] and faults[0]["t_wall"] < faults[1]["t_wall"]
    assert abs(faults[0]["t_wall"] - time.time()) < 120
    # relay1 is back as the primary MX
    token = lab.send_mail(USER)
    _, path = lab.wait_mail(token, timeout_s=30)
    assert _received(path)[0] == "relay1.lab.example"


def test_vip_down_relay_hands_mail_to_fallback_which_retries(lab: Lab) -> None:
    handed = "relay=192.0.2.13[192.0.2.13]:25"  # relay1's log line for a hand-off to the fallback
    before = lab.paths.maillog("relay1").read_text().count(handed)
    lab.release_vip("store1")
    try:
        token = lab.send_mail(USER)
        deadline = time.monotonic() + 30
        while lab.paths.maillog("relay1").read_text().count(handed) == before:
            assert time.monotonic() < deadline, "relay1 never handed the mail to the fallback"
            time.sleep(0.1)
        # the fallback tries the VIP, fails (connect timeout), keeps the mail in its queue
        while "status=deferred (connect to 198.51.100.20" not in lab.paths.maillog("fallback").read_text():
            assert time.monotonic() < deadline, "the fallback never tried the VIP"
            time.sleep(0.1)
        assert lab.find_mail(token) == []
    finally:
        lab.hold_vip("store1")
    store, path = lab.wait_mail(token, timeout_s=45)  # the fallback's next queue run delivers it
    assert _received(path)[:2] == ["fallback.lab.example", "relay1.lab.example"]


def test_status_json_and_exec_exit_code(lab: Lab) -> None:
    base = [sys.executable, "-m", "hacluster", "lab"]
    st = json.loads(subprocess.run([*base, "status", "--json", "--state-dir", str(STATE)], capture_output=True,
                                   text=True, check=True, timeout=60).stdout)
    assert st["roles"]["store"] == ["store1"]
    assert st["vips"] == {"198.51.100.20": ["store1"], "fd00:51::20": ["store1"]}
    assert st["hosts"]["store1"]["services"] == {"postfix": True, "agent": False}
    res = subprocess.run([*base, "exec", "--state-dir", str(STATE), "client", "--", "sh", "-c", "exit 7"], timeout=30)
    assert res.returncode == 7
    # exec really runs in the namespace: the client sees its own address and not the host's
    out = subprocess.run([*base, "exec", "--state-dir", str(STATE), "client", "--", "ip", "-o", "-4", "addr"],
                         capture_output=True, text=True, timeout=30).stdout
    assert "203.0.113.10/24" in out and len(out.splitlines()) == 2  # lo + eth0
    bad = subprocess.run([*base, "exec", "--state-dir", str(STATE), "nosuch", "--", "true"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "no lab host named 'nosuch'" in bad.stderr
