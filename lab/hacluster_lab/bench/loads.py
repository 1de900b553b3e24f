"""The bounded loads of `bench false-failover`: what a busy host does to a lease, with no fault.

Each load runs on the host that holds the store VIP when the window opens (it stays there if
the role moves: the busy machine is a machine, not a role) and every process it starts carries
its own deadline, so nothing outlives the window even if the bench dies (the lab's teardown
kills what is left in the namespace as well).

* ``cpu``   -- every process of the holder's namespace (agent and its threads, guard, Postfix,
  keepalived) is pinned with sched_setaffinity (what `taskset -a -p` does) to `cores` CPUs, and
  `hogs_per_core` busy loops pinned to the same CPUs run in the namespace at the bench's nice level:
  the holder's processes get a fair share of a saturated core and no more, except the agent,
  which raises its own priority at start (`--raise-priority`, docs/operations.md). The other CPUs
  stay free for the rest of the machine (the lab's ZooKeeper, the monitor, other users).
* ``io``    -- `writers` processes in the holder's namespace write `block_kib` blocks to a file in
  the holder's state directory (the disk the agent's state and logs are on) and fsync after
  each; the file wraps at `file_mib`, so the disk use is bounded.
* ``zk-gc`` -- a ZooKeeper server is stopped (SIGSTOP of its JVM, as a stop-the-world GC pause
  stops every thread) for a few hundred ms and continued (SIGCONT) every `period_s`,
  alternately a follower and the leader (as `srvr` names them at that instant); the pauses
  cycle through `pauses_ms`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..lab.netns import in_ns, pids_in
from ..lab.state import read_pidfile

LOADS = ("cpu", "io", "zk-gc")

_HOG = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"

_WRITER = """\
import os, sys, time
path, end, block, size = sys.argv[1], time.monotonic() + float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
buf = os.urandom(block)
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
n = 0
try:
    while time.monotonic() < end:
        if os.lseek(fd, 0, os.SEEK_CUR) + block > size:
            os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, buf)
        os.fsync(fd)
        n += 1
finally:
    os.close(fd)
    os.unlink(path)
    print(n)
