"""`hacluster demo`: the README's main job on the embedded default cluster.

Bring the namespace lab up (real Postfix, dnsmasq, a 3-server ZooKeeper, one agent per node),
send mail by MX from the client, power off the store holder, show the VIP move, the SMTP banner
back on the VIP and the mail still arriving, then tear everything down (also on failure).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from .lab import Lab

#: runs in the client namespace: a new non-blocking connection to VIP:25 every 10 ms (a SYN lost
#: to a stale neighbour entry is not retried by the kernel for 1 s, so one socket at a time would
#: measure its timeout, not the failover); prints CLOCK_MONOTONIC of the first 220 banner after an
#: outage, or (with a third argument) of the first 220 banner that does not name that host
SMTP_WAITER = r"""
import select, socket, sys, time
vip, limit = sys.argv[1], float(sys.argv[2])
avoid = sys.argv[3].encode() if len(sys.argv) > 3 else None
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
print("ready", flush=True)
sys.stdin.readline()              # go: the fault is about to happen
end = time.monotonic() + limit
seen_down = False
pending = {}                      # socket -> [opened at, "conn" | "read", bytes so far]
next_at = time.monotonic()
while time.monotonic() < end:
    now = time.monotonic()
    if now >= next_at:
        next_at = now + 0.01
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect((vip, 25))
        except BlockingIOError:
            pass
        except OSError:
            s.close(); s = None; seen_down = True
        if s is not None:
            pending[s] = [now, "conn", b""]
    for s, (t, _, _) in list(pending.items()):
        if now - t > 0.3:
            s.close(); del pending[s]; seen_down = True
    rs = [s for s, v in pending.items() if v[1] == "read"]
    ws = [s for s, v in pending.items() if v[1] == "conn"]
    rr, ww, _ = select.select(rs, ws, [], max(0.0, next_at - time.monotonic()))
    for s in ww:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            s.close(); del pending[s]; seen_down = True
        else:
            pending[s][1] = "read"
    for s in rr:
        try:
            data = s.recv(512)
        except OSError:
            data = b""
        pending[s][2] += data
        banner = pending[s][2]
        if data and b"\n" not in banner:
            continue
        s.close(); del pending[s]
        if banner.startswith(b"220") and ((avoid is not None and avoid not in banner) or (avoid is None and seen_down)):
            print(time.monotonic(), flush=True); sys.exit(0)
        if not banner.startswith(b"220"):
            seen_down = True
