"""A lab with its agents up for a test module, torn down whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hacluster.lab.lab import Lab
from hacluster.lab.state import LabOptions


def running_lab(state: Path, prefix: str) -> Iterator[Lab]:
    """Yield a lab from the embedded spec whose every agent started (for a module fixture)."""
    lab = Lab(None, state, prefix, LabOptions(agents=True))
    try:
        report = lab.up()
        assert all(st == "running" for st in report.agents.values()), report.agents
        yield lab
    finally:
        lab.down()
