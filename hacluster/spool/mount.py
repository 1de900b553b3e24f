"""Mounting the shared spool on the holder only: mount (block device) or bind mount (directory),
verify that what is mounted at the path really is our device, and unmount with a bounded wait
for busy files before falling back to a lazy unmount (the holder must let go in bounded time;
the lazy unmount detaches the path at once and the last closer releases the filesystem)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path

POLL_S = 0.1


def kind(device: str) -> str | None:
    """"block", "dir" or None (missing / unsupported)."""
    try:
        st = os.stat(device)
    except OSError:
        return None
    if stat.S_ISBLK(st.st_mode):
        return "block"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    with open(mountinfo) as f:
        return {_unescape(line.split()[4]) for line in f if line.strip()}


def is_mounted(path: Path) -> bool:
    """From mountinfo, not os.path.ismount: a bind mount of a directory of the same filesystem
    has the parent's st_dev, so ismount() cannot see it."""
    return os.path.realpath(path) in mount_points()


def same_source(device: str, path: Path) -> bool:
    """Is `path` the root of a mount of `device` (block device: same st_dev; directory: same inode)?"""
    try:
        dev, here = os.stat(device), os.stat(path)
    except OSError:
        return False
    if stat.S_ISBLK(dev.st_mode):
        return here.st_dev == dev.st_rdev
    return (here.st_dev, here.st_ino) == (dev.st_dev, dev.st_ino)


def _run(cmd: list[str], timeout_s: float) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, f"{cmd[0]} timed out after {timeout_s:g}s"
    except OSError as err:
        return 127, str(err)
    return p.returncode, (p.stderr or p.stdout).strip()


def mount(device: str, path: Path, fstype: str | None = None, options: str | None = None,
          timeout_s: float = 30.0) -> str | None:
    """Mount device at path; None on success, else the error text."""
    k = kind(device)
    if k is None:
        return f"{device}: not a block device or directory"
    if k == "dir":
        cmd = ["mount", "--bind", device, str(path)]
    else:
        cmd = ["mount", *(["-t", fstype] if fstype else []), *(["-o", options] if options else []), device, str(path)]
    rc, out = _run(cmd, timeout_s)
    if rc != 0:
        return f"{' '.join(cmd)}: {out or f'exit {rc}'}"
    if k == "dir" and options:  # a bind mount takes its options (e.g. ro, nosuid) on a remount
        rc, out = _run(["mount", "-o", f"remount,bind,{options}", str(path)], timeout_s)
        if rc != 0:
            _run(["umount", str(path)], timeout_s)
            return f"remount {path} with {options}: {out}"
    return None


def umount(path: Path, wait_s: float = 5.0, timeout_s: float = 30.0) -> tuple[bool, bool, str]:
    """(unmounted, lazily, detail). Busy: retry every 0.1 s for wait_s, then `umount -l`."""
    if not is_mounted(path):
        return True, False, "not mounted"
    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        rc, last = _run(["umount", str(path)], timeout_s)
        if rc == 0 or not is_mounted(path):
            return True, False, ""
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    rc, out = _run(["umount", "-l", str(path)], timeout_s)
    if rc == 0 or not is_mounted(path):
        return True, True, f"busy ({last}); detached lazily"
    return False, False, f"umount -l {path}: {out}"


def write_probe(path: Path) -> str | None:
    """Write, fsync, read back and unlink a small file: None if the spool takes writes durably."""
    p = Path(path) / f".hacluster-probe.{os.getpid()}"
    data = f"hacluster {time.time()}\n".encode()
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        ok = p.read_bytes() == data
        p.unlink()
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    return None if ok else f"{path}: read back differs"
