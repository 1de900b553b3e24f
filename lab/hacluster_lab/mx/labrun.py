"""Run a planned scenario (labplan.LabPlanRun) in the netns lab with real Postfix everywhere.

One run: reset the lab's mail state (queues emptied, Maildirs cleared, outages healed), give each
Postfix instance the scenario's scaled timers and restart it (so every queue manager starts its
scan cycle at the run's start, like the model's), submit the traffic through the client's Postfix
with the shared load generator (hacluster_lab.lab.mailload), apply the outages on schedule, and read
the outcome when the scenario's time is up.

Outages are crisp, as in the model (an attempt on a down host fails at once): while a host is
down every sending namespace rejects packets to its addresses (nft: a TCP reset, ICMP
host-unreachable for the rest). Behind that block a relay or the fallback is frozen (every
process SIGSTOPped: it accepts nothing and runs no queue; SIGCONT at the end, and the queue
manager's overdue scan runs at once, as the model's does) or, with `lab: {outage: power-off}`,
really powered off and booted `lead_s` before the outage ends so that it is accepting when the
block lifts (a boot took 0.3-6 s on this loaded 2-core machine: too slow for short outages).
The store outage takes the store VIP away (released, and blocked). Without the block every
attempt on a down host waits smtp_connect_timeout (whole seconds in Postfix): 1 s per attempt is
5 simulated minutes at the default scale, and the retry schedule drifts from the model's
zero-time attempts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hacluster.errors import UserError
from .labcount import LogFacts, lab_summary, parse_maillog
from .labplan import BOUNCE_TO, LAB_HOSTS, LabPlanRun, Stream

if TYPE_CHECKING:
    from ..lab.lab import Lab

log = logging.getLogger(__name__)

TABLE = "hm_mxv"  # our own nft table in each mail namespace (the lab's heal() leaves it alone)
POSTFIX_LAB_HOSTS = ("client", "relay1", "relay2", "fallback", "store1")
SENDING_NS = ("client", "relay1", "relay2", "fallback")  # who opens SMTP connections in a run
LEAD_S = 8.0  # boot up to this long before an outage ends (power-on took 0.3-6 s on the loaded 2-core box)
SAMPLE_S = 0.25
STARTUP_GUESS_S = 0.25  # launch -> first submission of the load generator (0.1-0.5 s measured)
_SCN = {"client": "sender", "store1": "store"}  # lab host -> scenario host where they differ
NDR_WAIT_S = 5.0


def block_table() -> str:
    """nft script (re)creating our table: sets of down addresses, rejected on the way out (TCP
    gets a reset: Linux treats an ICMP error to a SYN as soft and retransmits after 1 s), and a
    down host's own outgoing SMTP while it boots behind the block. Pure."""
    rules = []
    for fam, st in (("ip", "down4"), ("ip6", "down6")):
        rules.append(f"{fam} daddr @{st} meta l4proto tcp reject with tcp reset")
        rules.append(f"{fam} daddr @{st} reject with icmpx type host-unreachable")
        rules.append(f"{fam} saddr @{st} tcp dport 25 reject with tcp reset")
    body = "".join(f"    {r}\n" for r in rules)
    return (f"table inet {TABLE}\ndelete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n  set down4 {{ type ipv4_addr; }}\n  set down6 {{ type ipv6_addr; }}\n"
            f"  chain out {{\n    type filter hook output priority 0; policy accept;\n{body}  }}\n}}\n")


def element_commands(op: str, addresses: list[str]) -> str:
    """`add`/`delete element` lines for the down sets (one nft command per line). Pure."""
    out = []
    for st, addrs in (("down4", [a for a in addresses if ":" not in a]), ("down6", [a for a in addresses if ":" in a])):
        if addrs:
            out.append(f"{op} element inet {TABLE} {st} {{ {', '.join(addrs)} }}\n")
    return "".join(out)


