"""The Vagrant lab on Vagrant's docker provider (systemd containers) as a drill target.

Same verbs as the VM lab (hacluster_lab.drill.vagrant) with what containers allow on top:

  power-off / power-on   `docker kill` (SIGKILL to the machine's init: every process dies at once,
                         the network namespace and its addresses go with it) / `docker start`
  every other step       `docker exec` into the machine: isolate and partition are nft tables on the
                         lab NIC, which is the container's only interface, so SSH would be cut with
                         it; exec does not use the network, so heal always reaches the machine
  invariant monitor      the namespace lab's own (hacluster_lab.lab.monitor.InvariantMonitor): every
                         container's network namespace is attached under /run/netns (hcv-NAME) and
                         sampled over netlink every 5 ms, the router namespace (hcv-router, where
                         the lab's dockerd and bridges live) for ARP convergence

The lab's addresses exist only in hcv-router (vagrant/docker-host), so the drills run there:
`vagrant/docker-host exec hacluster drill run ... --target vagrant`.

The deploy and the mail path still go over SSH (hacluster deploy, hacluster lab mail-path): the
machines are provisioned the production way; only the fault injection takes the shortcut.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hacluster.errors import UserError
from .target import MonitorData, monitor_data, vip_holders
from .vagrant import LAB_IFACE, VagrantTarget

NS_PREFIX = "hcv-"
ROUTER_NS = NS_PREFIX + "router"  # made by vagrant/docker-host: the lab's router and dockerd live in it
DOCKER_HOST = "unix:///run/hacluster-vagrant/docker.sock"  # the lab's own dockerd (vagrant/docker-host)


@dataclass(frozen=True)
class ExecResult:
    """The bits of a Fabric result the VM target reads."""

    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


def container_ids(vagrant_dir: Path, names: set[str]) -> dict[str, str]:
    """name -> docker container id of the machines Vagrant's docker provider made (none: {})."""
    out = {}
    for n in names:
        f = vagrant_dir / ".vagrant" / "machines" / n / "docker" / "id"
        if f.is_file() and f.read_text().strip():
            out[n] = f.read_text().strip()
    return out


def _run(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": DOCKER_HOST}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


class DockerVagrantTarget(VagrantTarget):
    name = "vagrant"

    def __init__(self, vagrant_dir: str | Path, ids: dict[str, str]) -> None:
        super().__init__(vagrant_dir)
        self.ids = ids
        self.power_dir = self.dir / ".state" / "power"
        self.mon: Any = None

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        missing = sorted(set(self.addr) - set(self.ids))
        if missing:
            raise UserError(f"vagrant target (docker): no container for {', '.join(missing)}: bring the lab up "
                            f"(cd {self.dir} && vagrant up --provider=docker --no-parallel)", 2)
        for name in sorted(self.addr):
            if not self._running(name):
                _run(["docker", "start", self.ids[name]])
        if not os.path.exists(f"/run/netns/{ROUTER_NS}"):
            raise UserError(f"vagrant target (docker): no namespace {ROUTER_NS}: start the lab with vagrant/docker-host up", 2)
        super().open()  # every machine answers on port 22 (from here: run in hcv-router, `docker-host exec`)
        self.power_dir.mkdir(parents=True, exist_ok=True)
        for f in self.power_dir.iterdir():
            f.unlink()
        for name in self.spec.nodes:
            self._attach(name)

    def close(self) -> None:
        super().close()
        for name in self.spec.nodes:
            _run(["ip", "netns", "delete", NS_PREFIX + name])

    def _check(self, cmd: list[str], what: str, timeout: float = 60.0) -> str:
        r = _run(cmd, timeout)
        if r.returncode != 0:
            raise UserError(f"{what}: {' '.join(cmd)}: {(r.stderr or r.stdout).strip()[-300:]}", 1)
        return r.stdout

    def _running(self, name: str) -> bool:
        r = _run(["docker", "inspect", "-f", "{{.State.Running}}", self.ids[name]])
        return r.stdout.strip() == "true"

    def _attach(self, name: str) -> None:
        """/run/netns/hcv-NAME -> the container's current network namespace."""
        pid = self._check(["docker", "inspect", "-f", "{{.State.Pid}}", self.ids[name]], f"pid of {name}").strip()
        _run(["ip", "netns", "delete", NS_PREFIX + name])
        self._check(["ip", "netns", "attach", NS_PREFIX + name, pid], f"attach {name}'s namespace")

    def _ssh(self, host: str, cmd: str, timeout: float = 30.0, warn: bool = False) -> Any:
        """`docker exec` (the name stays: the VM target's verbs call it)."""
        try:
            r = _run(["docker", "exec", self.ids[host], "sh", "-c", cmd], timeout)
        except subprocess.TimeoutExpired:
            if warn:
                return ExecResult("", "timed out", 124)
            raise UserError(f"{host}: `{cmd[:60]}` timed out after {timeout:g}s", 1) from None
        res = ExecResult(r.stdout, r.stderr, r.returncode)
        if not res.ok and not warn:
            raise UserError(f"{host}: `{cmd[:60]}` failed: {(r.stderr or r.stdout).strip()[-300:]}", 1)
        return res

    # ------------------------------------------------------------------ observation

    def start_monitor(self, duration_s: float) -> None:
        from ..lab.monitor import InvariantMonitor, MonitorTarget

        vips = tuple(r.vip for r in self.roles().values() if r.vip)
        hosts = tuple((n, NS_PREFIX + n) for n in sorted(self.spec.nodes))
        self.mon = InvariantMonitor(MonitorTarget(hosts, vips, ROUTER_NS, self.power_dir),
                                    duration_s=duration_s).start()

    def stop_monitor(self) -> MonitorData:
        mon, self.mon = self.mon, None
        return monitor_data(mon.stop() if mon is not None else None)

    def holders(self, role: str) -> list[str]:
        return vip_holders(self.roles()[role], self.mon, self._vip_holders)

    # ------------------------------------------------------------------ actions

    def fault(self, kind: str, node: str | None, peer: list[str] | None) -> dict[str, Any]:
        n = node or ""
        if kind == "power-off":
            t = time.monotonic()
            self._off.add(n)
            (self.power_dir / n).touch()  # before the kill: the monitor counts no holder from here on
            # the wire first, as a power cut silences the NIC at once (and as the namespace lab's
            # power-off does): the kill below ends the processes, not the network namespace, which
            # lives on while anything holds it -- our /run/netns handle, the monitor's reader -- and
            # its kernel would go on answering ARP for the VIP it had (seen: the standby's
            # duplicate-address probe got the dead holder's MAC and refused the VIP)
            if n in self.spec.nodes:
                _run(["ip", "-n", NS_PREFIX + n, "link", "set", LAB_IFACE, "down"])
            self._check(["docker", "kill", "-s", "KILL", self.ids[n]], f"power off {n}")
            if n in self.spec.nodes:  # let the kernel free the namespace: drop every handle we hold on it
                if self.mon is not None:
                    self.mon.drop(n)
                _run(["ip", "netns", "delete", NS_PREFIX + n])
            return {"t_mono": t, "fault": kind, "node": n, "peer": peer}
        if kind == "power-on":
            t = time.monotonic()
            self._check(["docker", "start", self.ids[n]], f"power on {n}")
            if n in self.spec.nodes:
                self._attach(n)
                if self.mon is not None:
                    self.mon.reopen(n)
            (self.power_dir / n).unlink(missing_ok=True)
            self._off.discard(n)
            return {"t_mono": t, "fault": kind, "node": n, "peer": peer}
        return super().fault(kind, node, peer)
