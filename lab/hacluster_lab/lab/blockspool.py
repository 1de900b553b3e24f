"""The lab's shared spool on a real block device: an ext4 image on a loop device (LabOptions
`spool_block_mb`), so the store role's `spool` resource mounts a block device as on a SAN.

The lab host mounts it at `spool-dev` (the audit and the mail ledger read the spool there) and
links `spool-blk` to the loop device, the spool resource's `device`. Every mount of one block
device in one kernel shares its superblock, so the holder's mount (in its agent's mount namespace)
and the lab's see the same files at once -- which is also why the lab cannot show a filesystem
*corrupted* by two writers: the duplicate deliveries of two Postfix instances on one queue are
what a frozen host would cause here, and what fencing must prevent (docs/spool.md).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .netns import LabError
from .state import LabPaths


def loop_file(paths: LabPaths) -> Path:
    return paths.root / "spool-loop"


def device_link(paths: LabPaths) -> Path:
    return paths.root / "spool-blk"


def _run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {(p.stderr or p.stdout).strip()}")
    return p.stdout.strip()


def create(paths: LabPaths, size_mb: int) -> str:
    """Image, ext4, loop device, mounted at spool_device; returns the device (e.g. /dev/loop3)."""
    img = paths.root / "spool.img"
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    _run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", str(img)])
    dev = _run(["losetup", "-f", "--show", str(img)])
    loop_file(paths).write_text(dev + "\n")
    paths.spool_device.mkdir(parents=True, exist_ok=True)
    _run(["mount", dev, str(paths.spool_device)])
    link = device_link(paths)
    link.unlink(missing_ok=True)
    os.symlink(dev, link)
    return dev


def destroy(paths: LabPaths) -> None:
    """Detach the loop device (after `lab down` unmounted everything under the lab's root)."""
    try:
        dev = loop_file(paths).read_text().strip()
    except OSError:
        return
    if dev.startswith("/dev/loop"):
        subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=60)