print("timeout", flush=True)
"""


class SmtpWaiter:
    """Measures fault -> first SMTP 220 through the VIP as the client sees it: after an outage, or
    with `avoid` (the old holder's myhostname) the first banner from any other host -- the only
    sound definition when the old holder may keep answering (keepalived after kill -9)."""

    def __init__(self, lab: Lab, vip: str, limit_s: float = 30.0, avoid: str | None = None) -> None:
        self.p = subprocess.Popen(["ip", "netns", "exec", lab.ns("client"), sys.executable, "-c", SMTP_WAITER, vip,
                                   str(limit_s), *([avoid] if avoid else [])],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout is not None and self.p.stdout.readline().strip() == "ready"

    def go(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def result(self, timeout: float = 40.0) -> float | None:
        out, _ = self.p.communicate(timeout=timeout)
        line = out.strip().splitlines()[-1] if out.strip() else "timeout"
        return None if line == "timeout" else float(line)


Say = Callable[[str], None]


def progress_printer(err: bool = False) -> Say:
    """Timestamped progress lines; `err`: on stderr (so `--json` leaves stdout to the JSON)."""
    def say(msg: str) -> None:
        click.echo(f"[{time.strftime('%H:%M:%S')}] {msg}", err=err)
    return say


def next_steps(lab: Lab) -> list[str]:
    """What to try on a lab left up. With no spec configured on the host, operator commands use
    the lab at the default state dir by themselves (hacluster.lab_access); another state dir
    needs the router's namespace and the lab's spec spelled out."""
    from .state import DEFAULT_STATE_DIR

    if lab.paths.root == Path(DEFAULT_STATE_DIR):
        ops = ["hacluster status", "hacluster switchover store", "hacluster history",
               "hacluster web                             # the status page at http://127.0.0.1:8750"]
    else:
        ops = [f"hacluster lab exec router -- hacluster {c} --config {lab.paths.spec}"
               for c in ("status", "switchover store", "history")]
    return [*ops,
            "hacluster lab fault store1 raid-degraded  # then: lab fault store1 raid-repair",
            "hacluster lab fault store1 power-off      # then: lab fault store1 power-on",
            "hacluster lab monitor --duration 10       # who holds the VIP, sampled",
            "hacluster lab down                        # remove everything"]


def cluster_queues(lab: Lab) -> dict[str, int | None]:
    """Each MTA's queue total as the cluster reports it (`hacluster status --json`, the agents'
    queue checks in their heartbeats), run where the lab's ZooKeeper answers; {} if it failed."""
    r = lab.exec("router", [sys.executable, "-m", "hacluster", "status", "--json", "--config", str(lab.paths.spec)],
                 capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return {}
    try:
        queues = json.loads(r.stdout).get("queues") or {}
    except ValueError:
        return {}
    return {n: (None if q.get("total") is None else int(q["total"])) for n, q in queues.items()}


def _wait_queues(lab: Lab, pred: Callable[[dict[str, int | None]], bool], timeout_s: float) -> dict[str, int | None]:
    end = time.monotonic() + timeout_s
    while True:
        q = cluster_queues(lab)
        if q and pred(q):
            return q
        if time.monotonic() > end:
            raise click.ClickException(f"the queues never got there within {timeout_s:g}s: {q}")
        time.sleep(0.5)


def _fmt(q: dict[str, int | None]) -> str:
    return ", ".join(f"{n} {'?' if v is None else v}" for n, v in q.items())


def queue_story(lab: Lab, user: str, say: Say, messages: int = 5) -> dict[str, Any]:
    """Both stores lose power: no store takes mail, the relays hand it to the FallbackMX, whose queue
    grows (as `hacluster status` shows it, FallbackMX first); power back, a holder again, the
    FallbackMX's queue drains into the store and every message arrives once."""
    stores = [n for n, s in lab.spec.nodes.items() if s.tier == "store"]
    fallback = [n for n, s in lab.spec.nodes.items() if s.tier == "fallback"]
    for s in stores:
        lab.fault(s, "power-off")
    say(f"POWER OFF {' and '.join(stores)}: no store takes mail; sending {messages} messages by MX")
    t0 = time.monotonic()
    tokens = [lab.send_mail(user, f"during the store outage {i + 1}") for i in range(messages)]
    peak = _wait_queues(lab, lambda q: sum(q.get(f) or 0 for f in fallback) >= messages, 60)
    say(f"MTA queues (hacluster status): {_fmt(peak)} -- the relays could not reach the store VIP and "
        f"handed the mail to the FallbackMX ({time.monotonic() - t0:.1f}s)")
    for s in stores:
        lab.fault(s, "power-on")
    holder = store_holder(lab, timeout=60)
    say(f"powered {' and '.join(stores)} back on; {holder} holds the store VIP again")
    t1 = time.monotonic()
    for f in fallback:  # what an operator does once the store is back: retry now, not at the next backoff
        lab.flush_queue(f)
    say(f"postqueue -f on the FallbackMX ({', '.join(fallback)})")
    where = {lab.wait_mail(t, timeout_s=60)[0] for t in tokens}
    copies = sum(len(lab.find_mail(t)) for t in tokens)
    after = _wait_queues(lab, lambda q: all((q.get(f) or 0) == 0 for f in fallback), 30)
    drained = time.monotonic() - t1
    say(f"the FallbackMX queue drained in {drained:.1f}s: all {messages} messages arrived in "
        f"{', '.join(sorted(where))}'s Maildir ({copies} copies); MTA queues now: {_fmt(after)}")
    return {"messages": messages, "peak": peak, "after": after, "fallback_peak": sum(peak.get(f) or 0 for f in fallback),
            "fallback_after": sum(after.get(f) or 0 for f in fallback), "drain_s": round(drained, 3),
            "delivered_to": sorted(where), "copies": copies, "holder": holder}


def store_holder(lab: Lab, timeout: float = 30.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        holders = lab.status()["roles"].get("store") or []
        if len(holders) == 1:
            return holders[0]
        time.sleep(0.1)
    raise click.ClickException(f"no single store holder within {timeout:g}s: {lab.status()['roles']}")


def lab_demo(state_dir: str = "/run/hacluster-lab-demo", prefix: str = "hcl-", keep: bool = False,
             say: Say | None = None) -> dict[str, Any]:
    """The story on a fresh lab; torn down at the end unless `keep` (then the next steps are
    printed: the lab is there to explore)."""
    _say = say or progress_printer()
    lab = Lab(None, state_dir, prefix)
    user = f"{lab.options.mailboxes[0]}@{lab.plan.domain}"
    vip = str(lab.spec.roles["store"].vips[0].ip)
    try:
        _say("bringing the lab up: namespaces, bridges, router, dnsmasq (MX 10 relay1, MX 20 relay2), "
             "3 ZooKeeper servers, Postfix on every mail host, one agent per node")
        rep = lab.up()
        _say(f"lab up in {rep.seconds:.1f}s")
        holder = store_holder(lab)
        _say(f"store role and VIP {vip} held by {holder}")
        token = lab.send_mail(user, "before failover")
        store, path = lab.wait_mail(token, timeout_s=60)
        _say(f"mail sent by MX from the client arrived in {store}'s Maildir: {path.name}")
        waiter = SmtpWaiter(lab, vip)
        mon = lab.monitor(duration_s=60).start()
        try:
            waiter.go()
            rec = lab.fault(holder, "power-off")
            _say(f"POWER OFF {holder} (links down, every process killed)")
            new = store_holder(lab)
            t_smtp = waiter.result()
        finally:
            mrep = mon.stop()
        move = next((m for m in mrep.moves if m["vip"] == vip and m["to"] == new), None)
        to_vip = move["t_vip"] - rec["t_mono"] if move else None
        to_arp = move["t_arp"] - rec["t_mono"] if move and move.get("t_arp") else None
        to_smtp = t_smtp - rec["t_mono"] if t_smtp else None
        _say(f"VIP moved {holder} -> {new}: address up {to_vip:.3f}s after power-off" if to_vip else f"VIP now on {new}")
        if to_arp:
            _say(f"router's neighbour entry shows {new}'s MAC {to_arp:.3f}s after power-off (gratuitous ARP)")
        if to_smtp:
            _say(f"client reads the SMTP 220 banner through the VIP {to_smtp:.3f}s after power-off")
        token2 = lab.send_mail(user, "after failover")
        store2, path2 = lab.wait_mail(token2, timeout_s=60)
        _say(f"mail sent after the failover arrived in {store2}'s Maildir: {path2.name}")
        _say(f"invariant monitor: {mrep.samples} samples, max gap {mrep.max_gap_s * 1000:.1f} ms, "
             f"dual-holder samples: {mrep.dual_holder_samples}")
        lab.fault(holder, "power-on")
        _say(f"powered {holder} back on; it rejoins as standby")
        queue = queue_story(lab, user, _say)
        return {"holder_before": holder, "holder_after": new, "to_vip_s": to_vip, "to_arp_s": to_arp,
                "to_smtp_s": to_smtp, "dual_holder_samples": mrep.dual_holder_samples,
                "mail_before": store, "mail_after": store2, "fallback_queue": queue, "holder_end": queue["holder"]}
    finally:
        if keep:
            _say(f"the lab stays up (state in {state_dir}); try:")
            for line in next_steps(lab):
                _say(f"  {line}")
        else:
            lab.down()
            _say("lab down: namespaces, processes and the Postfix config change removed")
