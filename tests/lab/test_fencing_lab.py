"""Fencing in the lab, on real parts: the store role's shared spool on an ext4 loop device
(`LabOptions.spool_block_mb`), real Postfix with its queue on it, `fence_hacluster_lab` as the
stores' fence agent. Every process of the holder is frozen (SIGSTOP: a paused VM, which runs no
guard) under mail load; the peer must fence it (off, then status off) before taking over, and the
old host thawed afterwards must not write the spool (fanotify audit of the whole filesystem):
lost 0, duplicates 0 (docs/safety.md "Fencing", docs/spool.md)."""

from __future__ import annotations

import pytest

from hacluster.bench.noloss import lab_for, run_noloss

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

N, SIZE = 30, 10_000


def test_frozen_holder_is_fenced_and_never_writes_the_spool_again() -> None:
    lab = lab_for("shared", "/run/hacluster-lab-hn-fence", "hf-", block_mb=128, fencing=True)
    try:
        lab.up()
        res = run_noloss(lab, N, SIZE, connections=2, cut_fraction=0.3, rate_per_s=8, fault="freeze")
        assert res["lost"] == 0, res.get("detail")
        assert res["duplicates"] == 0, res.get("detail")
        assert res["holder_after"] != res["holder_before"]
        assert res["fencing"] is True and res["fence_ok"] is True and res["fenced"] == res["holder_before"], res
        assert 0 < res["fence_s"] < 20
        writes = res["spool_writes"]
        assert writes["writes"].get(res["holder_before"], 0) > 0, writes  # the audit saw the old holder write before
        assert writes["writes"].get(res["holder_after"], 0) > 0, writes  # and the new one after
        assert writes["old_holder_writes_after_fence"] == 0, writes
        # the fence was the lab agent's, through the standard interface
        log = lab.paths.agent_log(res["holder_after"]).read_text(errors="replace")
        assert f"fenced {res['holder_before']} in" in log and "fence_hacluster_lab: off, status confirms off" in log
    finally:
        lab.down()
