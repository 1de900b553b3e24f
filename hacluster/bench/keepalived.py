"""keepalived as the benchmark peer: VRRP with its defaults (advert_int 1) managing the same VIP
on the same store namespaces, so `bench failover --vs keepalived` compares like with like."""

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
    advert_int 1
    nopreempt
    virtual_ipaddress {{
        {vip} dev {interface}
    }}
}}
"""


class Keepalived:
    """One keepalived per node namespace; `ns` maps node -> network namespace name."""

    def __init__(self, workdir: Path, ns: dict[str, str], vip: str, interface: str = "eth0") -> None:
        self.dir = workdir
        self.ns = ns
        self.vip = vip
        self.interface = interface
        self.procs: dict[str, subprocess.Popen] = {}

    def conf_path(self, node: str) -> Path:
        return self.dir / f"keepalived-{node}.conf"

    def start(self, node: str, priority: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path(node).write_text(CONF.format(node=node, interface=self.interface, priority=priority, vip=self.vip))
        pid = self.dir / f"keepalived-{node}.pid"
        vpid = self.dir / f"vrrp-{node}.pid"
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
