"""The lab toolkit and matplotlib (the `lab` extra): none of its modules imports it at import time,
and a drill that would draw says what to install before it builds anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.plotting import HINT


def test_no_lab_module_imports_matplotlib_at_import_time(matplotlib_on_import: Callable[[str], tuple[int, list[str]]]) -> None:
    count, loaded = matplotlib_on_import("hacluster_lab")
    assert count > 50 and loaded == []


def test_a_drill_without_matplotlib_says_install_lab(no_matplotlib: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # before the playbook is even read
    assert main(["drill", "run", str(tmp_path / "none.yml"), "--out", str(tmp_path / "out")]) == 2
    _, err = capsys.readouterr()
    assert err == f"hacluster: {HINT}\n" and "hacluster[lab]" in err
    assert not (tmp_path / "out").exists()
