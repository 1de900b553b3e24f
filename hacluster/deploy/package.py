"""The package we install on targets: one hacluster wheel, built locally once per run, plus a
wheelhouse of its dependencies so targets need no internet (`pip install --no-index`).

Why a content digest and not the version: during development the version stays 0.1.0 while the
code changes, and a wheel's zip timestamps change on every build. The digest hashes the wheel's
member names and bytes, so the same source gives the same digest and any change gives a new one:
that is what the idempotence check compares.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from ..errors import EXIT_FAILED, UserError

#: files of the source tree that a wheel build needs (the package itself is copied whole)
SOURCE_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in", "README.md", "LICENSE")
BUILD_TIMEOUT_S = 600.0


class PackageError(UserError):
    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Package:
    wheel: Path
    name: str
    version: str
    digest: str  # sha256 over (member name, bytes) of the wheel
    requires: tuple[str, ...]  # Requires-Dist lines (without extras' ones)

    @property
    def short(self) -> str:
        return self.digest[:12]

    def label(self) -> str:
        return f"{self.name} {self.version} ({self.short})"


def source_root() -> Path | None:
    """The source tree this hacluster runs from (an editable install), None for a plain install."""
    root = Path(__file__).resolve().parents[2]
    py = root / "pyproject.toml"
    if py.is_file() and 'name = "hacluster"' in py.read_text(errors="replace"):
        return root
    return None


def wheel_digest(path: Path) -> str:
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            h.update(name.encode() + b"\0")
            h.update(hashlib.sha256(z.read(name)).digest())
    return h.hexdigest()


def read_wheel(path: Path) -> Package:
    try:
        with zipfile.ZipFile(path) as z:
            meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            meta = Parser().parsestr(z.read(meta_name).decode())
    except (OSError, zipfile.BadZipFile, StopIteration) as err:
        raise PackageError(f"{path}: not a wheel ({err or 'no METADATA'})") from None
    requires = tuple(r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r)
    return Package(path, meta["Name"], meta["Version"], wheel_digest(path), requires)


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PackageError(f"{what}: timed out after {BUILD_TIMEOUT_S:g}s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and not ln.startswith("WARNING")]
        errors = [ln for ln in lines if ln.lower().startswith("error")] or lines
        raise PackageError(f"{what}: exit {proc.returncode}: {' | '.join(errors[-3:])}")


def build_wheel(out_dir: Path, wheel: str | None = None) -> Package:
    """The given wheel, or one built from the source tree (copied first, so the build leaves
    nothing behind in a work tree others may be using)."""
    if wheel:
        return read_wheel(Path(wheel))
    root = source_root()
    if root is None:
        raise PackageError("no hacluster source tree to build from: set the inventory var `wheel` to a hacluster wheel")
    src = out_dir / "src"
    src.mkdir(parents=True)
    for name in SOURCE_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, src / name)
    shutil.copytree(root / "hacluster", src / "hacluster", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = out_dir / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)], "building the hacluster wheel")
    wheels = sorted(dist.glob("hacluster-*.whl"))
    if not wheels:
        raise PackageError(f"building the hacluster wheel: no wheel in {dist}")
    return read_wheel(wheels[0])


def local_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hacluster" / "deploy"


def deps_key(pkg: Package, python: str, machine: str) -> str:
    h = hashlib.sha256("\n".join(sorted(pkg.requires)).encode()).hexdigest()[:12]
    return f"deps-{h}-py{python}-{machine}"


def wheelhouse(pkg: Package, python: str, machine: str, work: Path, given: str | None = None) -> Path:
    """A tar of every dependency wheel for a target running `python` (X.Y) on `machine`,
    cached by (requirements, python, machine). Built with this machine's pip and index, or
    packed from `given`: a folder of wheels prepared beforehand (`pip wheel`/`pip download`)
    for a deploy host without an index."""
    if given:
        return _pack_dir(Path(given), pkg)
    if machine != platform.machine():
        raise PackageError(f"the target is {machine} but this machine is {platform.machine()}: build the wheelhouse "
                           f"on a {machine} machine or use `install: pypi`")
    key = deps_key(pkg, python, machine)
    tar_path = cache_dir() / f"{key}.tar"
    if tar_path.is_file():
        return tar_path
    wh = work / key
    wh.mkdir(parents=True, exist_ok=True)
    if python == local_python():
        _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wh), str(pkg.wheel)], "building the dependency wheelhouse")
    else:  # another interpreter: only binary wheels for its version can be fetched
        _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", python,
              "-d", str(wh), str(pkg.wheel)], f"downloading dependency wheels for python {python}")
    for own in wh.glob(f"{pkg.name}-*.whl"):
        own.unlink()
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar_path.with_suffix(f".tmp{os.getpid()}")
    with tarfile.open(tmp, "w") as tar:
        for whl in sorted(wh.glob("*.whl")):
            tar.add(whl, arcname=whl.name)
    tmp.replace(tar_path)
    return tar_path


def _pack_dir(folder: Path, pkg: Package) -> Path:
    wheels = sorted(w for w in folder.glob("*.whl") if not w.name.startswith(f"{pkg.name}-"))
    if not wheels:
        raise PackageError(f"wheelhouse {folder}: no wheels in it (fill it with `pip wheel -w {folder} hacluster`)")
    h = hashlib.sha256("\n".join(f"{w.name} {w.stat().st_size}" for w in wheels).encode()).hexdigest()[:12]
    tar_path = cache_dir() / f"deps-dir-{h}.tar"
    if not tar_path.is_file():
        tar_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tar_path.with_suffix(f".tmp{os.getpid()}")
        with tarfile.open(tmp, "w") as tar:
            for whl in wheels:
                tar.add(whl, arcname=whl.name)
        tmp.replace(tar_path)
    return tar_path

