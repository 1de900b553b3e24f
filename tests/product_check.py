"""`make product-check`: the product without the lab toolkit (issue 20, "the lab toolkit can be
uninstalled and the product's tests still pass").

Builds the product's wheel (offline, as .ci/isolated is: this venv's setuptools, no index), installs
it alone into a fresh venv whose dependencies are this venv's packages *except* hacluster and
hacluster-lab (symlinked one by one, so not even the lab's metadata is there), then in that venv:
its console script's `hacluster --help` (no lab section), `hacluster lab` (exit 2, says what to install),
`hacluster config check` on the example spec, and the product's unit tests (tests/unit, less
test_lint.py: the linters check the source tree and run in the suite). Exit status: pytest's.

    python tests/product_check.py [PYTEST ARGS...]   # default: -q -p no:cacheprovider tests/unit
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("hacluster", "hacluster_lab", "hacluster-", "hacluster_lab-", "__editable__", "_hacluster")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if res.returncode != 0:
        sys.exit(f"product-check: {' '.join(cmd)}: exit {res.returncode}\n{res.stdout}{res.stderr}")
    return res


def build_wheel(work: Path) -> Path:
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "hacluster", src / "hacluster", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(work / "dist"), str(src)])
    (whl,) = (work / "dist").glob("hacluster-*.whl")
    return whl


def product_venv(work: Path, wheel: Path) -> Path:
    """A venv with the product's wheel and its dependencies, and nothing of the lab toolkit."""
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile",
         "--target", str(site), str(wheel)])
    # --target leaves the console script beside the packages, run by this interpreter: it belongs
    # in the venv's bin/, run by the venv's (the unit's ExecStart= is checked against it)
    for script in (site / "bin").iterdir():
        first, _, rest = script.read_text().partition("\n")
        assert first.startswith("#!"), script
        (venv / "bin" / script.name).write_text(f"#!{py}\n{rest}")
        (venv / "bin" / script.name).chmod(0o755)
    shutil.rmtree(site / "bin")
    deps = work / "deps"
    deps.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not entry.name.startswith(OURS) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    (site / "zz-deps.pth").write_text(f"{deps}\n")
    return py


def main(argv: list[str]) -> int:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hacluster-product-check-") as tmp:
        work = Path(tmp)
        py = product_venv(work, build_wheel(work))
        hc = [str(py), "-P", "-m", "hacluster"]  # -P: never the source tree in the working directory
        where = run([str(py), "-P", "-c", "import hacluster, importlib.util as u; "
                     "print(hacluster.__file__, u.find_spec('hacluster_lab'))"], cwd=ROOT).stdout.split()
        assert where[0].startswith(tmp) and where[1] == "None", where
        helptext = run([str(py.with_name("hacluster")), "--help"], cwd=ROOT).stdout  # the console script
        assert "status" in helptext and "Lab (" not in helptext, helptext
        lab = subprocess.run([*hc, "lab", "up"], capture_output=True, text=True, cwd=ROOT)
        assert lab.returncode == 2 and "hacluster[lab]" in lab.stderr, (lab.returncode, lab.stderr)
        check = run([*hc, "config", "check", "-c", str(ROOT / "hacluster/examples/lab.yml")], cwd=ROOT)
        print(f"product-check: {where[0]} (hacluster_lab: none); --help without the lab section; "
              f"`hacluster lab` -> exit 2 ({lab.stderr.strip()}); {check.stdout.strip().splitlines()[0]}")
        args = argv or ["-q", "-p", "no:cacheprovider", "tests/unit", "--ignore", "tests/unit/test_lint.py"]
        rc = subprocess.run([str(py), "-P", "-m", "pytest", *args], cwd=ROOT).returncode
    print(f"product-check: pytest exit {rc}, {time.monotonic() - t0:.0f} s in all")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
