"""The VIP guard: a tiny process that takes the VIP off the host when the agent can no longer
be trusted to do it.

Why: after `kill -9` of a VRRP daemon the kernel keeps the address and keeps answering ARP for
it, so a dead (or frozen) holder keeps pulling traffic while another node takes over. The agent
starts this guard when it takes the VIP and feeds it the lease deadline over a socketpair. The
guard removes the VIPs itself

* at once when the socket closes without a "release" (the agent died, SIGKILL included),
* when the deadline passes without extension (the agent is frozen by SIGSTOP or hung),
* on SIGTERM (someone stops the guard: a dead guard protects nothing),

and exits quietly on "release" (the agent removed the VIP itself). It runs in its own session so
a signal to the agent's process group does not take it along, and it imports only the standard
library (no kazoo, no pyroute2, no scapy): it is a few MB of RSS. Netlink messages are built by
hand for the same reason.

Self-fencing of a whole role (docs/safety.md, "Every resource of the role"): the agent runs a
second instance per role whose resources can write shared state, with the role's VIPs plus
`--kill-pidfile FILE` (the MTA: its master's process group and every descendant, SIGKILL),
`--kill-cgroup DIR` (every process of a cgroup v2, via `cgroup.kill`) and `--umount PATH` (a shared
spool: lazy unmount, umount2(MNT_DETACH)). On removal it acts in that order -- VIPs, then the
MTA, then the spool -- so nothing is accepted after the VIP went and nothing holds the spool open
when it is detached; each step is timed in the log line.

The guard asks for real-time scheduling (SCHED_FIFO, priority 50; else nice -20) when it starts: it
sleeps almost always, and when the deadline comes it must run at once however loaded the host is
(measured under load average ~50 on 2 cores: 0.2-0.7 s for the steps without it).

Protocol, one ASCII line per message, agent -> guard: `until <CLOCK_BOOTTIME seconds>`,
`release`; guard -> agent: `ready` once at start.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import socket
import struct
import sys
import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # the guard itself must not pay for these imports (typing alone is ~1 MB)
    import subprocess
    from typing import Callable

# --------------------------------------------------------------------------- targets


class Target(collections.namedtuple("Target", "ip prefixlen ifname")):
    """One VIP on one interface; text form `ADDRESS/PREFIXLEN@IFNAME`."""

    __slots__ = ()
    ip: str
    prefixlen: int
    ifname: str

    @property
    def text(self) -> str:
        return f"{self.ip}/{self.prefixlen}@{self.ifname}"

    @classmethod
    def parse(cls, text: str) -> "Target":
        addr, sep, ifname = text.rpartition("@")
        ip, slash, plen = addr.partition("/")
        if not sep or not slash or not ifname or not plen.isdigit():
            raise ValueError(f"not ADDRESS/PREFIXLEN@IFNAME: {text!r}")
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        socket.inet_pton(family, ip)  # raises OSError on a bad address
        if int(plen) > (128 if family == socket.AF_INET6 else 32):
            raise ValueError(f"prefix length out of range: {text!r}")
        return cls(ip, int(plen), ifname)


# --------------------------------------------------------------------------- netlink (stdlib)

NETLINK_ROUTE = 0
RTM_NEWADDR, RTM_DELADDR = 20, 21
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFA_ADDRESS, IFA_LOCAL = 1, 2
EADDRNOTAVAIL, ENODEV = 99, 19


def _rta(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def deladdr_message(seq: int, ifindex: int, ip: str, prefixlen: int) -> bytes:
    """RTM_DELADDR for one address. IPv4 matches on IFA_LOCAL alone (any prefix length), IPv6
    needs the exact prefix length (the kernel matches address and prefix)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    packed = socket.inet_pton(family, ip)
    attrs = _rta(IFA_LOCAL, packed)
    if family == socket.AF_INET6:
        attrs += _rta(IFA_ADDRESS, packed)
    body = struct.pack("=BBBBI", family, prefixlen, 0, 0, ifindex) + attrs
    return struct.pack("=IHHII", 16 + len(body), RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def ack_errno(reply: bytes, seq: int) -> int | None:
    """errno of the NLMSG_ERROR ack for `seq` in a netlink reply (0 = success), else None."""
    off = 0
    while off + 16 <= len(reply):
        length, kind, _flags, rseq, _pid = struct.unpack_from("=IHHII", reply, off)
        if length < 16:
            break
        if kind == NLMSG_ERROR and rseq == seq and off + 20 <= len(reply):
            (err,) = struct.unpack_from("=i", reply, off + 16)
            return -err
        off += (length + 3) & ~3
    return None


def remove_addresses(targets: list[Target]) -> list[tuple[Target, str]]:
    """Remove each target; result per target: "removed", "absent" or "no-interface".
    Other failures (EPERM...) raise OSError: the caller must see them."""
    out: list[tuple[Target, str]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as nl:
        nl.bind((0, 0))
        nl.settimeout(2.0)
        for seq, t in enumerate(targets, start=1):
            try:
                index = socket.if_nametoindex(t.ifname)
            except OSError:
                out.append((t, "no-interface"))
                continue
            nl.send(deladdr_message(seq, index, t.ip, t.prefixlen))
            err = None
            while err is None:
                err = ack_errno(nl.recv(65536), seq)
            if err == 0:
                out.append((t, "removed"))
            elif err == EADDRNOTAVAIL:
                out.append((t, "absent"))
            elif err == ENODEV:
                out.append((t, "no-interface"))
            else:
                raise OSError(err, f"removing {t.text}: {os.strerror(err)}")
    return out


# --------------------------------------------------------------------------- the decision


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


REMOVING = frozenset({"expired", "orphaned", "terminated"})


class GuardState:
    """What the guard knows: the deadline and, once decided, how it ends. Pure: no I/O.
    (A plain class: dataclasses would pull in inspect, ~2 MB in every guard.)"""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self.outcome: str | None = None  # None while guarding; "released" | "expired" | "orphaned" | "terminated"

    def on_line(self, line: str, now: float) -> None:
        if self.outcome is not None:
            return
        word, _, arg = line.strip().partition(" ")
        if word == "until":
            try:
                self.deadline = float(arg)
            except ValueError:
                pass  # a garbled deadline is ignored; the previous one still holds
        elif word == "release":
            self.outcome = "released"

    def on_eof(self) -> None:
        if self.outcome is None:
            self.outcome = "orphaned"

    def on_tick(self, now: float) -> None:
        if self.outcome is None and self.deadline is not None and now >= self.deadline:
            self.outcome = "expired"

    def wait_s(self, now: float, cap: float = 1.0) -> float:
        """How long to block for input before re-checking the deadline."""
        if self.deadline is None:
            return cap
        return max(0.0, min(cap, self.deadline - now))

    @property
    def removes(self) -> bool:
        return self.outcome in REMOVING


class _Terminated(Exception):
    pass


def _on_term(signum: int, frame: object) -> None:
    raise _Terminated()


def serve(sock: socket.socket, state: GuardState, remove: Callable[[], None],
          now: Callable[[], float] = boottime) -> str:
    """Run the guard on a connected socket until an outcome; remove if the outcome says so."""
    buf = b""
    try:
        while state.outcome is None:
            ready, _, _ = select.select([sock], [], [], state.wait_s(now()))
            if ready:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    data = b"\n"  # spurious wake-up: nothing to read yet
                except OSError:
                    data = b""  # reset by a dying peer: same as EOF
                if not data:
                    state.on_eof()
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    state.on_line(line.decode("ascii", "replace"), now())
            state.on_tick(now())
    except _Terminated:
        state.outcome = "terminated"
    if state.removes:
        remove()
    return state.outcome or "orphaned"


# --------------------------------------------------------------------------- self-fencing steps


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every process now (from /proc/PID/stat; vanished ones skipped)."""
    out: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            out[int(entry)] = (int(fields[1]), int(fields[2]))
        except (OSError, IndexError, ValueError):
            continue
    return out


def tree_of(root: int, table: dict[int, tuple[int, int]]) -> set[int]:
    """`root`, its process group and every descendant of either (pure: from a _proc_table)."""
    pgid = table.get(root, (0, root))[1]
    out = {root} | {p for p, (_pp, g) in table.items() if g == pgid and pgid > 1}
    children: dict[int, list[int]] = {}
    for p, (pp, _g) in table.items():
        children.setdefault(pp, []).append(p)
    todo = list(out)
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    out.discard(os.getpid())
    out.discard(1)
    return out


def kill_tree(pidfile: str) -> str:
    """SIGKILL the process whose pid `pidfile` names (an MTA master), its process group and every
    descendant. The master is stopped first (SIGSTOP: it forks nothing more while the tree is read);
    the tree is read twice, so a child forked in between is caught too."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return "no pid file (not running)"
    if pid <= 1 or pid == os.getpid():
        return f"pid {pid} refused"
    # a shared spool carries the last holder's pid file (another host's pid): only a master that
    # runs in this very queue directory (Postfix's master chdirs there) is ours to kill
    queue = os.path.dirname(os.path.dirname(os.path.abspath(pidfile)))
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return f"pid {pid} gone"
    if cwd != queue:
        return f"pid {pid} is not this instance's master (it runs in {cwd}): stale pid file, nothing killed"
    try:
        os.kill(pid, signal.SIGSTOP)  # forks nothing more from here
        tree = tree_of(pid, _proc_table())  # the group and any descendant that left it (setsid)
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # one syscall for the whole group
    except ProcessLookupError:
        return f"pid {pid} gone"
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return f"killed {len(tree)} process(es) of master {pid}"


def kill_cgroup(path: str) -> str:
    """Kill every process of a cgroup v2 at once (`cgroup.kill`, Linux 5.14: forks in flight included)."""
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    except FileNotFoundError:
        return "no such cgroup"
    return "cgroup killed"


MNT_DETACH = 2


def lazy_umount(path: str) -> str:
    """umount2(path, MNT_DETACH) by syscall (no umount(8) fork): the path is detached at once; our
    killed processes held the last open files."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), MNT_DETACH) == 0:
        return "detached"
    err = ctypes.get_errno()
    if err == 22:  # EINVAL: not a mount point (already unmounted)
        return "not mounted"
    raise OSError(err, f"umount2 {path}: {os.strerror(err)}")


#: order of the self-fencing steps after the VIPs: the MTA before the spool it writes to
STEP_ORDER = {"kill-cgroup": 1, "kill-pidfile": 1, "umount": 2}
STEPS: dict[str, Callable[[str], str]] = {"kill-cgroup": kill_cgroup, "kill-pidfile": kill_tree, "umount": lazy_umount}


def run_steps(steps: list[tuple[str, str]]) -> list[tuple[str, str, str, float]]:
    """Run the non-VIP steps in STEP_ORDER; (kind, arg, result, seconds) each. A failing step is
    reported and the next one still runs: a stuck MTA must not keep the spool mounted."""
    out = []
    for kind, arg in sorted(steps, key=lambda s: STEP_ORDER[s[0]]):
        t0 = time.monotonic()
        try:
            res = STEPS[kind](arg)
        except OSError as err:
            res = f"failed: {err}"
        out.append((kind, arg, res, time.monotonic() - t0))
    return out


RT_PRIORITY = 50


def realtime() -> str:
    """Run ahead of every ordinary process when awake: SCHED_FIFO if allowed, else nice -20."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        return "fifo"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-20)
        return "nice"
    except OSError:
        return "normal"


USAGE = ("usage: hacluster vip guard --fd N [--vip ADDRESS/PREFIXLEN@IFNAME ...] [--kill-pidfile FILE] "
         "[--kill-cgroup DIR] [--umount PATH] [--until SECONDS] [--name NAME]")


def parse_guard_args(argv: list[str]) -> tuple[int, list[Target], float | None, str, list[tuple[str, str]]]:
    """(fd, targets, until, name, steps); ValueError naming the bad option. Hand-rolled: argparse
    costs the guard ~2.5 MB of RSS."""
    fd: int | None = None
    until: float | None = None
    name = "vip"
    targets: list[Target] = []
    steps: list[tuple[str, str]] = []
    it = iter(argv)
    for opt in it:
        val = next(it, None)
        if opt not in ("--fd", "--vip", "--until", "--name", "--kill-pidfile", "--kill-cgroup", "--umount") or val is None:
            raise ValueError(f"{opt}: unknown option or missing value")
        try:
            if opt == "--fd":
                fd = int(val)
            elif opt == "--vip":
                targets.append(Target.parse(val))
            elif opt == "--until":
                until = float(val)
            elif opt == "--name":
                name = val
            else:
                if not val.startswith("/"):
                    raise ValueError(f"must be an absolute path, got {val!r}")
                steps.append((opt[2:], val))
        except (ValueError, OSError) as err:
            raise ValueError(f"{opt}: {err}") from None
    if fd is None or not (targets or steps):
        raise ValueError("--fd and at least one --vip, --kill-pidfile, --kill-cgroup or --umount are required")
    return fd, targets, until, name, steps


def parse_args(argv: list[str]) -> tuple[int, list[Target], float | None, str]:
    """(fd, targets, until, name): the VIP guard's own options."""
    fd, targets, until, name, _steps = parse_guard_args(argv)
    return fd, targets, until, name


def main(argv: list[str] | None = None) -> int:
    try:
        fd, targets, until, name, steps = parse_guard_args(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        print(f"hacluster vip guard: {err}\n{USAGE}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    realtime()
    if any(k == "umount" for k, _ in steps):
        import ctypes  # noqa: F401 - loaded now, not in the instant the deadline passes
    sock = socket.socket(fileno=fd)
    state = GuardState(deadline=until)
    try:
        sock.sendall(b"ready\n")
    except OSError:
        pass  # the agent may already be gone: then recv sees EOF and we remove

    def remove() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the removal whatever comes
        t0 = boottime()
        late = f" ({t0 - state.deadline:.3f}s after the deadline)" if state.outcome == "expired" and state.deadline else ""
        parts = []
        if targets:
            try:
                results = remove_addresses(targets)
                parts.append(", ".join(f"{t.ip}/{t.prefixlen} on {t.ifname}: {r}" for t, r in results))
            except OSError as err:
                parts.append(f"removing failed: {err}")
        for kind, arg, res, secs in run_steps(steps):
            parts.append(f"{kind} {arg}: {res} ({secs * 1000:.1f} ms)")
        total = f"; done {boottime() - t0:.3f}s after it began" if steps else ""
        print(f"hacluster vip guard [{name}]: agent {state.outcome}{late}; {'; '.join(parts)}{total}", file=sys.stderr)

    outcome = serve(sock, state, remove)
    sock.close()
    return 0 if outcome in ("released", "expired", "orphaned", "terminated") else 1


# --------------------------------------------------------------------------- the agent's side


class GuardClient:
    """The agent's handle on its guard process. Never blocks the agent: sends are non-blocking
    one-liners; a guard that is gone is reported by alive(), not by an exception."""

    def __init__(self, proc: "subprocess.Popen[bytes]", sock: socket.socket) -> None:
        self.proc = proc
        self.sock: socket.socket | None = sock
        self._buf = b""
        self._ready = False

    @classmethod
    def spawn(cls, targets: list[Target], until: float | None = None, name: str = "vip",
              steps: list[tuple[str, str]] | None = None, stderr: int | None = None) -> "GuardClient":
        import subprocess

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # run this file directly, isolated and without site: it needs only the standard library,
        # and skipping site (editable installs, .pth hooks) keeps the guard near 10 MB of RSS
        args = [sys.executable, "-I", "-S", os.path.abspath(__file__), "--fd", str(child.fileno()), "--name", name]
        for t in targets:
            args += ["--vip", t.text]
        for kind, arg in steps or ():
            args += [f"--{kind}", arg]
        if until is not None:
            args += ["--until", repr(until)]
        try:
            # own session: a kill of the agent's process group (or a terminal's ^C) spares it;
            # stdout to /dev/null so it never holds the agent's stdout pipe open
            proc = subprocess.Popen(args, pass_fds=(child.fileno(),), start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, close_fds=True)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        return cls(proc, parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _send(self, line: str) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.send(line.encode("ascii"))
            return True
        except OSError:  # BrokenPipe (guard gone) or a full buffer (guard not reading)
            return False

    def extend(self, until: float) -> bool:
        return self._send(f"until {until!r}\n")

    def ready(self) -> bool:
        """True once the guard reported it runs (non-blocking)."""
        if not self._ready and self.sock is not None:
            try:
                self._buf += self.sock.recv(64)
            except (BlockingIOError, OSError):
                pass
            self._ready = b"ready\n" in self._buf
        return self._ready

    def alive(self) -> bool:
        return self.sock is not None and self.proc.poll() is None

    def release(self) -> None:
        """The VIP is gone by the agent's own hand: let the guard exit without touching it."""
        self._send("release\n")
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.proc.poll()  # reap if already gone


if __name__ == "__main__":
    sys.exit(main())