"""


class LoadLab(Protocol):
    """What a load needs of a lab (hacluster_lab.lab.lab.Lab is one)."""

    def ns(self, name: str) -> str: ...
    def zk_modes(self) -> dict[str, str | None]: ...

    @property
    def paths(self) -> Any: ...

    @property
    def plan(self) -> Any: ...


@dataclass
class LoadParams:
    """The documented bounds of every load (the JSON reports them)."""

    cores: int = 1
    hogs_per_core: int = 2
    writers: int = 2
    block_kib: int = 64
    file_mib: int = 64
    period_s: float = 5.0
    pauses_ms: tuple[int, ...] = (200, 350, 500)

    def describe(self, load: str) -> dict[str, Any]:
        if load == "cpu":
            return {"cores": self.cores, "hogs_per_core": self.hogs_per_core}
        if load == "io":
            return {"writers": self.writers, "block_kib": self.block_kib, "file_mib": self.file_mib,
                    "fsync": "after every block"}
        return {"period_s": self.period_s, "pauses_ms": list(self.pauses_ms), "targets": "follower, leader alternately"}


@dataclass
class Load:
    """One running load; `start` then `stop` (idempotent), `stop` returns what it did."""

    kind: str
    lab: LoadLab
    host: str
    max_s: float
    params: LoadParams = field(default_factory=LoadParams)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pinned: dict[int, set[int]] = field(default_factory=dict)  # tid -> its affinity before
    pauses: list[dict[str, Any]] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "Load":
        if self.kind not in LOADS:
            raise ValueError(f"unknown load {self.kind!r} (known: {', '.join(LOADS)})")
        if self.kind == "cpu":
            self._start_cpu()
        elif self.kind == "io":
            self._start_io()
        else:
            self._thread = threading.Thread(target=self._zk_pauses, name="zk-gc", daemon=True)
            self._thread.start()
        return self

    # ------------------------------------------------------------------ cpu

    def _start_cpu(self) -> None:
        allowed = sorted(os.sched_getaffinity(0))
        self.cpus = allowed[-self.params.cores:] if len(allowed) > self.params.cores else allowed
        self.pin_holder()
        for _ in range(self.params.hogs_per_core * len(self.cpus)):
            self._spawn([sys.executable, "-c", _HOG, f"{self.max_s:.1f}"], cpus=set(self.cpus))

    def pin_holder(self) -> int:
        """Pin every thread of every process in the holder's namespace to the load's CPUs
        (again: threads and processes started since are caught too). Returns threads pinned."""
        mine = {p.pid for p in self.procs}
        n = 0
        for pid in pids_in(self.lab.ns(self.host)):
            if pid in mine:
                continue
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in tids:
                try:
                    before = os.sched_getaffinity(tid)
                    if before != set(self.cpus):
                        os.sched_setaffinity(tid, self.cpus)
                        self.pinned.setdefault(tid, before)
                        n += 1
                except OSError:
                    pass  # gone meanwhile
        return n

    def _unpin(self) -> None:
        for tid, before in self.pinned.items():
            try:
                os.sched_setaffinity(tid, before)
            except OSError:
                pass

    # ------------------------------------------------------------------ io

    def _start_io(self) -> None:
        d = Path(self.lab.paths.node(self.host))
        d.mkdir(parents=True, exist_ok=True)
        for i in range(self.params.writers):
            self._spawn([sys.executable, "-c", _WRITER, str(d / f"false-failover-io-{i}.dat"), f"{self.max_s:.1f}",
                         str(self.params.block_kib * 1024), str(self.params.file_mib * 1024 * 1024)])

    # ------------------------------------------------------------------ zk-gc

    def _zk_pid(self, name: str) -> int | None:
        zk_id = self.lab.plan.host(name).zk_id
        return read_pidfile(Path(self.lab.paths.zk) / f"zk{zk_id}" / "zk.pid")

    def _zk_pauses(self) -> None:
        end = time.monotonic() + self.max_s
        i = 0
        while not self._stop.wait(self.params.period_s) and time.monotonic() < end:
            want = "follower" if i % 2 == 0 else "leader"
            pause = self.params.pauses_ms[(i // 2) % len(self.params.pauses_ms)] / 1000
            i += 1
            target = next((n for n, m in sorted(self.lab.zk_modes().items()) if m == want), None)
            pid = self._zk_pid(target) if target else None
            if pid is None:
                self.pauses.append({"t": time.monotonic(), "target": want, "skipped": "no such server serving"})
                continue
            t0 = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(pause)
            finally:
                os.kill(pid, signal.SIGCONT)
            self.pauses.append({"t": t0, "target": want, "host": target, "paused_s": round(time.monotonic() - t0, 3)})

    # ------------------------------------------------------------------ common

    def _spawn(self, cmd: list[str], cpus: set[int] | None = None) -> None:
        pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.procs.append(subprocess.Popen(in_ns(self.lab.ns(self.host), cmd), stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                           start_new_session=True, preexec_fn=pre))

    def stop(self) -> dict[str, Any]:
        """End the load (SIGCONT first for a paused server) and say what it did."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5 + max(self.params.pauses_ms) / 1000)
        out: dict[str, Any] = {"kind": self.kind, "host": self.host, **self.params.describe(self.kind)}
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # the writer's finally removes its file
        done: list[str] = []
        for p in self.procs:
            try:
                stdout, _ = p.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                stdout, _ = p.communicate()
            done.append(stdout.decode(errors="replace").strip())
        self.procs.clear()
        if self.kind == "cpu":
            self._unpin()
            out["cpus"] = self.cpus
            out["threads_pinned"] = len(self.pinned)
        elif self.kind == "io":
            out["fsyncs"] = sum(int(x) for x in done if x.isdigit())
        else:
            done_p = [p for p in self.pauses if "paused_s" in p]
            out["pauses"] = len(done_p)
            out["pauses_by_target"] = {t: sum(1 for p in done_p if p["target"] == t) for t in ("follower", "leader")}
            out["paused_s_max"] = max((p["paused_s"] for p in done_p), default=0.0)
            out["skipped"] = sum(1 for p in self.pauses if "skipped" in p)
        return out
