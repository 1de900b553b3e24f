"""A cluster of real agents on loopback, around a real ZooKeeper: the demo, the election
benchmark and the integration tests all drive agents through this, as separate processes that can
be SIGKILLed and SIGSTOPped like on real hosts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from hacluster import clock
from hacluster.agent.claims import Claim, claims, overlaps, read_events
from hacluster.coord.session import Coordinator
from hacluster.examples import loopback_spec
from hacluster.spec import ClusterSpec, parse_spec

#: the loopback cluster's spec (N store nodes on 127.0.0.11.., one role with a marker resource)
#: is the product's own example, shared with its unit tests
spec_text = loopback_spec


class LocalCluster:
    """N agents as subprocesses; every agent logs claims to `<dir>/claims-<node>.jsonl`."""

    def __init__(self, zk_hosts: str, workdir: Path | None = None, n: int = 3, profile: str = "default",
                 cluster: str | None = None, spec_text_: str | None = None, api: bool = False,
                 api_port_base: int = 18740, session_timeout: float = 4.0, shared_api_port: bool = False) -> None:
        self.own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="hacluster-local-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        cluster = cluster or f"c{os.getpid()}x{int(time.time() * 1000) % 100000}"
        text = spec_text_ or spec_text(zk_hosts, n, profile, cluster, session_timeout=session_timeout)
        self.spec_path = self.dir / "cluster.yml"
        self.spec_path.write_text(text)
        self.spec: ClusterSpec = parse_spec(text, str(self.spec_path))
        self.procs: dict[str, subprocess.Popen] = {}
        self.node_config: dict[str, Path] = {}  # nodes started with a spec file of their own
        self.api = api
        self.api_port_base = api_port_base  # node i (0-based) serves its API on api_port_base + i
        # or every node on the spec's api.port at its own address, as on real hosts (failsafe mode:
        # the agents find each other's API through the spec)
        self.shared_api_port = shared_api_port
        self.t0 = clock.now()

    @property
    def nodes(self) -> list[str]:
        return list(self.spec.nodes)

    def state_dir(self, node: str) -> Path:
        return self.dir / "state" / node

    def log_path(self, node: str) -> Path:
        return self.dir / f"agent-{node}.log"

    def start(self, node: str, config: Path | None = None, env: dict[str, str] | None = None) -> None:
        """(Re)start a node's agent; `config`: a spec file of its own (kept for later restarts),
        e.g. another timing profile for a rolling change; `env`: added to its environment (what
        systemd would set, e.g. NOTIFY_SOCKET)."""
        self.stop_proc(node)
        self.state_dir(node).mkdir(parents=True, exist_ok=True)
        if config is not None:
            self.node_config[node] = config
        spec = self.node_config.get(node, self.spec_path)
        cmd = [sys.executable, "-m", "hacluster", "agent", "--config", str(spec), "--node", node,
               "--state-dir", str(self.state_dir(node)), "--claims-log", str(self.dir / f"claims-{node}.jsonl"),
               "--api-port", "0" if not self.api else str(self.api_port(node))]
        log = open(self.log_path(node), "ab")
        self.procs[node] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, env={**os.environ, **env} if env else None)
        log.close()

    def api_port(self, node: str) -> int:
        if self.shared_api_port:
            return self.spec.api.port
        return self.api_port_base + self.nodes.index(node)

    def api_url(self, node: str, path: str = "") -> str:
        return f"http://{self.spec.nodes[node].address}:{self.api_port(node)}{path}"

    def start_all(self) -> None:
        for n in self.nodes:
            self.start(n)

    def pid(self, node: str) -> int:
        return self.procs[node].pid

    def alive(self, node: str) -> bool:
        p = self.procs.get(node)
        return p is not None and p.poll() is None

    def signal(self, node: str, sig: int) -> None:
        os.kill(self.procs[node].pid, sig)

    def kill(self, node: str) -> float:
        """SIGKILL the agent; returns the CLOCK_BOOTTIME instant of the kill."""
        t = clock.now()
        self.signal(node, signal.SIGKILL)
        self.procs[node].wait(5)
        return t

    def stop_proc(self, node: str, timeout: float = 5.0) -> None:
        p = self.procs.pop(node, None)
        if p is None or p.poll() is not None:
            return
        try:
            os.kill(p.pid, signal.SIGCONT)
            p.terminate()
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        for n in list(self.procs):
            self.stop_proc(n)

    def cleanup(self) -> None:
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ------------------------------------------------------------------ observing

    def claims(self) -> list[Claim]:
        return claims(read_events(self.dir.glob("claims-*.jsonl")), clock.now())

    def dual_holders(self) -> list[tuple[Claim, Claim]]:
        return overlaps(self.claims())

    def believed_holders(self, role: str = "store", at: float | None = None) -> list[str]:
        """Nodes whose claim covers `at` (default: now) according to the claims logs."""
        at = clock.now() if at is None else at
        return sorted({c.node for c in self.claims() if c.role == role and c.start <= at < c.end})

    def wait_holder(self, role: str = "store", exclude: tuple[str, ...] = (), timeout: float = 20.0,
                    after: float = 0.0) -> tuple[str, float] | None:
        """Poll the claims logs until some node not in `exclude` claims `role` (acquired after
        `after`); returns (node, acquisition time)."""
        end = clock.now() + timeout
        while clock.now() < end:
            for ev in read_events(self.dir.glob("claims-*.jsonl")):
                if ev["event"] == "acquired" and ev["role"] == role and ev["node"] not in exclude and ev["t"] >= after:
                    return ev["node"], ev["t"]
            time.sleep(0.01)
        return None

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for n, p in self.procs.items():
            try:
                out[n] = psutil.Process(p.pid).memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                pass
        return out

    def coordinator(self, identity: str = "observer") -> Coordinator:
        c = Coordinator(self.spec, identity, request_timeout=5.0)
        c.start()
        return c

    def agent_log_tail(self, node: str, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path(node).read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def print_log_tails(self, lines: int = 15) -> None:
        """Every agent's last log lines on stdout (a test's teardown: pytest shows them on failure)."""
        for n in self.nodes:
            print(f"----- {n} (last lines)\n{self.agent_log_tail(n, lines)}")
