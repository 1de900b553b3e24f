"""Graceful demote in the lab (hacluster.graceful rule 21): an SMTP transaction in flight on the
store VIP when the operator switches the role over is finished by the old holder (250) before the
VIP moves, while a *new* connection to the VIP is refused meanwhile (the sender tries its next
route); the message is delivered once. Without the drain the VIP would move under the session
(the switchover stops the VIP at once) and its end-of-data would get no reply."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster_lab.lab.demo import store_holder
from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.mailload import lab_stores, scan_maildirs
from hacluster_lab.lab.netns import in_ns

from .running import running_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(200)]

PREFIX = "hgd-"
STATE = Path("/run/hacluster-lab-hgd-test")

# In the client namespace: open a transaction up to the middle of DATA, say READY, wait for GO,
# finish it and print the end-of-data reply code; PROBE: try a fresh connection, print how it went
# (and the banner's host: who answers on the VIP).
SESSION = r'''
import socket, sys
vip, msgid = sys.argv[1], sys.argv[2]
s = socket.create_connection((vip, 25), timeout=20)
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line
reply()
for cmd in (b"EHLO client.lab.example", b"MAIL FROM:<t@client.lab.example>", b"RCPT TO:<alice@lab.example>", b"DATA"):
    s.sendall(cmd + b"\r\n"); reply()
s.sendall(b"Message-ID: " + msgid.encode() + b"\r\nSubject: in flight\r\n\r\nfirst half\r\n")
print("READY", flush=True)
for line in sys.stdin:
    if line.startswith("PROBE"):
        try:
            p = socket.create_connection((vip, 25), timeout=2)
            banner = p.recv(200).split()
            print("PROBE", "accepted" if banner[:1] == [b"220"] else "other",
                  banner[1].decode().split(".")[0] if len(banner) > 1 else "?", flush=True)
            p.close()
        except ConnectionRefusedError:
            print("PROBE refused", flush=True)
        except OSError as e:
            print("PROBE error", type(e).__name__, flush=True)
    elif line.startswith("GO"):
        try:
            s.sendall(b"second half\r\n.\r\n")
            r = reply()
            print("DONE", r[:3].decode() or "none", flush=True)
        except OSError as e:
            print("DONE error", type(e).__name__, flush=True)
        break
'''


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(STATE, PREFIX)


def _ask(p: subprocess.Popen, line: str) -> str:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(line + "\n")
    p.stdin.flush()
    return p.stdout.readline().strip()


def test_switchover_lets_the_transaction_in_flight_finish(lab: Lab) -> None:
    old = store_holder(lab)
    vip = str(lab.spec.roles["store"].vips[0].ip)
    msgid = f"<inflight.{int(time.time())}@client.lab.example>"
    sess = subprocess.Popen(in_ns(lab.ns("client"), [sys.executable, "-c", SESSION, vip, msgid]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sw: subprocess.Popen | None = None
    try:
        assert sess.stdout is not None and sess.stdout.readline().strip() == "READY"
        sw = subprocess.Popen(in_ns(lab.ns("client"), [sys.executable, "-m", "hacluster", "switchover", "store",
                                                       "--yes", "--wait", "20", "--json", "--config", str(lab.paths.spec)]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the holder drains: new connections are refused while the VIP stays with the old holder
        end, probe = time.monotonic() + 30, ""
        while time.monotonic() < end:
            probe = _ask(sess, "PROBE")  # "PROBE accepted HOST": the banner names who has the VIP
            if probe != f"PROBE accepted {old}":
                break
            time.sleep(0.01)
        assert probe == "PROBE refused", f"no drain seen: {probe}"
        done = _ask(sess, "GO")
        assert done == "DONE 250", done  # finished by the old holder, before its VIP went
        out, err = sw.communicate(timeout=60)
        assert sw.returncode == 0, err[-2000:]
        assert store_holder(lab) != old
        assert json.loads(out.strip().splitlines()[-1])
        # delivered exactly once (the store's queue hands it to the delivery agent)
        end = time.monotonic() + 60
        found: list = []
        while time.monotonic() < end and not found:
            found = scan_maildirs(lab_stores(lab), {msgid}).get(msgid, [])
            time.sleep(0.2)
        assert len({d.unique for d in found}) == 1, found
        log = lab.paths.agent_log(old).read_text(errors="replace")
        assert "rule 21" in log and "drained for" in log
    finally:
        for p in (sess, sw):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
