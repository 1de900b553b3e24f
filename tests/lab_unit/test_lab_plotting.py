"""The lab toolkit and matplotlib (the `lab` extra): none of its modules imports it at import time,
and a drill that would draw says what to install before it builds anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.plotting import HINT

IMPORT_ALL = """
import importlib, pkgutil, sys
import hacluster_lab
names = [m.name for m in pkgutil.walk_packages(hacluster_lab.__path__, "hacluster_lab.")]
for name in names:
    importlib.import_module(name)
print(len(names), sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))
"""


def test_no_lab_module_imports_matplotlib_at_import_time() -> None:
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


def test_a_drill_without_matplotlib_says_install_lab(no_matplotlib: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # before the playbook is even read
    assert main(["drill", "run", str(tmp_path / "none.yml"), "--out", str(tmp_path / "out")]) == 2
    _, err = capsys.readouterr()
    assert err == f"hacluster: {HINT}\n" and "hacluster[lab]" in err
    assert not (tmp_path / "out").exists()
