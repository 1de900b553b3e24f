"""The VM lab's spool fill on a real ext4 like the machines' (64 MB image, mkfs.ext4 -m 0, 1 KB
blocks, loop-mounted): afterwards the spool check's write probe gets ENOSPC, so the drill's holder
demotes. The earlier fill (fallocate of statfs's free count, else a buffered dd) left ~130 KB
available (ext4's reserved clusters made the fallocate fail; writeback gave back the dd's delayed-
allocation reservations) and the probe still succeeded: "nearly full", never a demote."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from hacluster.health.spool import SpoolCheck, write_probe
from hacluster_lab.drill.spool_fill import fill_result, fill_script
from hacluster_lab.drill.target import FILL_NAME


def sh(*cmd: str) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{cmd}: {p.stderr}"
    return p.stdout.strip()


@pytest.fixture
def spool() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="hcs-fill-", dir="/var/tmp"))
    img, mnt = base / "mail.img", base / "mail"
    mnt.mkdir()
    mounted = False
    try:
        sh("fallocate", "-l", "64M", str(img))
        sh("mkfs.ext4", "-q", "-F", "-m", "0", str(img))  # as vagrant/docker-host and the Vagrantfile
        sh("mount", "-o", "loop", str(img), str(mnt))
        mounted = True
        yield mnt
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def test_fill_leaves_no_block_for_the_write_probe(spool: Path) -> None:
    assert write_probe(str(spool)) is None
    p = subprocess.run(["sh", "-c", fill_script(str(spool), FILL_NAME)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = fill_result(p.stdout)
    assert out["free_bytes"] == 0 and os.statvfs(spool).f_bavail == 0
    assert (write_probe(str(spool)) or "").startswith("ENOSPC")
    assert SpoolCheck(str(spool))(2.0).severity == "crit"
    # the free step: one rm gives the spool back
    (spool / FILL_NAME).unlink()
    assert write_probe(str(spool)) is None


def test_fill_result_parses_the_last_line() -> None:
    assert fill_result("noise\navailable=0 rounds=2\n") == {"free_bytes": 0, "top_up_rounds": 2}
    assert fill_result("") == {} and fill_result("available=x rounds=1") == {}
