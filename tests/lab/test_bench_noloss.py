"""`hacluster bench no-loss`, small: 30 x 10 kB to the store VIP, the holder powered off
mid-stream, both spool modes. No accepted message may be lost or delivered twice, and the spool
must really have been used (shared: mail and queue on the spool device, owner marker moved to
the new holder with a higher token; mirrored: every message in both stores' Maildirs, a
promotion report on the new holder). Then, in the same lab, mail held in the holder's own queue
at the power-off (defer_transports=hadeliver on the holder): shared mode delivers it at once from
the spool; mirrored mode delivers it after the power-on, through the returning node's queue
drain -- late, never lost or doubled."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hacluster_lab.bench.noloss import _vip_on, lab_for, run_noloss
from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.mailload import MailLoad, audit, lab_stores, scan_maildirs
from hacluster.spool.marker import read_marker

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

N, SIZE = 30, 10_000


def _check(res: dict, mode: str) -> None:
    assert res["lost"] == 0, res["lost_msgids"]
    assert res["duplicates"] == 0, res["duplicate_msgids"]
    assert res["accepted"] + res["not_accepted"] == N
    assert res["accepted"] >= N - res["ambiguous"]  # only a reply lost at the power-off goes unretried
    assert res["delivered_once"] == res["accepted"] and res["stranded"] == 0
    assert res["holder_after"] != res["holder_before"]
    assert res["failover_s"] is not None and 0 < res["failover_s"] < 30
    assert res["settled"] is True
    assert res["queued"] == {}, res["queued_msgids"]  # the returning node's leftover queue was drained too


def _wait(pred, timeout_s: float):
    import time

    end = time.monotonic() + timeout_s
    while not (got := pred()):
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)
    return got


def stuck_queue_power_off(lab: Lab, holder: str) -> dict:
    """The holder accepts 8 messages but keeps them queued (defer_transports=hadeliver), then is
    powered off; its config is restored while it is off; the ledger before and after power-on."""
    conf = str(lab.paths.postfix_conf(holder))
    vip = str(lab.spec.roles["store"].vips[0].ip)
    lab.exec(holder, ["postconf", "-c", conf, "-e", "defer_transports=hadeliver"], check=True, capture_output=True)
    # in the agent's mount namespace: in shared mode the queue directory is the holder's bind mount
    pid = lab.agent_pid(holder)
    # -r -w: the agent's root and cwd too (entering a mount namespace resets them to its root
    # mount, which is not the agent's root when the lab itself runs in a chroot)
    subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", "-r", "-w", "postfix", "-c", conf, "reload"], check=True,
                   capture_output=True, timeout=30)
    subs = MailLoad(lab, vip, size=5000, retry_s=30).send(8, timeout_s=60)
    assert all(s.accepted for s in subs)
    lab.fault(holder, "power-off")
    subprocess.run(["postconf", "-c", conf, "-X", "defer_transports"], check=True, capture_output=True)
    new = _wait(lambda: _vip_on(lab, vip, exclude=holder), 30)
    stores = lab_stores(lab)
    before = audit(lab, subs, wait_s=8, stores={new: stores[new]}, holder=new, settle_s=2)
    lab.fault(holder, "power-on")
    after = audit(lab, subs, wait_s=60, holder=new, settle_s=4)
    return {"new": new, "before": before, "after": after}


def test_shared_spool_no_loss() -> None:
    lab = lab_for("shared", "/run/hacluster-lab-hn-nl1", "hn-")
    try:
        lab.up()
        res = run_noloss(lab, N, SIZE, connections=2, cut_fraction=0.3, rate_per_s=8)
        _check(res, "shared")
        assert res["late"] == 0 and res["missing_before_power_on"] == 0  # the queue is on the spool
        dev = lab.paths.spool_device
        marker = read_marker(dev)
        assert marker is not None and marker.node == res["holder_after"] and marker.token >= 2
        assert len(scan_maildirs({"spool": dev / "mail"})) >= res["accepted"]
        for s in ("store1", "store2"):  # nothing went to the nodes' own directories
            assert not any(lab.paths.mail_base(s).glob("*/new/*")) and not any(lab.paths.mail_base(s).glob("*/cur/*"))
        r = stuck_queue_power_off(lab, res["holder_after"])
        assert r["before"].delivered_once == 8  # the queue is on the spool: the new holder delivers it
        assert (r["after"].lost, r["after"].duplicates, r["after"].delivered_once) == (0, 0, 8)
    finally:
        lab.down()


def test_mirrored_spool_no_loss() -> None:
    lab = lab_for("mirrored", "/run/hacluster-lab-hn-nl2", "hn-")
    try:
        lab.up()
        res = run_noloss(lab, N, SIZE, connections=2, cut_fraction=0.3, rate_per_s=8)
        _check(res, "mirrored")
        new = res["holder_after"]
        both = {s: set(scan_maildirs({s: lab.paths.mail_base(s)})) for s in ("store1", "store2")}
        assert len(both[new]) >= res["accepted"]
        reports = list(lab.paths.node(new).glob("spool-spool-promotion-*.json"))
        assert reports and json.loads(reports[0].read_text())["unreachable"]  # the old holder was off
        r = stuck_queue_power_off(lab, new)
        assert r["before"].lost == 8  # in the powered-off node's own queue: unavailable meanwhile
        assert (r["after"].lost, r["after"].duplicates, r["after"].delivered_once) == (0, 0, 8), r["after"]
        assert r["after"].by_store.get(r["new"]) == 8
        assert "left in the queue of a former holder" in lab.paths.agent_log(new).read_text()
    finally:
        lab.down()


def test_cli_rejects_bad_mode() -> None:
    out = subprocess.run([sys.executable, "-m", "hacluster", "bench", "no-loss", "--spool", "nfs"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "nfs" in out.stderr
