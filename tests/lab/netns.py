"""Network-namespace helpers for the VIP lab tests.

One segment: a router namespace holding bridge br0 (198.51.100.1/24, fd00:51::1/64) and one
namespace per host, attached by a veth whose host end is `eth0` (created directly inside the
namespaces, so no interface name ever appears in the root namespace). Addresses match the
embedded lab spec (store1 .11, store2 .12, store VIP .20), so the VIP resource is built from the
real spec. Every namespace name starts with PREFIX; `Segment.down()` kills what runs inside and
deletes them, and `remove_stale()` does the same for leftovers of a crashed run.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "hcv-"
NET4, ROUTER4 = "198.51.100", "198.51.100.1"
ROUTER6 = "fd00:51::1"
_seq = itertools.count()


def run(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, timeout=timeout, capture_output=True, text=True)


def nsrun(ns: str, *args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


def kill_ns(ns: str) -> None:
    """Kill every process in ns, then delete it (idempotent)."""
    pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run("ip", "netns", "del", ns, check=False)


def remove_stale() -> None:
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX):
            kill_ns(name)


def addrs(ns: str, ifname: str = "eth0") -> set[str]:
    out = run("ip", "-n", ns, "-j", "addr", "show", "dev", ifname, check=False).stdout
    have: set[str] = set()
    for link in json.loads(out or "[]"):
        have |= {a["local"] for a in link.get("addr_info", [])}
    return have


def mac_of(ns: str, ifname: str = "eth0") -> str:
    return json.loads(run("ip", "-n", ns, "-j", "link", "show", "dev", ifname).stdout)[0]["address"]


def neigh_mac(ns: str, ip: str, dev: str = "br0") -> str | None:
    out = run("ip", "-n", ns, "-j", "neigh", "show", ip, "dev", dev, check=False).stdout
    for entry in json.loads(out or "[]"):
        if entry.get("lladdr"):
            return entry["lladdr"]
    return None


def wait_for(pred: Any, timeout: float, step: float = 0.005) -> float | None:
    """Poll pred() until true; seconds it took, or None on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(step)
    return time.monotonic() - t0 if pred() else None


@dataclass
class Host:
    name: str  # e.g. "store1" in the spec
    ns: str
    addr4: str
    addr6: str
    mac: str = ""


@dataclass
class Segment:
    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}{next(_seq)}")
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def router(self) -> str:
        return f"{PREFIX}r{self.tag}"

    def up(self) -> "Segment":
        r = self.router
        run("ip", "netns", "add", r)
        run("ip", "-n", r, "link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0")
        run("ip", "-n", r, "addr", "add", f"{ROUTER4}/24", "dev", "br0")
        run("ip", "-n", r, "addr", "add", f"{ROUTER6}/64", "dev", "br0", "nodad")
        run("ip", "-n", r, "link", "set", "br0", "up")
        run("ip", "-n", r, "link", "set", "lo", "up")
        return self

    def add_host(self, name: str, last: int) -> Host:
        ns = f"{PREFIX}{name[0]}{last}-{self.tag}"
        port = f"v{last}"
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.router)
        run("ip", "-n", self.router, "link", "set", port, "master", "br0")
        run("ip", "-n", self.router, "link", "set", port, "up")
        host = Host(name, ns, f"{NET4}.{last}", f"fd00:51::{last}")
        run("ip", "-n", ns, "addr", "add", f"{host.addr4}/24", "dev", "eth0")
        run("ip", "-n", ns, "addr", "add", f"{host.addr6}/64", "dev", "eth0", "nodad")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        host.mac = mac_of(ns)
        self.hosts[name] = host
        return host

    def down(self) -> None:
        for host in self.hosts.values():
            kill_ns(host.ns)
        kill_ns(self.router)

    def ping(self, ip: str) -> bool:
        """From the router; primes (or refreshes) its neighbour entry for ip."""
        cmd = ["ping", "-6" if ":" in ip else "-4", "-c", "1", "-W", "1", ip]
        return nsrun(self.router, *cmd, check=False).returncode == 0


class Capture:
    """tcpdump in a namespace writing a pcap; read() stops it and returns scapy packets."""

    def __init__(self, ns: str, ifname: str, bpf: str, tmp: Path) -> None:
        self.path = tmp / f"cap-{ns}-{ifname}.pcap"
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-c", "2000",
                                      "-w", str(self.path), bpf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if ready and "listening on" in self.proc.stderr.readline():
                return
        self.stop()
        raise RuntimeError("tcpdump did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def read(self) -> list[Any]:
        from scapy.utils import rdpcap

        self.stop()
        return list(rdpcap(str(self.path)))


DRIVER = Path(__file__).with_name("vip_driver.py")


class Driver:
    """A VipResource in a child python inside a namespace, driven by JSON lines: the same
    process layout as the agent (which runs inside the node's namespace)."""

    def __init__(self, ns: str, node: str, tmp: Path, **params: Any) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix=f"vipdrv-{ns}-", suffix=".log", dir=tmp, delete=False)
        self.state_dir = tmp / f"state-{ns}"  # the VIP record: STATE_DIR/vips/ROLE.json
        args = ["ip", "netns", "exec", ns, sys.executable, "-u", str(DRIVER), "--node", node,
                "--state-dir", str(self.state_dir)]
        for k, v in params.items():
            args += ["--param", f"{k}={json.dumps(v)}"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.pid = self.proc.pid  # `ip netns exec` execs python: this is the resource's process
        assert self.call("ping", timeout=30)["ok"]

    def call(self, op: str, timeout: float = 10.0, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"driver: no answer to {op} within {timeout}s; log: {self.log_text()}")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"driver died; log: {self.log_text()}")
        return json.loads(line)

    def log_text(self) -> str:
        return Path(self.log.name).read_text()[-3000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)
                self.call("exit", timeout=5)
            except (OSError, RuntimeError, TimeoutError, ValueError):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self.log.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False
