"""matplotlib is the `lab` extra (issue 14): no module imports it at import time, and a command
that draws without it says what to install (exit 2, one line) instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.plotting import HINT

# every module of the package, then: was matplotlib imported? (__main__ would run the CLI)
IMPORT_ALL = """
import importlib, pkgutil, sys
import hacluster
names = [m.name for m in pkgutil.walk_packages(hacluster.__path__, "hacluster.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names), sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))
"""


def test_no_module_imports_matplotlib_at_import_time() -> None:
    res = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    count, loaded = res.stdout.split(" ", 1)
    assert int(count) > 50 and loaded.strip() == "[]"


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import matplotlib` fails as on a host without the lab extra."""
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


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
