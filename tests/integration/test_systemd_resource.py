"""The `systemd` resource type against a real systemd (PID 1 of its own namespaces: systemd_box.py)
driving Debian's real `postfix@-.service`: start, monitor, stop through systemctl; Postfix runs in
its unit's cgroup, so it outlives the process that started it (an agent restart); a unit that
does not exist is ERR_INSTALLED, and its stop is a success."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from hacluster_lab.lab.postfix import master_cf
from .systemd_box import SystemdBox

pytestmark = [pytest.mark.timeout(240)]
SMTP_PORT = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800")) + 90

# the box's own Postfix (its /etc is the overlay's): loopback only, mail stays queued
MAIN_CF = """\
compatibility_level = 3.6
myhostname = box.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:1
alias_maps =
alias_database =
"""

# run inside the box by this venv's interpreter (the box's root is an overlay of ours)
DRIVE = """
import json, sys
from hacluster.resources.systemd_unit import SystemdUnit
u = SystemdUnit("postfix", sys.argv[2], 120.0)
out = {}
for step in sys.argv[1].split(","):
    out[step] = getattr(u, step.rstrip("0123456789"))().name
print(json.dumps(out))
"""


def drive(box: SystemdBox, steps: str, unit: str = "postfix@-.service") -> dict[str, str]:
    res = box.run(sys.executable, "-c", DRIVE, steps, unit, timeout=200)
    return json.loads(res.stdout.strip().splitlines()[-1])


def banner(timeout: float = 2.0) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", SMTP_PORT), timeout=timeout) as s:
            return s.recv(200).decode(errors="replace")
    except OSError:
        return None


@pytest.fixture
def box(tmp_path: Path) -> SystemdBox:
    b = SystemdBox(tmp_path)
    try:
        b.start()
        yield b
    finally:
        b.stop()


def test_systemd_resource_runs_postfix_through_systemctl(box: SystemdBox) -> None:
    box.write("/etc/postfix/main.cf", MAIN_CF)
    box.write("/etc/postfix/master.cf", master_cf(f"127.0.0.1:{SMTP_PORT}"))
    assert banner() is None

    got = drive(box, "monitor,start,monitor2,start2")
    if got.get("start") != "SUCCESS":
        print(box.run("systemctl", "status", "--no-pager", "-l", "postfix@-.service", check=False).stdout)
        print(box.run("journalctl", "--no-pager", "-u", "postfix@-.service", check=False).stdout)
    assert got == {"monitor": "NOT_RUNNING", "start": "SUCCESS", "monitor2": "SUCCESS", "start2": "SUCCESS"}, \
        (got, box.run("systemctl", "status", "--no-pager", "-l", "postfix@-.service", check=False).stdout,
         box.run("journalctl", "--no-pager", "-n", "30", check=False).stdout)
    # the process that started it has exited (as an agent does on restart): Postfix still serves,
    # from the unit's own cgroup
    b = banner(10)
    assert b and b.startswith("220 box.example"), b
    assert box.run("systemctl", "is-active", "postfix@-.service").stdout.strip() == "active"
    cgroup = box.run("systemctl", "show", "-p", "ControlGroup", "--value", "postfix@-.service").stdout.strip()
    assert cgroup.endswith("/postfix@-.service"), cgroup

    got = drive(box, "stop,monitor,stop2")
    assert got == {"stop": "SUCCESS", "monitor": "NOT_RUNNING", "stop2": "SUCCESS"}, got
    deadline = time.monotonic() + 10
    while banner(0.5) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert banner(0.5) is None


def test_a_unit_systemd_does_not_know(box: SystemdBox) -> None:
    got = drive(box, "monitor,start,stop", unit="hacluster-no-such-unit.service")
    assert got == {"monitor": "ERR_INSTALLED", "start": "ERR_INSTALLED", "stop": "SUCCESS"}, got
