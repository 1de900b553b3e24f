"""Fault injection for the lab's hosts.

* kill-agent -- SIGKILL the node agent (its kernel keeps any VIP: the guard's problem to solve).
* kill-mta   -- SIGKILL the host's Postfix master and its whole process group.
* freeze     -- SIGSTOP the agent (a stalled agent; kernel, guard and Postfix keep running).
* thaw       -- SIGCONT it.
* power-off  -- the wire is cut first (both veth ends down), then every process in the host's
                namespace gets SIGKILL. Addresses linger on the down link, like RAM contents of
                a dead host: they hold nothing, since the link is down and the host is marked off.
* power-on   -- a fresh boot: addresses flushed and re-added (a VIP does not survive a reboot),
                links up, the host's services started again (Postfix, dnsmasq, ZooKeeper, agent).
* isolate    -- nft drops everything but loopback (ARP too) until `heal`.
* freeze-host -- SIGSTOP every process of the host (agent, guards, Postfix, all): a paused VM or a
                kernel stall, which no guard of its own survives; `thaw-host` sends SIGCONT.
* restart-agent -- a planned restart: SIGTERM (the agent stops its resources and hands its roles
                off), wait for the exit (SIGKILL after 10 s), start it again.
* raid-degraded -- the node's simulated /proc/mdstat shows md1 degraded (hacluster_lab.lab.mdstat_sim);
                the raid check alerts (penalty 50), nothing fails over.
* raid-repair -- the simulated arrays are whole again.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any, Protocol

from . import mdstat_sim, netns, nftrules
from .netns import LabError, in_ns, run
from .state import read_pidfile
from .topology import Host

if TYPE_CHECKING:
    from pathlib import Path

    from hacluster.resources.mta import MtaResource
    from hacluster.spec import ClusterSpec
    from .state import LabPaths
    from .topology import LabPlan


class FaultTarget(Protocol):
    """What the faults drive of a lab (hacluster_lab.lab.lab.Lab is one; no import of it: no circle)."""

    plan: LabPlan
    paths: LabPaths
    spec: ClusterSpec

    def ns(self, name: str) -> str: ...
    def agent_pid(self, name: str) -> int | None: ...
    def start_agent(self, name: str, config: Path | None = None) -> int: ...
    def stop_agent(self, name: str, timeout_s: float = 10.0) -> float | None: ...
    def mta(self, name: str) -> MtaResource: ...
    def powered_off(self) -> set[str]: ...
    def start_service(self, name: str) -> None: ...


def apply_host_fault(lab: FaultTarget, host: Host, kind: str) -> dict[str, Any]:
    ns = lab.ns(host.name)
    if not netns.exists(ns):
        raise LabError(f"{ns} does not exist: is the lab up?")
    if kind in ("kill-agent", "freeze", "thaw"):
        pid = read_pidfile(lab.paths.agent_pid(host.name))
        if pid is None:
            raise LabError(f"no agent is running on {host.name}")
        sig = {"kill-agent": signal.SIGKILL, "freeze": signal.SIGSTOP, "thaw": signal.SIGCONT}[kind]
        os.kill(pid, sig)
        marker = lab.paths.frozen / host.name
        if kind == "freeze":
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
        return {"pid": pid}
    if kind == "restart-agent":
        if lab.agent_pid(host.name) is None:
            raise LabError(f"no agent is running on {host.name}")
        stopped = lab.stop_agent(host.name)
        return {"stop_s": stopped, "pid": lab.start_agent(host.name)}
    if kind == "kill-mta":
        pid = lab.mta(host.name).master_pid()
        if pid is None:
            raise LabError(f"no Postfix is running on {host.name}")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return {"pid": pid}
    if kind == "power-off":
        return power_off(lab, host)
    if kind == "power-on":
        return power_on(lab, host)
    if kind in ("freeze-host", "thaw-host"):
        sig = signal.SIGSTOP if kind == "freeze-host" else signal.SIGCONT
        pids = netns.pids_in(ns)
        return {"signalled": netns.signal_pids(pids, sig), "pids": len(pids)}
    if kind in mdstat_sim.FAULT_SAMPLES:
        path = mdstat_sim.simulated_path(lab.spec, host.name, lab.paths.node(host.name))
        if path is None:
            raise LabError(f"{host.name} has no simulated RAID (a `raid` check with `simulated: true` and its "
                           "mdstat file under {state_dir}, under health: in the spec)", exit_code=2)
        mdstat_sim.write(path, mdstat_sim.FAULT_SAMPLES[kind])
        return {"mdstat": str(path), "sample": "degraded" if kind == "raid-degraded" else "healthy"}
    if kind == "isolate":
        run(in_ns(ns, ["nft", "-f", "-"]), input=nftrules.isolate_ruleset())
        return {}
    raise LabError(f"unknown fault {kind!r}", exit_code=2)


def power_off(lab: FaultTarget, host: Host) -> dict[str, Any]:
    ns = lab.ns(host.name)
    run(["ip", "-n", lab.plan.router_ns, "link", "set", host.peer, "down"])
    run(["ip", "-n", ns, "link", "set", host.interface, "down"])
    (lab.paths.power / host.name).touch()
    killed = netns.kill_all(ns)
    (lab.paths.frozen / host.name).unlink(missing_ok=True)
    return {"killed": killed}


def power_on(lab: FaultTarget, host: Host) -> dict[str, Any]:
    ns = lab.ns(host.name)
    if host.name not in lab.powered_off():
        return {"already_on": True}
    run(["ip", "-n", ns, "addr", "flush", "dev", host.interface])
    netns.configure_host(lab.plan, host.name)
    run(["ip", "-n", lab.plan.router_ns, "link", "set", host.peer, "up"])
    (lab.paths.power / host.name).unlink(missing_ok=True)
    lab.start_service(host.name)
    return {}


def apply_partition(lab: FaultTarget, side_a: list[Host], side_b: list[Host]) -> None:
    for a in side_a:
        for b in side_b:
            for x, y in ((a, b), (b, a)):
                run(in_ns(lab.ns(x.name), ["nft", "-f", "-"]), input=nftrules.partition_ruleset(y))


def heal_all(lab: FaultTarget) -> list[str]:
    """Delete the lab's nft tables in every namespace; returns the hosts that had some."""
    healed = []
    for h in lab.plan.hosts:
        ns = lab.ns(h.name)
        if not netns.exists(ns):
            continue
        present = nftrules.present_tables(run(in_ns(ns, ["nft", "list", "tables"]), check=False).stdout)
        script = nftrules.delete_ruleset(present)
        if script:
            run(in_ns(ns, ["nft", "-f", "-"]), input=script)
            healed.append(h.name)
    return healed
