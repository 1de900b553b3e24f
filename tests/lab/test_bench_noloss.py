"""`hacluster bench no-loss`, small: 40 x 10 kB to the store VIP, the holder powered off
mid-stream, both spool modes. No accepted message may be lost or delivered twice, and the spool
must really have been used (shared: mail and queue on the spool device, owner marker moved to
the new holder with a higher token; mirrored: every message in both stores' Maildirs, a
promotion report on the new holder)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hacluster.bench.noloss import lab_for, run_noloss
from hacluster.lab.mailload import scan_maildirs
from hacluster.spool.marker import read_marker

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

N, SIZE = 40, 10_000


def _check(res: dict, mode: str) -> None:
    assert res["lost"] == 0, res["lost_msgids"]
    assert res["duplicates"] == 0, res["duplicate_msgids"]
    assert res["accepted"] + res["not_accepted"] == N
    assert res["accepted"] >= N - res["ambiguous"]  # only a reply lost at the power-off goes unretried
    assert res["delivered_once"] == res["accepted"] and res["stranded"] == 0
    assert res["holder_after"] != res["holder_before"]
    assert res["failover_s"] is not None and 0 < res["failover_s"] < 30
    assert res["settled"] is True


def test_shared_spool_no_loss() -> None:
    lab = lab_for("shared", "/run/hacluster-lab-hn-nl1", "hn-")
    try:
        lab.up()
        res = run_noloss(lab, N, SIZE, connections=2)
        _check(res, "shared")
        assert res["late"] == 0 and res["missing_before_power_on"] == 0  # the queue is on the spool
        dev = lab.paths.spool_device
        marker = read_marker(dev)
        assert marker is not None and marker.node == res["holder_after"] and marker.token >= 2
        assert len(scan_maildirs({"spool": dev / "mail"})) >= res["accepted"]
        for s in ("store1", "store2"):  # nothing went to the nodes' own directories
            assert not any(lab.paths.mail_base(s).glob("*/new/*")) and not any(lab.paths.mail_base(s).glob("*/cur/*"))
    finally:
        lab.down()


def test_mirrored_spool_no_loss() -> None:
    lab = lab_for("mirrored", "/run/hacluster-lab-hn-nl2", "hn-")
    try:
        lab.up()
        res = run_noloss(lab, N, SIZE, connections=2)
        _check(res, "mirrored")
        new = res["holder_after"]
        both = {s: set(scan_maildirs({s: lab.paths.mail_base(s)})) for s in ("store1", "store2")}
        assert len(both[new]) >= res["accepted"]
        reports = list(lab.paths.node(new).glob("spool-spool-promotion-*.json"))
        assert reports and json.loads(reports[0].read_text())["unreachable"]  # the old holder was off
    finally:
        lab.down()


def test_cli_rejects_bad_mode() -> None:
    out = subprocess.run([sys.executable, "-m", "hacluster", "bench", "no-loss", "--spool", "nfs"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "nfs" in out.stderr
