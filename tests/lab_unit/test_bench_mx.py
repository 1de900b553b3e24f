"""`hacluster bench mx` (the model's throughput, hacluster/mx/bench.py) through the lab toolkit's
`bench` group."""

from __future__ import annotations

import json

from hacluster.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_bench_small(capsys):
    rc, out, err = run(capsys, "bench", "mx", "--messages", "20000", "--repeat", "1", "--des-sample", "3000", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["messages"] == 20000 and data["wall_s"] > 0 and data["messages_per_s"] > 0
    assert data["reference_des"]["identical_to_fast"] is True
    assert data["result"]["messages"] == 20000 and data["result"]["queue_peak"]["sender"] > 0
