"""Who writes the shared spool, and when: a fanotify watch on the spool's whole filesystem
(FAN_MARK_FILESYSTEM: every mount of the superblock, the holder's private one included) that
records each write (FAN_MODIFY, FAN_CLOSE_WRITE) with the writing process's lab host, resolved
from its network namespace the moment the event is read. Lab toolkit (docs/spool.md, "Auditing
writes after a fence"): the drills and `bench no-loss --spool-device loop` ask it whether the old
holder wrote anything after it was fenced.

The kernel reports the pid of the writer; a process that exits before we read its event is
reported with the host it had at an earlier event, else as host "?" (counted apart: an
unattributed write is never read as "nobody wrote"). Event times are when the watcher read them,
so a write is placed no earlier than it happened: a write counted "after the fence" may have
happened just before it, never the other way round.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
import time
from pathlib import Path
from typing import NamedTuple

FAN_CLOEXEC, FAN_NONBLOCK, FAN_CLASS_NOTIF = 0x1, 0x2, 0x0
FAN_MODIFY, FAN_CLOSE_WRITE = 0x2, 0x8
FAN_MARK_ADD, FAN_MARK_FILESYSTEM = 0x1, 0x100
AT_FDCWD = -100
EVENT = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid


class Write(NamedTuple):
    t: float  # CLOCK_BOOTTIME when read (the agents' claims logs use it too)
    pid: int
    host: str  # lab host of the writer, "?" if gone before we looked, "-" outside every lab host
    path: str


class SpoolAudit:
    """Start on the lab host's mount of the spool; `writes_by(host, after)` when done."""

    def __init__(self, mount: Path, ns_inodes: dict[tuple[int, int], str]) -> None:
        self.mount = mount
        self.ns_inodes = ns_inodes  # (st_dev, st_ino) of /run/netns/NS -> host
        self.writes: list[Write] = []
        self.lost = 0
        self._pid_host: dict[int, str] = {}  # a pid seen alive before: its host, should it be gone by its next event
        self._stop = threading.Event()
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_CLASS_NOTIF, os.O_RDONLY | os.O_LARGEFILE)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "fanotify_init")
        libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        if libc.fanotify_mark(self._fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_MODIFY | FAN_CLOSE_WRITE,
                              AT_FDCWD, str(mount).encode()) != 0:
            err = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(err, f"fanotify_mark {mount}")
        self._thread = threading.Thread(target=self._run, name="spool-audit", daemon=True)

    @classmethod
    def for_lab(cls, lab: object, mount: Path) -> "SpoolAudit":
        inodes = {}
        for h in lab.plan.hosts:  # type: ignore[attr-defined]
            try:
                st = os.stat(f"/run/netns/{lab.ns(h.name)}")  # type: ignore[attr-defined]
            except OSError:
                continue
            inodes[(st.st_dev, st.st_ino)] = h.name
        return cls(mount, inodes)

    def start(self) -> "SpoolAudit":
        self._thread.start()
        return self

    def _host_of(self, pid: int) -> str:
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            return self._pid_host.get(pid, "?")
        host = self.ns_inodes.get((st.st_dev, st.st_ino), "-")
        self._pid_host[pid] = host
        return host

    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self._fd], [], [], 0.1)
            if not r:
                continue
            try:
                buf = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            now = time.clock_gettime(time.CLOCK_BOOTTIME)
            while off + EVENT.size <= len(buf):
                length, _v, _r, _m, mask, fd, pid = EVENT.unpack_from(buf, off)
                path = ""
                if fd >= 0:
                    try:
                        path = os.readlink(f"/proc/self/fd/{fd}")
                    except OSError:
                        pass
                    os.close(fd)
                else:
                    self.lost += 1
                self.writes.append(Write(now, pid, self._host_of(pid), path))
                off += length or EVENT.size

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self._fd)

    def writes_by(self, host: str, after: float) -> list[Write]:
        return [w for w in self.writes if w.host == host and w.t > after]

    def summary(self, old: str, fenced_at: float | None) -> dict[str, object]:
        """Counts for a report: writes per host, and the old holder's (and unattributed) after the fence."""
        per: dict[str, int] = {}
        for w in self.writes:
            per[w.host] = per.get(w.host, 0) + 1
        out: dict[str, object] = {"writes": per, "overflow": self.lost}
        if fenced_at is not None:
            late = self.writes_by(old, fenced_at)
            out["old_holder_writes_after_fence"] = len(late)
            out["old_holder_writes_after_fence_paths"] = sorted({w.path for w in late})[:20]
            out["unattributed_after_fence"] = len([w for w in self.writes if w.host == "?" and w.t > fenced_at])
        return out
