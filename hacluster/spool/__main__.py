"""Run the replicator on its own (outside the agent): for OCF/Pacemaker setups, tests that kill a
holder mid-stream, and the throughput benchmark.

  python -m hacluster.spool serve  --path DIR --listen HOST:PORT --node NAME
  python -m hacluster.spool send   --path DIR --peer HOST:PORT [--peer ...] --token N --node NAME [--pidfile F]
  python -m hacluster.spool bench  [--messages N] [--size BYTES] [--json]

`serve` and `send` run until SIGTERM/SIGINT (`send` then drains for up to --drain-s).
Exit codes: 0 ok, 1 failed (e.g. stale token), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from .maildir import ensure_maildir
from .marker import StaleToken, claim
from .protocol import parse_peer
from .receiver import Receiver
from .sender import Sender

DEFAULT_PORT = 7925


def _stop_event() -> threading.Event:
    ev = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: ev.set())
    return ev


def cmd_serve(a: argparse.Namespace) -> int:
    host, port = parse_peer(a.listen, DEFAULT_PORT, listen=True)
    stop = _stop_event()
    rx = Receiver(Path(a.path), a.node, host, port, a.name).start()
    print(f"listening {host}:{rx.port}", flush=True)
    while not stop.wait(0.5):
        pass
    rx.close()
    return 0


def cmd_send(a: argparse.Namespace) -> int:
    peers = [parse_peer(p, DEFAULT_PORT) for p in a.peer]
    stop = _stop_event()
    try:
        claim(Path(a.path), a.token, a.node)
    except StaleToken as err:
        print(f"refusing: {err}", file=sys.stderr)
        return 1
    senders = [Sender(Path(a.path), peer, a.token, a.node, a.name, a.scan_interval_s).start() for peer in peers]
    if a.pidfile:
        Path(a.pidfile).write_text(f"{os.getpid()}\n")
    while not stop.wait(0.2):
        if not all(s.alive() for s in senders):
            break
    for s in senders:
        s.stop(a.drain_s)
    stale = [s for s in senders if s.state == "stale"]
    for s in stale:
        print(f"stale: {s.detail}", file=sys.stderr)
    return 1 if stale else 0


def _deliver(md: Path, i: int, data: bytes) -> None:
    name = f"{int(time.time())}.M{i}P{os.getpid()}.bench"
    tmp = md / "tmp" / name
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.link(tmp, md / "new" / name)
    tmp.unlink()


def bench(messages: int, size: int, base: Path | None = None, rate: float | None = None) -> dict[str, float | None]:
    """Two directories, a real receiver and sender on 127.0.0.1: time to mirror `messages` that
    arrive as fast as they can be written (or at `rate` per second), and the worst lag seen."""
    own = base is None
    base = Path(tempfile.mkdtemp(prefix="hacluster-spool-bench-")) if base is None else base
    rx = sender = None
    try:
        a, b = base / "holder", base / "standby"
        md = a / "example.org" / "bench"
        ensure_maildir(md)
        rx = Receiver(b, "standby").start()
        claim(a, 1, "holder")
        sender = Sender(a, ("127.0.0.1", rx.port), 1, "holder", "bench", scan_interval_s=5.0).start()
        deadline = time.monotonic() + 10
        while sender.client is None and time.monotonic() < deadline:
            time.sleep(0.01)
        data = os.urandom(size)
        max_lag_n, max_lag_s = 0, 0.0
        t0 = time.monotonic()
        for i in range(messages):
            if rate:
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            _deliver(md, i, data)
            if i % 10 == 0:
                n, age = sender.lag()
                max_lag_n, max_lag_s = max(max_lag_n, n), max(max_lag_s, age)
        written = time.monotonic() - t0
        synced = sender.wait_synced(max(30.0, messages * size / 20e6))
        total = time.monotonic() - t0
        copies = sum(len(os.listdir(b / "example.org" / "bench" / s)) for s in ("new", "cur"))
        return {"messages": messages, "size": size, "rate": rate, "synced": synced, "copies": copies,
                "write_s": round(written, 3), "total_s": round(total, 3),
                "messages_per_s": round(messages / total, 1), "mb_per_s": round(messages * size / total / 1e6, 1),
                "max_lag_messages": max_lag_n, "max_lag_s": round(max_lag_s, 3),
                "drain_after_last_write_s": round(total - written, 3)}
    finally:
        if sender is not None:
            sender.stop(0)
        if rx is not None:
            rx.close()
        if own:
            shutil.rmtree(base, ignore_errors=True)


def cmd_bench(a: argparse.Namespace) -> int:
    res = bench(a.messages, a.size, rate=a.rate)
    print(json.dumps(res) if a.json else "\n".join(f"{k}: {v}" for k, v in res.items()))
    return 0 if res["synced"] and res["copies"] == a.messages else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hacluster.spool", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="receive copies into DIR (standby side)")
    s.add_argument("--path", required=True)
    s.add_argument("--listen", required=True)
    s.add_argument("--node", required=True)
    s.add_argument("--name", default="spool")
    s = sub.add_parser("send", help="mirror DIR to a peer (holder side)")
    s.add_argument("--path", required=True)
    s.add_argument("--peer", required=True, action="append", help="HOST[:PORT], repeatable")
    s.add_argument("--token", type=int, required=True)
    s.add_argument("--node", required=True)
    s.add_argument("--name", default="spool")
    s.add_argument("--scan-interval-s", type=float, default=5.0)
    s.add_argument("--drain-s", type=float, default=5.0)
    s.add_argument("--pidfile")
    s = sub.add_parser("bench", help="replication throughput between two local directories")
    s.add_argument("--messages", type=int, default=1000)
    s.add_argument("--size", type=int, default=10_000)
    s.add_argument("--rate", type=float, default=None, help="messages per second (default: as fast as possible)")
    s.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return {"serve": cmd_serve, "send": cmd_send, "bench": cmd_bench}[a.cmd](a)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
