"""Network namespace plumbing for the lab: create, wire, list, empty and delete namespaces.

Everything goes through `ip` (iproute2) in batch mode, one process per namespace, because that is
fast (the whole lab wires up in well under a second) and is exactly what an operator would type.
Teardown finds its namespaces by name prefix, so it works after a crash with no state at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from hacluster.errors import EXIT_FAILED, UserError
from .topology import LabPlan

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
CMD_TIMEOUT = 20.0


class LabError(UserError):
    """Building or driving the lab failed (the message names the command and its error)."""

    exit_code = EXIT_FAILED


def run(cmd: list[str], *, input: str | None = None, check: bool = True, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} not found: install it (see docs/lab.md)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)}: timed out after {timeout:g}s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}: exit {proc.returncode}: "
                       f"{' | '.join(detail[-3:])}")
    return proc


def ip_batch(ns: str | None, lines: list[str]) -> None:
    """Run iproute2 commands in one process (`ip [-n NS] -batch -`)."""
    if not lines:
        return
    run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], input="\n".join(lines) + "\n")


def in_ns(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def sysctl(ns: str, settings: dict[str, str]) -> None:
    run(in_ns(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())]))


def list_ns(prefix: str) -> list[str]:
    """Namespaces whose name starts with prefix (from /run/netns, like `ip netns list`)."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def pids_in(ns: str) -> list[int]:
    """Every process whose network namespace is `ns` (what `ip netns pids` prints)."""
    try:
        target = os.stat(NETNS_DIR / ns)
    except FileNotFoundError:
        return []
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if st.st_ino == target.st_ino and st.st_dev == target.st_dev:
            out.append(int(entry))
    return sorted(out)


def kill_all(ns: str, sig: int = signal.SIGKILL, timeout: float = 5.0) -> int:
    """Signal every process in `ns` until none is left (bounded); returns how many were signalled.

    Repeats because a dying parent may still fork (Postfix's master respawning a child)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = pids_in(ns)
        if not pids:
            return len(seen)
        for pid in pids:
            try:
                os.kill(pid, sig)
                seen.add(pid)
            except ProcessLookupError:
                pass
        if sig != signal.SIGKILL or time.monotonic() >= deadline:
            return len(seen)
        time.sleep(0.02)


def signal_pids(pids: list[int], sig: int) -> int:
    n = 0
    for pid in pids:
        try:
            os.kill(pid, sig)
            n += 1
        except ProcessLookupError:
            pass
    return n


def delete_ns(ns: str) -> None:
    if exists(ns):
        run(["ip", "netns", "del", ns], check=False)
    # a half-created namespace can leave its mount point behind
    try:
        (NETNS_DIR / ns).unlink()
    except (FileNotFoundError, IsADirectoryError, PermissionError, OSError):
        pass


def write_resolv_conf(ns: str, nameserver: str) -> None:
    """`ip netns exec NS` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf, so every
    process we start there (Postfix's smtp client included) asks the lab's DNS, never the host's."""
    d = ETC_NETNS / ns
    d.mkdir(parents=True, exist_ok=True)
    (d / "resolv.conf").write_text(f"nameserver {nameserver}\noptions timeout:1 attempts:2\n")


def remove_etc_netns(prefix: str) -> None:
    if not ETC_NETNS.exists():
        return
    for d in ETC_NETNS.iterdir():
        if d.name.startswith(prefix) and d.is_dir():
            for f in d.iterdir():
                f.unlink(missing_ok=True)
            d.rmdir()
    try:
        ETC_NETNS.rmdir()  # only if empty: someone else's entries stay
    except OSError:
        pass


# --------------------------------------------------------------------------- building


def build_network(plan: LabPlan) -> None:
    """Namespaces, the router with one bridge per segment, one veth per host, addresses, routes."""
    for name in plan.names():
        ns = plan.ns(name)
        if exists(ns):
            raise LabError(f"namespace {ns} already exists: run `hacluster lab down` first")
        run(["ip", "netns", "add", ns])
    router = plan.router_ns
    sysctl(router, {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
                    "net.ipv6.conf.default.accept_dad": "0"})
    lines = ["link set lo up"]
    for seg in plan.segments:
        lines.append(f"link add {seg.bridge} address {seg.mac} type bridge stp_state 0 forward_delay 0 mcast_snooping 0")
        lines.append(f"link set {seg.bridge} up")
        lines.append(f"addr add {seg.router} dev {seg.bridge}")
        if seg.router6 is not None:
            lines.append(f"addr add {seg.router6} dev {seg.bridge} nodad")
    for h in plan.hosts:
        seg = plan.segment(h.segment)
        lines.append(f"link add {h.peer} type veth peer name {h.interface} address {h.mac} netns {plan.ns(h.name)}")
        lines.append(f"link set {h.peer} master {seg.bridge} up")
    ip_batch(router, lines)
    for h in plan.hosts:
        configure_host(plan, h.name)


def host_lines(plan: LabPlan, name: str) -> list[str]:
    """iproute2 commands that give a host its addresses and routes (also used by power-on)."""
    h = plan.host(name)
    lines = ["link set lo up", f"link set {h.interface} up"]
    for a in h.addresses:
        lines.append(f"addr replace {a} dev {h.interface}" + (" nodad" if a.version == 6 else ""))
    lines.append(f"route replace default via {h.gateway4} dev {h.interface}")
    if h.gateway6 is not None:
        lines.append(f"route replace default via {h.gateway6} dev {h.interface}")
    return lines


def configure_host(plan: LabPlan, name: str) -> None:
    ns = plan.ns(name)
    ip_batch(ns, host_lines(plan, name))
