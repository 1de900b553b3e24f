"""A mirrored store that comes back with a message both in its Maildir and in its queue (powered
off after the delivery, before the queue file was removed) must not send it to the holder again:
real Postfix on both sides, the real queue drain (hacluster.spool.drain.QueueDrain), the real
delivery agent in drain mode. Seen in `bench no-loss --spool mirrored` before the fix: 4 messages
delivered twice (the old holder's copy replicated, its queue drained to the new holder)."""

from __future__ import annotations

import smtplib
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from hacluster.spool.drain import QueueDrain, queued

from .loopback_postfix import start_postfix

PORT_OLD, PORT_HOLDER = 26331, 26332


def _msg(n: int) -> bytes:
    return (f"Message-ID: <drain{n}@client.example>\r\nFrom: a@client.example\r\nTo: inbox@lab.example\r\n"
            f"Subject: drain {n}\r\n\r\nbody {n}\r\n").encode()


def _send(port: int, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.sendmail("a@client.example", ["inbox@lab.example"], data)


def _wait(pred: Callable[[], bool], what: Callable[[], str], timeout_s: float = 90.0) -> None:
    end = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < end, what()
        time.sleep(0.3)


def _read(p: Path) -> str:
    try:
        return p.read_text()[-3000:]
    except OSError:
        return ""


def test_drain_skips_what_this_spool_already_holds() -> None:
    old = start_postfix(PORT_OLD, deliver_domain="lab.example", prefix="ho-dr-old-", hadeliver=True)
    holder = None
    drain = None
    work = Path(tempfile.mkdtemp(prefix="ho-dr-work-", dir="/var/tmp"))
    work.chmod(0o755)  # the drain instance (user postfix) must reach its data directory inside
    try:
        # the old holder's Postfix holds its mail back (as it does between accepting and delivering)
        subprocess.run(["postconf", "-c", old.config_dir, "-e", "defer_transports = hadeliver"], check=True, timeout=30)
        subprocess.run(["postfix", "-c", old.config_dir, "reload"], check=True, capture_output=True, timeout=30)
        time.sleep(1)
        _send(PORT_OLD, _msg(1))
        _send(PORT_OLD, _msg(2))
        queue_dir = old.base / "queue"
        _wait(lambda: queued(queue_dir) == 2, lambda: "two messages queued on the old holder:\n" + old.log())
        # message 1 reached its Maildir (record + copy) before the power-off; its queue file stayed
        lib = next(old.base.glob("hacluster-deliver-lib"))
        out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/env",
                              f"PYTHONPATH={lib}", "/usr/bin/python3", "-m", "hacluster.spool.deliver",
                              "--base", str(old.base / "mail"), "--mailbox", "inbox"],
                             input=_msg(1), capture_output=True, timeout=60)
        assert out.returncode == 0 and b"delivered <drain1@client.example>" in out.stdout, out
        subprocess.run(["postfix", "-c", old.config_dir, "stop"], capture_output=True, timeout=60)
        assert queued(queue_dir) == 2

        holder = start_postfix(PORT_HOLDER, deliver_domain="lab.example", prefix="ho-dr-new-", hadeliver=True)
        drain = QueueDrain(old.config_dir, f"[127.0.0.1]:{PORT_HOLDER}", work, interval_s=0.5).start()
        _wait(lambda: queued(queue_dir) == 0, lambda: "the drain emptied the old holder's queue:\n" + old.log()
              + _read(old.base / "deliver.log"))
        _wait(lambda: len(holder.delivered()) >= 1, lambda: "the holder got message 2:\n" + holder.log())
        time.sleep(2)  # anything else on its way would have arrived by now
        got = holder.delivered()
        assert [b"<drain2@client.example>" in m for m in got] == [True], [m[:200] for m in got]
        assert sum(b"<drain1@client.example>" in m for m in old.delivered()) == 1  # replication brings it
        log = (old.base / "deliver.log").read_text()
        assert "drain: <drain1@client.example> to inbox already delivered here" in log, log
        assert "drain: <drain2@client.example> to inbox forwarded" in log, log
    finally:
        if drain is not None:
            drain.close()
        if holder is not None:
            holder.stop()
        old.stop()
        subprocess.run(["rm", "-rf", str(work)], timeout=30)
