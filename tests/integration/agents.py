"""LocalClusters of real agents that a fixture starts: stopped at teardown whatever happened,
with their log tails printed (pytest shows them when the test failed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hacluster_lab.localcluster import LocalCluster


class Clusters:
    """Every cluster a test builds, each in its own numbered directory under tmp_path."""

    def __init__(self, tmp_path: Path, tail_lines: int = 15) -> None:
        self.tmp_path = tmp_path
        self.tail_lines = tail_lines
        self.made: list[LocalCluster] = []

    def __enter__(self) -> Clusters:
        return self

    def __exit__(self, *exc: Any) -> None:
        for lc in self.made:
            lc.stop()
            lc.print_log_tails(self.tail_lines)

    def next_dir(self) -> Path:
        return self.tmp_path / f"agents{len(self.made)}"

    def add(self, lc: LocalCluster, start: bool = True) -> LocalCluster:
        self.made.append(lc)
        if start:
            lc.start_all()
        return lc


@contextmanager
def running(lc: LocalCluster, tail_lines: int = 15) -> Iterator[LocalCluster]:
    """One cluster, started here."""
    with Clusters(lc.dir, tail_lines) as made:
        yield made.add(lc)
