"""keepalived as the benchmark peer: VRRP managing the same VIP on the same store namespaces, so
`bench failover --vs keepalived` compares like with like. By default as shipped (VRRPv2,
advert_int 1); `advert_int` below 1 s is how an operator who cares about failover tunes it, and
needs VRRPv3 (centisecond adverts, RFC 5798), so the config then says `version 3`."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

CONF = """\
global_defs {{
    router_id {node}
    enable_script_security
    script_user root
}}
vrrp_instance store {{
    state BACKUP
    interface {interface}
    virtual_router_id 51
    priority {priority}
{version}    advert_int {advert}
    nopreempt
    virtual_ipaddress {{
        {vip} dev {interface}
    }}
}}
"""


def check_advert(advert_int: float) -> None:
    """ValueError unless keepalived can run this advert interval."""
    if not 0.01 <= advert_int <= 255:
        raise ValueError(f"advert_int {advert_int:g}: keepalived takes 0.01..255 s")
    if advert_int < 1 and abs(round(advert_int * 100) - advert_int * 100) > 1e-6:
        raise ValueError(f"advert_int {advert_int:g}: VRRPv3 adverts are whole centiseconds")


def conf(node: str, interface: str, priority: int, vip: str, advert_int: float = 1.0) -> str:
    """keepalived.conf for one store: VRRPv2 at whole-second adverts, VRRPv3 below a second."""
    check_advert(advert_int)
    version = "    version 3\n" if advert_int < 1 else ""
    return CONF.format(node=node, interface=interface, priority=priority, vip=vip, version=version,
                       advert=f"{advert_int:g}")


class Keepalived:
    """One keepalived per node namespace; `ns` maps node -> network namespace name."""

    def __init__(self, workdir: Path, ns: dict[str, str], vip: str, interface: str = "eth0",
                 advert_int: float = 1.0) -> None:
        self.dir = workdir
        self.advert_int = advert_int
        self.ns = ns
        self.vip = vip
        self.interface = interface
        self.procs: dict[str, subprocess.Popen] = {}

    def conf_path(self, node: str) -> Path:
        return self.dir / f"keepalived-{node}.conf"

    def start(self, node: str, priority: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path(node).write_text(conf(node, self.interface, priority, self.vip, self.advert_int))
        pid = self.dir / f"keepalived-{node}.pid"
        vpid = self.dir / f"vrrp-{node}.pid"
        # ours, and every process they name was killed (kill/power-off): a killed VRRP child not
        # yet reaped by init still answers kill(pid, 0), and keepalived then refuses to start
        # ("daemon is already running")
        for f in (pid, vpid):
            f.unlink(missing_ok=True)
        cmd = ["ip", "netns", "exec", self.ns[node], "keepalived", "--dont-fork", "--log-console", "--vrrp",
               "--use-file", str(self.conf_path(node)), "--pid", str(pid), "--vrrp_pid", str(vpid)]
        log = open(self.dir / f"keepalived-{node}.log", "ab")
        self.procs[node] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def kill(self, node: str) -> None:
        """SIGKILL every keepalived process of this node (parent and VRRP child); also reaps
        processes a lab power-off already killed."""
        p = self.procs.pop(node, None)
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(5)

    def stop(self) -> None:
        for node in list(self.procs):
            p = self.procs[node]
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            self.kill(node)
        # keepalived removes its VIP on SIGTERM; after SIGKILL the kernel keeps it: clean up
        for ns in self.ns.values():
            subprocess.run(["ip", "-n", ns, "addr", "del", f"{self.vip}", "dev", self.interface],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
