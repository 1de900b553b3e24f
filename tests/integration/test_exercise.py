"""The routine exercise on real agents and a real ZooKeeper: at its time the holder switches the
role over to the other node, takes it back after `hold`, records it in the history and mails the
report (here into the notify outbox: the local cluster has no relays)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from hacluster_lab.localcluster import LocalCluster, spec_text
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]


def test_exercise_switches_over_and_back_and_reports(zk_single, tmp_path: Path) -> None:
    cluster = f"hex{os.getpid()}"
    at = datetime.now().strftime("%H:%M")  # a series every 8 s through this minute: due within 8 s
    text = spec_text(zk_single.hosts, n=2, cluster=cluster).replace(
        "    tier: store\n    resources:", "    tier: store\n    exercise: {every: 8s, at: \"" + at + "\", hold: 1s}\n"
        "    resources:", 1).replace("mail: {domain: demo.example}", "mail: {domain: demo.example, admin: ops@demo.example}") \
        + "notify:\n  sendmail: null\n  outbox: \"{state_dir}/outbox\"\n"
    lc = LocalCluster(zk_single.hosts, tmp_path / "c", cluster=cluster, spec_text_=text)
    lc.start_all()
    try:
        first = wait_for(lambda: (h := lc.believed_holders("store")) and len(h) == 1 and h[0], 30, "a holder")
        other = next(n for n in lc.nodes if n != first)

        def history() -> list[dict]:
            out = subprocess.run([sys.executable, "-m", "hacluster", "history", "--json", "--config", str(lc.spec_path)],
                                 capture_output=True, text=True, timeout=60)
            return json.loads(out.stdout)["history"]

        done = wait_for(lambda: [e for e in history() if e.get("event") == "exercise-done"], 60, "an exercise done")
        assert done[0]["node"] == first and done[0]["to"] == other
        events = [e["event"] for e in history() if e.get("role") == "store"]
        assert "exercise-started" in events
        assert [e["node"] for e in history() if e.get("event") == "acquired"][-2:] == [other, first]
        outbox = lc.state_dir(first) / "outbox"
        def read(path: Path) -> str:  # the mail as a person reads it (quoted-printable decoded)
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body = msg.get_body(("plain",))
            return str(msg["Subject"]) + "\n" + (body.get_content() if body is not None else "")

        # the outbox also gets the role-change notifications, which may come first: wait for the report
        mails = wait_for(lambda: [m for m in (read(p) for p in sorted(outbox.glob("*"))) if "exercise of store" in m]
                         if outbox.is_dir() else [], 20, "the report mail")
        assert any(f"exercise of store: {first} -> {other}" in m and "the standby works" in m for m in mails), mails
        assert not lc.dual_holders()
    finally:
        lc.stop()
        lc.print_log_tails(15)
