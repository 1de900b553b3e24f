"""Where the lab keeps things: one state directory holds every file the lab creates, so `lab down`
can remove all of it (and find every pid file) even after the process that built it crashed."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

DEFAULT_STATE_DIR = Path(os.environ.get("HACLUSTER_LAB_STATE", "/run/hacluster-lab"))


@dataclass(frozen=True)
class LabOptions:
    """Knobs that are the lab's business, not the cluster spec's (timers scaled down for drills)."""

    agents: bool = True
    zk_tick_ms: int = 200
    zk_start_timeout_s: float = 60.0
    # Postfix timers: production defaults are minutes; the lab retries within seconds
    queue_run_delay_s: int = 2
    minimal_backoff_s: int = 2
    maximal_backoff_s: int = 10
    smtp_connect_timeout_s: int = 2
    # SMTP stage timeouts (Postfix: 300 s each). A relay caught mid-conversation when the store VIP
    # moves waits one out before it retries (drills saw mail 301 s late; a chaos run ended with 76
    # messages still queued on relay1). Scaled like the timers above; the data-done wait stays long
    # enough that a slow "250 queued" is not mistaken for a failure (which would duplicate mail).
    smtp_stage_timeout_s: int = 5
    smtp_data_timeout_s: int = 10
    smtpd_timeout_s: int = 10  # server side: a session whose client vanished mid-DATA
    mailboxes: tuple[str, ...] = ("user", "postmaster", "alice", "bob")
    shared_spool: bool = False  # stores deliver to one Maildir tree (NFS-style) instead of one each
    # the store role's `spool` resource (docs/spool.md): None = plain per-node Maildir, no resource;
    # "shared" = Maildir + Postfix queue on one spool bind-mounted on the holder only;
    # "mirrored" = per-node Maildir replicated by the holder (pair with postfix.with_spool)
    spool_mode: str | None = None
    # spool mode shared on a real block device: an ext4 image of this many MB on a loop device
    # (hacluster_lab.lab.blockspool); 0 = a directory bind-mounted on the holder
    spool_block_mb: int = 0


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def lab_json(self) -> Path:
        return self.root / "lab.json"

    @property
    def spec(self) -> Path:
        return self.root / "spec.yml"

    @property
    def token(self) -> Path:
        return self.root / "api.token"

    @property
    def faults(self) -> Path:
        return self.root / "faults.log"

    @property
    def power(self) -> Path:
        """One empty file per powered-off host (the invariant monitor reads this directory)."""
        return self.root / "power"

    @property
    def frozen(self) -> Path:
        return self.root / "frozen"

    @property
    def maincf_orig(self) -> Path:
        return self.root / "main.cf.orig"

    @property
    def zk(self) -> Path:
        return self.root / "zk"

    @property
    def dns(self) -> Path:
        return self.root / "dns"

    def node(self, name: str) -> Path:
        return self.root / "nodes" / name

    def postfix_conf(self, name: str) -> Path:
        return self.node(name) / "postfix"

    def postfix_queue(self, name: str) -> Path:
        return self.node(name) / "postfix-queue"

    def postfix_data(self, name: str) -> Path:
        return self.node(name) / "postfix-data"

    def maillog(self, name: str) -> Path:
        return self.node(name) / "maillog"

    def mail_base(self, name: str) -> Path:
        return self.node(name) / "mail"

    def shared_mail_base(self) -> Path:
        return self.root / "spool" / "mail"

    @property
    def spool_device(self) -> Path:
        """The shared spool's "device" (a directory bind-mounted on the holder) in spool mode shared."""
        return self.root / "spool-dev"

    def spool_mount(self, name: str) -> Path:
        """Where the holder mounts the shared spool (visible inside its agent's mount namespace only)."""
        return self.node(name) / "spool"

    def agent_pid(self, name: str) -> Path:
        return self.node(name) / "agent.pid"

    def agent_log(self, name: str) -> Path:
        return self.node(name) / "agent.log"

    def claims(self, name: str) -> Path:
        return self.node(name) / "claims.log"


# --------------------------------------------------------------------------- pid files


def write_pidfile(path: Path, pid: int) -> None:
    """pid and start time: a pid the kernel has since reused is never taken for ours."""
    try:
        ctime = psutil.Process(pid).create_time()
    except psutil.Error:
        ctime = 0.0
    path.write_text(f"{pid} {ctime!r}\n")


def read_pidfile(path: Path) -> int | None:
    """The pid if that process is still the one we started, else None."""
    try:
        pid_s, ctime_s = path.read_text().split()
        pid, ctime = int(pid_s), float(ctime_s)
        proc = psutil.Process(pid)
        if abs(proc.create_time() - ctime) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return pid
    except (OSError, ValueError, psutil.Error):
        return None


# --------------------------------------------------------------------------- records


def now_stamp() -> dict[str, float]:
    """Both clocks: CLOCK_MONOTONIC to line events up across processes, wall time for humans.
    CLOCK_BOOTTIME too, because the agents' claims logs use it."""
    return {"t_mono": time.clock_gettime(time.CLOCK_MONOTONIC),
            "t_boot": time.clock_gettime(time.CLOCK_BOOTTIME),
            "t_wall": time.time()}


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
