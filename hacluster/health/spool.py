"""Spool check: can this host still store mail durably on the spool?

Four questions, cheapest first:
  1. read-only? (`statvfs` ST_RDONLY: ext4 remounts read-only on I/O errors; a write also
     reports EROFS)                                                     -> crit, policy demotes
  2. does a write+fsync+read+unlink of a probe file work?                -> crit, policy demotes
  3. free space and inodes above the warning thresholds?                 -> warn ("nearly full")
  4. Maildir tmp/ files older than 36 h (crashed deliveries; the Maildir
     spec says to delete them after 36 h)                                -> warn
A full spool shows up in (2) as ENOSPC, so "nearly full" needs no crit threshold of its own.
The Maildir scan is bounded by depth, entry count and the probe deadline.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from .checks import SPOOL, CheckResult, result

STALE_TMP_S = 36 * 3600.0


def write_probe(directory: str) -> str | None:
    """Create, fsync, read back and unlink a probe file; None when all of it worked, else the error."""
    token = secrets.token_hex(16)
    path = os.path.join(directory, f".hacluster-probe.{socket.gethostname()}.{os.getpid()}.{token}")
    payload = f"hacluster spool probe {token}\n".encode()
    created = False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
        try:
            if os.write(fd, payload) != len(payload):
                return "short write"
            os.fsync(fd)
        finally:
            os.close(fd)
        with open(path, "rb") as fh:
            if fh.read() != payload:
                return "read back different bytes"
        os.unlink(path)
        created = False
        return None
    except OSError as err:
        return f"{errno.errorcode.get(err.errno or 0, err.errno)}: {err.strerror}"
    finally:
        if created:
            try:
                os.unlink(path)
            except OSError:
                pass


@dataclass(frozen=True)
class TmpScan:
    stale: int
    examples: tuple[str, ...]
    maildirs: int
    truncated: bool


def scan_stale_tmp(root: str, older_than: float, max_depth: int, max_entries: int, deadline: float) -> TmpScan:
    """Count files in Maildir tmp/ directories (a dir with cur/, new/, tmp/) with mtime < older_than."""
    stale, maildirs, seen = 0, 0, 0
    examples: list[str] = []
    truncated = False
    stack = [(root, 0)]
    while stack:
        path, depth = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = [e for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        names = {e.name for e in entries}
        if {"cur", "new", "tmp"} <= names:
            maildirs += 1
            try:
                with os.scandir(os.path.join(path, "tmp")) as tmp:
                    for e in tmp:
                        seen += 1
                        if seen > max_entries or time.monotonic() > deadline:
                            return TmpScan(stale, tuple(examples), maildirs, True)
                        try:
                            if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < older_than:
                                stale += 1
                                if len(examples) < 5:
                                    examples.append(e.path)
                        except OSError:
                            continue
            except OSError:
                pass
        if depth < max_depth:
            for e in entries:
                if e.name not in ("cur", "new", "tmp"):
                    seen += 1
                    stack.append((e.path, depth + 1))
        if seen > max_entries or time.monotonic() > deadline:
            truncated = bool(stack) or seen > max_entries
            break
    return TmpScan(stale, tuple(examples), maildirs, truncated)


@dataclass(frozen=True)
class SpoolCheck:
    """Spool health of one mount point (the Maildir root; also the queue in `shared` mode)."""

    path: str
    warn_free_pct: float = 10.0
    warn_free_inodes_pct: float = 10.0
    warn_free_bytes: int = 0
    stale_tmp_s: float = STALE_TMP_S
    maildir_depth: int = 4
    scan_limit: int = 100_000
    clock: Callable[[], float] = time.time
    name: str = SPOOL

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        data: dict[str, Any] = {"path": self.path}
        try:
            st = os.statvfs(self.path)
        except OSError as err:
            return result(self.name, "crit", f"{self.path}: cannot stat: {err.strerror}", time.monotonic() - t0,
                          **data, read_only=None, writable=False, probe_error=err.strerror)
        read_only = bool(st.f_flag & os.ST_RDONLY)
        error = "EROFS: mounted read-only" if read_only else write_probe(self.path)
        if error and error.startswith("EROFS"):
            read_only = True
        free_b, total_b = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        free_pct = 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else None
        inodes_pct = 100.0 * st.f_favail / st.f_files if st.f_files else None
        data.update(read_only=read_only, writable=error is None, probe_error=error, free_bytes=free_b,
                    total_bytes=total_b, free_pct=free_pct, free_inodes=st.f_favail, total_inodes=st.f_files,
                    free_inodes_pct=inodes_pct)
        if error:
            what = "read-only" if read_only else "unwritable"
            return result(self.name, "crit", f"{self.path}: {what} ({error})", time.monotonic() - t0,
                          **data, nearly_full=None, stale_tmp_files=None)

        warnings = []
        nearly_full = False
        if free_pct is not None and free_pct < self.warn_free_pct:
            warnings.append(f"{free_pct:.1f}% space free < {self.warn_free_pct:g}%")
        if free_b < self.warn_free_bytes:
            warnings.append(f"{free_b} bytes free < {self.warn_free_bytes}")
        if inodes_pct is not None and inodes_pct < self.warn_free_inodes_pct:
            warnings.append(f"{inodes_pct:.1f}% inodes free < {self.warn_free_inodes_pct:g}%")
        nearly_full = bool(warnings)
        scan = scan_stale_tmp(self.path, self.clock() - self.stale_tmp_s, self.maildir_depth, self.scan_limit,
                              deadline - 0.1 * timeout_s)
        data.update(nearly_full=nearly_full, stale_tmp_files=scan.stale, stale_tmp_examples=list(scan.examples),
                    maildirs_scanned=scan.maildirs, scan_truncated=scan.truncated)
        if scan.stale:
            warnings.append(f"{scan.stale} Maildir tmp/ files older than {self.stale_tmp_s / 3600:g} h")
        latency = time.monotonic() - t0
        free_note = f"{free_pct:.1f}% free" if free_pct is not None else "free space unknown"
        if warnings:
            return result(self.name, "warn", f"{self.path}: " + "; ".join(warnings), latency, ok=True, **data)
        return result(self.name, "ok", f"{self.path}: writable, {free_note}", latency, **data)
