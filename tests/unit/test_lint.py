"""The linters are part of the suite: ruff (pyflakes + bugbear) over the code and the tests, mypy
over hacluster/ (strict on ha, coord and spec), both configured in pyproject.toml. A finding
fails `make test` like any other test, with the tool's own report as the failure message.

Both run through this interpreter (`python -m`), so they are the versions the `test` extra
installed into the venv, not whatever is on PATH.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # where pyproject.toml holds [tool.ruff] and [tool.mypy]


def run_tool(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if "No module named" in res.stderr and res.returncode != 0:
        pytest.fail(f"{argv[0]} is not installed in {sys.prefix}: pip install -e '.[test]'\n{res.stderr}")
    return res


def test_ruff() -> None:
    res = run_tool("ruff", "check", "--no-cache", "--output-format", "concise", ".", timeout=120)
    assert res.returncode == 0, f"ruff check found problems:\n{res.stdout}{res.stderr}"


@pytest.mark.timeout(600)
def test_mypy() -> None:
    # the cache lives in the venv: warm runs take seconds, and the work tree stays clean
    cache = Path(sys.prefix) / ".mypy_cache"
    res = run_tool("mypy", "--cache-dir", str(cache), timeout=540)
    assert res.returncode == 0, f"mypy found problems:\n{res.stdout}{res.stderr}"
