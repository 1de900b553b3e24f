"""The systemd unit's sandbox against a real Postfix: started, fed, read and stopped the way the
agent does it (`postfix start`, SMTP, `sendmail`, `postqueue -j`, `postfix stop`) with exactly the
unit's CapabilityBoundingSet and NoNewPrivileges (setpriv, as root: what systemd would apply), so
a capability dropped from the unit that Postfix needs fails here, not on a mail host.

NoNewPrivileges=yes means `sendmail`'s setgid `postdrop` runs without its group: root's
DAC_OVERRIDE is what lets it write the maildrop queue."""

from __future__ import annotations

import re
import smtplib
import subprocess
from pathlib import Path

import pytest

from .loopback_postfix import start_postfix
from .waiting import wait_for

pytestmark = pytest.mark.timeout(120)

UNIT = Path(__file__).resolve().parents[2] / "agents" / "hacluster-agent.service"
PORT = 28000 + 777  # loopback only; the instance is this test's own


def unit_caps() -> list[str]:
    m = re.search(r"^CapabilityBoundingSet=(.*)$", UNIT.read_text(), re.M)
    assert m and re.search(r"^NoNewPrivileges=yes$", UNIT.read_text(), re.M)
    return m.group(1).split()


def sandbox(caps: list[str]) -> tuple[str, ...]:
    return ("setpriv", "--no-new-privs", "--bounding-set", "-all," + ",".join("+" + c[4:].lower() for c in caps), "--")


def test_postfix_works_with_the_units_capabilities_only() -> None:
    wrap = sandbox(unit_caps())
    pf = start_postfix(PORT, deliver_domain="lab.example", wrap=wrap)
    try:
        with smtplib.SMTP("127.0.0.1", PORT, timeout=10) as s:
            s.sendmail("a@x.example", ["u@lab.example"], "Subject: smtp\n\nhi\n")
        drop = subprocess.run([*wrap, "sendmail", "-C", pf.config_dir, "-f", "b@x.example", "u@lab.example"],
                              input="Subject: sendmail\n\nhi\n", text=True, capture_output=True, timeout=30)
        assert drop.returncode == 0, drop.stderr
        wait_for(lambda: len(pf.delivered()) == 2, 30, "both messages delivered into the Maildir")
        q = subprocess.run([*wrap, "postqueue", "-c", pf.config_dir, "-j"], capture_output=True, text=True, timeout=30)
        assert q.returncode == 0 and q.stderr == "", q.stderr
        stop = subprocess.run([*wrap, "postfix", "-c", pf.config_dir, "stop"], capture_output=True, text=True, timeout=30)
        assert stop.returncode == 0, stop.stderr
        assert "fatal" not in pf.log(), pf.log()
    finally:
        pf.stop()


@pytest.mark.parametrize("cap", ["CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER", "CAP_SETUID"])
def test_each_file_and_identity_capability_is_needed(cap: str) -> None:
    """The check can fail: without one of these `postfix start` refuses (queue directories it
    cannot create or fix, or postsuper cannot drop to the postfix user)."""
    with pytest.raises(AssertionError, match="integrity check failed|Operation not permitted|Permission denied"):
        pf = start_postfix(PORT + 1, wrap=sandbox([c for c in unit_caps() if c != cap]))
        pf.stop()
