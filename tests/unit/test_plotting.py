"""matplotlib is the `lab` extra (issue 14): no module imports it at import time, and a command
that draws without it says what to install (exit 2, one line) instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.plotting import HINT


def test_no_module_imports_matplotlib_at_import_time(matplotlib_on_import: Callable[[str], tuple[int, list[str]]]) -> None:
    count, loaded = matplotlib_on_import("hacluster")
    assert count > 50 and loaded == []


@pytest.mark.parametrize("argv", [
    ["mx", "simulate", "--scenario", "relay1-down", "--plot", "{tmp}/q.png"],
])
def test_drawing_without_matplotlib_says_install_lab(argv: list[str], no_matplotlib: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert err == f"hacluster: {HINT}\n" and "hacluster[lab]" in err
    assert not (tmp_path / "q.png").exists() and not (tmp_path / "out").exists()


def test_simulate_without_plot_needs_no_matplotlib(no_matplotlib: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mx", "simulate", "--scenario", "relay1-down", "--json"]) == 0
    assert '"delivered"' in capsys.readouterr().out
