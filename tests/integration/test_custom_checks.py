"""The custom checks on real parts: the link check reads the kernel's link state in a
namespace of our own (a veth whose peer goes down: carrier lost); a command check that starts
failing on the holder of real agents around a real ZooKeeper makes it hand the role over
(on_fail demote, keepalived's FAULT), and the failing node is no candidate until it passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster_lab.localcluster import LocalCluster, spec_text
from .agents import running
from .waiting import wait_for

ROLE = "store"


def test_link_check_sees_the_carrier_go() -> None:
    ns = f"hcif{os.getpid() % 100000}"
    code = ("from hacluster.health.link import LinkProbe; "
            "r = LinkProbe('hca0')(1.0); print(r.severity, r.detail)")

    def probe() -> str:
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()

    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "hca0", "type", "veth", "peer", "name", "hcb0"], check=True)
        assert probe().startswith("crit hca0: operstate down")
        subprocess.run(["ip", "-n", ns, "link", "set", "hca0", "up"], check=True)
        assert probe().startswith("crit hca0: operstate lowerlayerdown")  # up, but its peer (the cable) is not
        subprocess.run(["ip", "-n", ns, "link", "set", "hcb0", "up"], check=True)
        wait_for(lambda: probe().startswith("ok hca0: operstate up"), 10, "hca0 up with carrier")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def lc(zk_single, tmp_path: Path) -> Iterator[LocalCluster]:
    text = spec_text(zk_single.hosts, n=2, cluster=f"hcc{os.getpid()}") + (
        "health:\n  store:\n"
        "    - {check: command, exec: \"test ! -e {state_dir}/BROKEN || { echo ldap gone; exit 2; }\", "
        "interval_s: 0.2, timeout_s: 2, rise: 1, fall: 1}\n")
    c = LocalCluster(zk_single.hosts, tmp_path / "agents", n=2, spec_text_=text)
    with running(c):
        yield c


@pytest.mark.zk
def test_a_failing_command_check_moves_the_role(lc: LocalCluster) -> None:
    def holder() -> str | None:
        held = lc.believed_holders(ROLE)
        return held[0] if len(held) == 1 else None

    def status() -> dict:
        out = subprocess.run([sys.executable, "-m", "hacluster", "status", "--json", "--config", str(lc.spec_path)],
                             capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout)

    first = wait_for(holder, 30, "a holder")
    other = next(n for n in lc.nodes if n != first)
    (lc.state_dir(first) / "BROKEN").touch()
    wait_for(lambda: holder() == other, 20, "the role on the node whose check passes")
    m = wait_for(lambda: (st := status()["members"][first]) and not st["healthy"] and st, 20, "status shows why")
    assert any("command: exit 2+, killed or timed out" in r and "ldap gone" in r for r in m["reasons"]), m["reasons"]
    # passing again: a candidate once more, but nothing moves back by itself
    (lc.state_dir(first) / "BROKEN").unlink()
    wait_for(lambda: status()["members"][first]["healthy"], 20, "healthy again")
    assert holder() == other