class NftControl:
    """A long-running `nft -i` in one namespace: a fault edge is a line written to its stdin
    (well under a millisecond), not a process spawned at the instant (0.1-0.4 s under load).
    Respawned if it died (a power-off kills every process of its namespace)."""

    def __init__(self, ns_cmd: Callable[[list[str]], list[str]]) -> None:
        self.ns_cmd = ns_cmd
        self.proc: subprocess.Popen | None = None

    def _spawn(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(self.ns_cmd(["nft", "-i"]), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        return self.proc

    def send(self, text: str) -> None:
        for _ in range(2):
            p = self.proc if self.proc is not None and self.proc.poll() is None else self._spawn()
            try:
                assert p.stdin is not None
                p.stdin.write(text)
                p.stdin.flush()
                return
            except (BrokenPipeError, OSError):
                self.proc = None
        raise UserError("nft -i in a lab namespace keeps dying", exit_code=1)

    def close(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            if p.stdin is not None:
                p.stdin.close()
            p.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            p.kill()
            p.wait(timeout=5)


@dataclass
class Applied:
    label: str
    planned_s: float
    applied_s: float
    took_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.label, "planned_s": round(self.planned_s, 3),
                "late_s": round(self.applied_s - self.planned_s, 3), "took_s": round(self.took_s, 3)}


class LabRun:
    def __init__(self, lab: "Lab", plan: LabPlanRun, lead_s: float = LEAD_S) -> None:
        self.lab = lab
        self.plan = plan
        self.lead_s = lead_s
        self.run_id = f"hm{uuid.uuid4().hex[:10]}"
        self.down: set[str] = set()  # scenario hosts currently blocked
        self._block_lock = threading.Lock()  # steps run in threads; the sets are one state
        self.nft: dict[str, NftControl] = {}
        self.applied: list[Applied] = []
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self.log_offsets: dict[str, int] = {}
        self.wanted: set[str] = set()
        self.timings: dict[str, float] = {}
        self.fates: dict[str, dict] = {}
        self.arrivals: dict[str, float] = {}

    # ------------------------------------------------------------------ helpers

    def conf(self, host: str) -> str:
        return str(self.lab.paths.postfix_conf(host))

    def _run(self, host: str, cmd: list[str], stdin: str | None = None, check: bool = True) -> str:
        proc = self.lab.exec(host, cmd, input=stdin, capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise UserError(f"lab {host}: {' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}", exit_code=1)
        return proc.stdout

    def addresses(self, host: str) -> list[str]:
        if host == "store":
            return [v.ip for v in self.lab.plan.vips if v.tier == "store"]
        return [str(a.ip) for a in self.lab.plan.host(LAB_HOSTS[host]).addresses]

    def apply_block(self, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()) -> None:
        """Add hosts to / remove them from the down sets of every sending namespace."""
        with self._block_lock:
            self.down.update(add)
            self.down.difference_update(remove)
            text = (element_commands("add", [a for h in add for a in self.addresses(h)])
                    + element_commands("delete", [a for h in remove for a in self.addresses(h)]))
            for ctl in self.nft.values():
                ctl.send(text)

    def install_block(self) -> None:
        from ..lab.netns import in_ns

        for ns in SENDING_NS:
            self._run(ns, ["nft", "-f", "-"], stdin=block_table())
            self.nft[ns] = NftControl(partial(in_ns, self.lab.ns(ns)))

    def clear_block(self) -> None:
        for ctl in self.nft.values():
            ctl.close()
        self.nft.clear()
        for ns in SENDING_NS:
            self.lab.exec(ns, ["nft", "delete", "table", "inet", TABLE], capture_output=True, timeout=30)

    # ------------------------------------------------------------------ reset + configure

    def prepare(self) -> None:
        """Every host up, nothing blocked, queues and Maildirs empty, scenario timers in place,
        every Postfix reloaded (or started)."""
        lab = self.lab
        self.clear_block()
        for h in ("relay1", "relay2", "fallback"):
            self._signal(h, signal.SIGCONT)  # a run that died mid-freeze
        lab.heal()
        for h in ("relay1", "relay2", "fallback"):
            if h in lab.powered_off():
                lab.fault(h, "power-on")
        for h in POSTFIX_LAB_HOSTS:
            self._run(h, ["postsuper", "-c", self.conf(h), "-d", "ALL"], check=False)
        for base in lab.maildirs().values():
            for sub in base.glob("*/*"):
                if sub.name in ("new", "cur", "tmp") and sub.is_dir():
                    for f in os.scandir(sub):
                        try:
                            os.unlink(f.path)
                        except OSError:
                            pass
        for h, params in self.plan.params.items():
            self._run(h, ["postconf", "-c", self.conf(h), "-e", *(f"{k}={v}" for k, v in params.items())])
        for h, fields in self.plan.master.items():
            self._run(h, ["postconf", "-c", self.conf(h), "-F", "-e", *(f"{k}={v}" for k, v in fields.items())])
        for h in POSTFIX_LAB_HOSTS:
            self.log_offsets[h] = _size(lab.paths.maillog(h))
        lab.hold_vip("store1", garp=False)  # same host, same MAC: no neighbour needs telling
        # a reload restarts the queue manager at once (its scan cycle starts now, like the
        # model's at t=0) and makes every daemon read the new timers; stop+start is 10x slower
        with ThreadPoolExecutor(max_workers=5) as pool:
            rcs = list(pool.map(self._reload, POSTFIX_LAB_HOSTS))
        bad = [h for h, ok in rcs if not ok]
        if bad:
            raise UserError(f"postfix did not start on {', '.join(bad)} (logs under {lab.paths.root}/nodes)", exit_code=1)
        self.install_block()

    def _reload(self, host: str) -> tuple[str, bool]:
        mta = self.lab.mta(host)
        if mta.master_pid() is None:
            return host, int(mta.start()) == 0
        proc = self.lab.exec(host, ["postfix", "-c", self.conf(host), "reload"], capture_output=True, text=True, timeout=60)
        return host, proc.returncode == 0

    # ------------------------------------------------------------------ faults

    def _down(self, host: str) -> None:
        self.apply_block(add=(host,))
        if host == "store":
            self.lab.release_vip("store1")
        elif self.plan.outage == "freeze":
            self._signal(LAB_HOSTS[host], signal.SIGSTOP)
        else:
            self.lab.fault(LAB_HOSTS[host], "power-off")

    def _boot(self, host: str) -> None:
        if host == "store":
            # same host, same MAC: neighbours' entries stay right, no gratuitous ARP needed (the
            # GARP helper's start-up alone took seconds on the loaded machine)
            self.lab.hold_vip("store1", garp=False)
        elif self.plan.outage == "power-off":
            self.lab.fault(LAB_HOSTS[host], "power-on")  # its namespace (and our table) survived

    def _up(self, hosts: tuple[str, ...]) -> None:
        if self.plan.outage == "freeze":
            for h in hosts:
                if h != "store":
                    self._signal(LAB_HOSTS[h], signal.SIGCONT)
        self.apply_block(remove=hosts)

    def _signal(self, host: str, sig: int) -> bool:
        """Signal the host's Postfix (the master's process group: master and every daemon; our
        own short-lived nft processes in that namespace are not touched)."""
        pid = self.lab.mta(host).master_pid()
        if pid is None:
            return False
        try:
            os.killpg(os.getpgid(pid), sig)
        except ProcessLookupError:
            return False
        return True

    def actions(self) -> list[tuple[float, str, Callable[[], None]]]:
        """(time, "verb host[,host]", fn). Hosts that return at one instant are unblocked by one
        nft update (else the first one back would take mail the model gives to the preferred
        MX); each boots `lead` earlier, at most half its outage."""
        out: list[tuple[float, str, Callable[[], None]]] = []
        starts: dict[str, float] = {}
        ups: dict[float, list[str]] = {}
        for st in self.plan.faults:
            if st.action == "down":
                starts[st.host] = st.at_s
                out.append((st.at_s, f"down {st.host}", partial(self._down, st.host)))
            else:
                if st.host == "store" or self.plan.outage == "power-off":
                    lead = min(self.lead_s, max(0.0, (st.at_s - starts.get(st.host, 0.0)) / 2))
                    out.append((st.at_s - lead, f"boot {st.host}", partial(self._boot, st.host)))
                ups.setdefault(st.at_s, []).append(st.host)
        for at, hosts in ups.items():
            out.append((at, f"up {','.join(hosts)}", partial(self._up, tuple(hosts))))
        return sorted(out, key=lambda a: a[0])

    # ------------------------------------------------------------------ the run

    def _sample(self) -> None:
        from ..lab.mailload import lab_queues, queue_files

        queues = {h: q for h, q in lab_queues(self.lab).items() if h in POSTFIX_LAB_HOSTS}
        while not self._stop.wait(SAMPLE_S):
            for h, n in queue_files(queues).items():
                if n > self.peaks.get(h, 0):
                    self.peaks[h] = n

    def run(self) -> dict[str, Any]:
        from ..lab.mailload import MailLoad

        lab, plan = self.lab, self.plan
        loads: list[tuple[Any, MailLoad]] = []
        sampler = threading.Thread(target=self._sample, daemon=True, name="mx-validate-sampler")
        rcpt = f"{lab.options.mailboxes[0]}@{lab.plan.domain}"

        def load(stream) -> MailLoad:
            return MailLoad(lab, target="127.0.0.1", rate_per_s=1.0 / stream.step_s, count=stream.count, rcpt=rcpt,
                            connections=1, timeout_s=10.0, max_s=plan.duration_s + 60, run_id=f"{self.run_id}s{stream.index}")

        wall_minus_mono = time.time() - time.monotonic()
        self.timings["start"] = time.monotonic()
        try:
            sampler.start()
            first = min(plan.streams, key=lambda st: st.first_s)
            steps: list[tuple[float, str, Callable[[], None]]] = list(self.actions())
            if plan.faults and plan.faults[0].at_s < first.first_s:
                # an outage before the first message: t=0 is a clock reading, traffic is
                # launched by the start-up guess early (its actual lag is reported)
                startup, t0 = STARTUP_GUESS_S, time.monotonic() + 1.0
                rest = list(plan.streams)
            else:
                # t=0 from the first message's actual submission: the traffic, not the clock,
                # is what the outages must line up with
                launched = time.monotonic()
                ml = load(first).start()
                loads.append((first, ml))
                deadline = launched + 15
                while not ml.submissions():
                    if time.monotonic() > deadline:
                        raise UserError(f"the load generator submitted nothing in 15 s: {ml.stderr_tail()}", exit_code=1)
                    time.sleep(0.01)
                sub0 = ml.submissions()[0]
                t_first0 = sub0.t_first if sub0.t_first is not None else sub0.t
                startup = t_first0 - launched
                t0 = t_first0 - first.first_s
                rest = [st for st in plan.streams if st is not first]
            def start(st: Stream) -> None:
                loads.append((st, load(st).start()))

            for st in rest:
                steps.append((st.first_s - startup, f"start traffic[{st.index}]", partial(start, st)))
            steps.sort(key=lambda a: a[0])
            self._execute(steps, t0)
            _sleep_until(t0 + plan.duration_s)
            return self._collect(t0, wall_minus_mono, loads)
        finally:
            self._stop.set()
            for _, m in loads:
                try:
                    m.stop(timeout_s=15)
                except Exception:  # cleanup must go on
                    log.exception("stopping the load generator")
            sampler.join(timeout=5)

    def _execute(self, steps: list[tuple[float, str, Callable[[], None]]], t0: float) -> None:
        """Each step in its own thread at its time (two hosts boot at once, as two machines
        would); the steps of one host run in order (its `up` waits for its boot to finish)."""
        last: dict[str, threading.Thread] = {}
        lock = threading.Lock()
        errors: list[BaseException] = []

        def body(at: float, label: str, fn: Callable[[], None], before: list[threading.Thread]) -> None:
            for b in before:
                b.join()
            a0 = time.monotonic()
            try:
                fn()
            except BaseException as err:  # reported after the run
                errors.append(err)
            with lock:
                self.applied.append(Applied(label, at, a0 - t0, time.monotonic() - a0))

        threads = []
        for at, label, fn in steps:
            _sleep_until(t0 + at)
            keys = label.split(" ", 1)[1].split(",")
            th = threading.Thread(target=body, args=(at, label, fn, [last[k] for k in keys if k in last]), daemon=True)
            for k in keys:
                last[k] = th
            th.start()
            threads.append(th)
        for th in threads:
            th.join(timeout=120)
        self.applied.sort(key=lambda a: (a.planned_s, a.label))
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ reading the outcome

    def _hold_test_mail(self) -> int:
        """Put every test message still queued on hold (so the count is the state at the end
        time); returns how many. Bounce notices (null sender) keep flowing."""
        sender = f"{BOUNCE_TO}@{self.lab.plan.domain}"
        off = self.lab.powered_off()
        held = 0
        for h in POSTFIX_LAB_HOSTS:
            if h in off:
                from ..lab.mailload import grep_queues

                held += len(grep_queues({h: self.lab.paths.postfix_queue(h)}, self.wanted).get(h, []))
                continue
            out = self._run(h, ["postqueue", "-c", self.conf(h), "-j"], check=False)
            ids = []
            for line in out.splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("sender") == sender:
                    ids.append(rec["queue_id"])
            if ids:
                self._run(h, ["postsuper", "-c", self.conf(h), "-h", "-"], stdin="\n".join(ids) + "\n", check=False)
            held += len(ids)
        return held

    def _collect(self, t0: float, wall_minus_mono: float, loads: list) -> dict[str, Any]:
        from ..lab.mailload import lab_stores, scan_maildirs

        lab = self.lab
        t_collect = time.monotonic()
        planned = {f"<{self.run_id}s{st.index}.{i}@client.{lab.plan.domain}>": t0 + st.planned(i)
                   for st, _ in loads for i in range(st.count)}
        self.wanted = set(planned)
        t_end_wall = time.time()
        found = scan_maildirs(lab_stores(lab), self.wanted)
        held = self._hold_test_mail()
        for _, m in loads:
            m.stop(timeout_s=15)
        subs = [s for _, m in loads for s in m.submissions()]
        born = {s.msgid: (s.t_first if s.t_first is not None else s.t) for s in subs}
        delivered = {}
        for mid, ds in found.items():
            first = min(d.mtime for d in ds)
            if first <= t_end_wall:
                delivered[mid] = max(0.0, first - (born.get(mid, planned[mid]) + wall_minus_mono))
        time.sleep(0.3)  # postlogd writes asynchronously
        facts = {h: self._facts(h) for h in POSTFIX_LAB_HOSTS}
        bounced = set().union(*(f.bounced for f in facts.values()))
        accepted_by = {"sender": 0, "relay1": len(facts["relay1"].accepted), "relay2": len(facts["relay2"].accepted),
                       "fallback": len(facts["fallback"].accepted), "store": len(facts["store1"].accepted)}
        peaks = {"sender": self.peaks.get("client", 0), "relay1": self.peaks.get("relay1", 0),
                 "relay2": self.peaks.get("relay2", 0), "fallback": self.peaks.get("fallback", 0),
                 "store": self.peaks.get("store1", 0)}
        prefix = f"<{self.run_id}"
        fates = {}
        for mid in planned:
            key = mid[len(prefix):].split("@", 1)[0]  # "s0.12"
            via = sorted({_SCN.get(h, h) for h, f in facts.items() if mid in f.accepted and h != "client"})
            status = "delivered" if mid in delivered else "bounced" if mid in bounced else "queued"
            fates[key] = {"status": status, "via": via}
        self.fates = fates
        self.arrivals = {mid[len(prefix):].split("@", 1)[0]: t - t0 for mid, t in planned.items()}
        accepted_subs = [s for s in subs if s.accepted]
        result = lab_summary(len(accepted_subs), delivered, bounced, held, accepted_by, peaks)
        ndr = self._wait_ndrs(len(bounced)) if bounced else 0
        lags = [born[s.msgid] - planned[s.msgid] for s in subs if s.msgid in planned and s.msgid in born]
        detail = {
            "run_id": self.run_id,
            "submitted": len(subs), "not_accepted_by_sender": len(subs) - len(accepted_subs),
            "ndr_received": ndr,
            "deferred_attempts": {("sender" if h == "client" else "store" if h == "store1" else h): f.deferred_attempts
                                  for h, f in facts.items()},
            "arrival_lag_s": {"min": round(min(lags), 3) if lags else None, "max": round(max(lags), 3) if lags else None},
            "faults": [a.as_dict() for a in self.applied],
            "collect_s": round(time.monotonic() - t_collect, 2),
        }
        if os.environ.get("HACLUSTER_MX_VALIDATE_DUMP"):
            with open(os.environ["HACLUSTER_MX_VALIDATE_DUMP"], "w") as f:
                json.dump({"t0": t0, "wall_minus_mono": wall_minus_mono, "t_end_wall": t_end_wall,
                           "planned": planned, "subs": [s.__dict__ for s in subs],
                           "found": {k: [d.__dict__ for d in v] for k, v in found.items()},
                           "facts": {h: {"accepted": sorted(f.accepted), "bounced": sorted(f.bounced)}
                                     for h, f in facts.items()}}, f, indent=1, default=str)
        return {"lab": result, "lab_detail": detail}

    def _facts(self, host: str) -> LogFacts:
        path = self.lab.paths.maillog(host)
        try:
            with open(path, errors="replace") as f:
                f.seek(self.log_offsets.get(host, 0))
                return parse_maillog(f, self.wanted)
        except OSError:
            return LogFacts()

    def _wait_ndrs(self, want: int) -> int:
        """Bounce notices for test messages in the sender's (alice's) Maildir, waited for at
        most NDR_WAIT_S. May stay below `bounced`: a notice that waits for a down store past
        bounce_queue_lifetime (Postfix caps it at maximal_queue_lifetime) is dropped itself."""
        deadline = time.monotonic() + NDR_WAIT_S
        needles = [m.encode() for m in self.wanted]
        while True:
            seen: set[bytes] = set()
            for base in self.lab.maildirs().values():
                for sub in ("new", "cur"):
                    d = base / BOUNCE_TO / sub
                    try:
                        names = os.listdir(d)
                    except OSError:
                        continue
                    for n in names:
                        try:
                            data = (d / n).read_bytes()[:262144]
                        except OSError:
                            continue
                        seen.update(x for x in needles if x in data)
            if len(seen) >= want or time.monotonic() >= deadline:
                return len(seen)
            time.sleep(0.5)

    def cleanup(self) -> None:
        self.clear_block()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _sleep_until(t: float) -> None:
    while True:
        d = t - time.monotonic()
        if d <= 0:
            return
        time.sleep(min(d, 0.05))

