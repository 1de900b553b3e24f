"""A real systemd, as PID 1, for tests on a machine (or a CI chroot) where systemd is not init.

No image and no container runtime: systemd (Debian's, already installed) boots in its own PID,
mount and cgroup namespace, on an overlay of this machine's own root (writes go to a tmpfs), with
a target of ours that starts nothing, so only the units a test starts run. Its cgroup tree is a
fresh subtree of the host's (`hacluster-box-*`), so its `systemctl stop` cannot reach anybody
else's processes; the network namespace is the caller's (a test reaches what the box serves on
loopback). Commands run inside with nsenter (its mount namespace and root, its PID namespace), so
`systemctl` there talks to the box's PID 1. SIGKILL to that PID 1 ends everything in the box.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil

CGROUP_DIRS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
_seq = itertools.count()

# $1: the box's directory. Runs as PID 1 of new PID/mount/cgroup namespaces until the exec.
BOOT = r"""
set -e
B=$1
mkdir -p $B/upper $B/root
mount -t tmpfs -o mode=755 tmpfs $B/upper
mkdir -p $B/upper/u $B/upper/w
mount -t overlay overlay -o lowerdir=/,upperdir=$B/upper/u,workdir=$B/upper/w $B/root
R=$B/root
mount -t proc proc $R/proc
mount --rbind /sys $R/sys
# cgroup hierarchies mounted afresh inside the cgroup namespace: their root is the box's subtree
mount -t tmpfs -o mode=755 tmpfs $R/sys/fs/cgroup
if grep -q 'name=systemd' /proc/self/cgroup && [ -d /sys/fs/cgroup/systemd ]; then
  mkdir $R/sys/fs/cgroup/systemd $R/sys/fs/cgroup/unified
  mount -t cgroup -o none,name=systemd cgroup $R/sys/fs/cgroup/systemd
  mount -t cgroup2 cgroup2 $R/sys/fs/cgroup/unified
else
  umount $R/sys/fs/cgroup
  mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
fi
mount --rbind /dev $R/dev
: > $B/console.log
mount --bind $B/console.log $R/dev/console
mount -t tmpfs tmpfs $R/run
mount -t tmpfs tmpfs $R/tmp
mkdir -p $R/etc/systemd/system
printf '[Unit]\nDescription=hacluster test box: nothing but what a test starts\n' > $R/etc/systemd/system/hacluster-box.target
exec chroot $R /usr/bin/env -i container=hacluster-box PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --system --unit=hacluster-box.target
"""

# moves itself into the box's fresh cgroups, then makes the namespaces (the box's PID 1 is its child)
OUTER = r"""
for d in "$@"; do echo $$ > "$d/cgroup.procs"; done
exec unshare --cgroup --mount --pid --fork --kill-child --propagation private /bin/bash -c "$BOOT" box "$BOX"
"""


class SystemdBox:
    def __init__(self, base: Path) -> None:
        self.dir = base / f"box{next(_seq)}"
        self.name = f"hacluster-box-{os.getpid()}-{self.dir.name}"
        self.cgroups: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1: int | None = None

    def start(self, timeout: float = 60.0) -> "SystemdBox":
        self.dir.mkdir(parents=True)
        hierarchies = [d for d in CGROUP_DIRS[:2] if d.is_dir()] or [CGROUP_DIRS[2]]
        for h in hierarchies:
            cg = h / self.name
            cg.mkdir()
            self.cgroups.append(cg)
        self.proc = subprocess.Popen(["/bin/bash", "-c", OUTER, "outer", *map(str, self.cgroups)],
                                     env={**os.environ, "BOOT": BOOT, "BOX": str(self.dir)},
                                     stdin=subprocess.DEVNULL, stdout=open(self.dir / "boot.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = [p for p in psutil.Process(self.proc.pid).children() if p.name() == "systemd"]
            if kids:
                self.pid1 = kids[0].pid
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"systemd did not come up in the box: {(self.dir / 'boot.log').read_text()[-2000:]}")

    def run(self, *cmd: str, check: bool = True, timeout: float = 120.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """A command inside the box (its root, mounts and PID namespace)."""
        assert self.pid1 is not None
        res = subprocess.run(["nsenter", "-t", str(self.pid1), "-m", "-p", "-r", "-w", *cmd], capture_output=True,
                             text=True, timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"{cmd}: exit {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def write(self, path: str, text: str) -> None:
        self.run("/bin/sh", "-c", f"mkdir -p \"$(dirname {path})\" && cat > {path}", input=text)

    def stop(self) -> None:
        if self.pid1 is not None:
            try:
                os.kill(self.pid1, 9)  # PID 1 of the namespace: the kernel ends every process in it
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        deadline = time.monotonic() + 10
        for cg in self.cgroups:
            while cg.exists() and time.monotonic() < deadline:
                try:
                    for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                        d.rmdir()
                    cg.rmdir()
                except OSError:
                    time.sleep(0.1)  # the last processes are still exiting
        shutil.rmtree(self.dir, ignore_errors=True)  # the overlay and tmpfs went with the namespace
