"""`make wheel-check`: the production path end to end (issue 14, "Done when"): the wheels that
`python -m build` makes, installed into an empty venv with no source tree around, then used.

1. A clean export of the tree (`git archive` of the work tree's tracked state when there is a
   git repository, else a copy without .venv, caches and build output: CI's tree is itself an
   archive), so nothing untracked leaks into a wheel.
2. `python -m build --wheel --no-isolation` of the product (hacluster) and of the lab toolkit
   (lab/: hacluster-lab): this venv's setuptools, so the build needs no index.
3. A wheelhouse of every dependency (`pip wheel`, the configured index: what `make deps` uses),
   cached under $XDG_CACHE_HOME/hacluster/wheel-check/ by the requirement set, so later runs (and
   runs in .ci/isolated, which has no network) are offline. Every install below is
   `pip install --no-index --find-links WHEELHOUSE`, as on an air-gapped host.
4. An empty venv (`python3 -m venv`, in a temp dir outside the tree): the product wheel alone,
   what a mail node runs, measured (du); then `[deploy,lab]`, the lab wheel and the test runner.
5. From a working directory outside the tree (the run fails if `hacluster` or `hacluster_lab`
   resolve anywhere but that venv): `hacluster --help`, `hacluster config check` (by -c and by
   $HACLUSTER_CONFIG), `hacluster agent` for a few seconds against a real ZooKeeper (it must
   hold its role, seen through its own /status), then pytest with the venv's python on a copy of
   tests/: the deploy tests against real sshd (their dry run is `hacluster deploy --dry-run`
   from the install; their wheel is the one built here) and a namespace-lab failover test,
   then one drill (`hacluster drill run`, from the installed playbooks).

    python tests/wheel_check.py [--quick] [--keep] [--wheelhouse-only] [-- PYTEST ARGS]

--quick (the suite's version, tests/lab/test_wheel_install.py): of the deploy tests only the dry
run and the first deploy, no lab test (the drill is the namespace-lab failover then). --wheelhouse-only: steps 1-3 (fill the cache
with network, e.g. before running the rest in .ci/isolated). Root, network namespaces (lab tests).
Every step prints one `wheel-check:` line; exit 0 only if all passed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZK_PORT = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800")) + 140  # +140..+142 (others: below, +100..+122)
API_PORT = ZK_PORT + 5
JUNK = ("__pycache__", "*.pyc", ".git", ".venv", "build", "dist", "*.egg-info", ".pytest_cache", ".mypy_cache",
        ".ruff_cache", "drill-results")
# the tests run against the install: the deploy tests (real sshd) and a namespace-lab failover
FULL_TESTS = ["tests/lab/test_deploy.py", "tests/lab/test_lab_agents.py::test_power_off_holder_moves_role_and_mail_follows"]
QUICK_TESTS = ["tests/lab/test_deploy.py::test_dry_run_prints_the_plan_and_changes_nothing",
               "tests/lab/test_deploy.py::test_deploy_three_hosts_all_healthy_one_store_holds"]
DRILL = "store-holder-power-off"
T0 = time.monotonic()


class CheckFailed(Exception):
    pass


def say(msg: str) -> None:
    print(f"wheel-check: [{time.monotonic() - T0:5.1f}s] {msg}", flush=True)


def run(cmd: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"{' '.join(cmd)}: timed out after {timeout:g}s") from None
    if res.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd)}: exit {res.returncode}\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return res


def export_tree(dest: Path) -> str:
    """The tree as committed plus tracked changes (`git stash create` names that state without
    touching the work tree), or a filtered copy where there is no git repository."""
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        rev = run([git, "-C", str(ROOT), "stash", "create"]).stdout.strip() or "HEAD"
        dest.mkdir(parents=True)
        archive = subprocess.run([git, "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True, check=True)
        subprocess.run(["tar", "-C", str(dest), "-xf", "-"], input=archive.stdout, check=True)
        return f"git archive {rev[:12]}{' (HEAD + tracked changes)' if rev != 'HEAD' else ''}"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*JUNK), symlinks=True)
    return "copy (no git repository)"


def build(src: Path, dist: Path, pattern: str) -> Path:
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)])
    (whl,) = dist.glob(pattern)
    return whl


def requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    return meta.get_all("Requires-Dist") or []


def test_runner(product: Path) -> list[str]:
    """pytest and pytest-timeout as the product's [test] extra pins them (not the whole extra:
    linters and fuzzers are not what these tests use)."""
    wanted = ("pytest", "pytest-timeout")
    return [r.split(";")[0].strip() for r in requires(product)
            if 'extra == "test"' in r and r.split(";")[0].strip().split("<")[0].split(">")[0].split("=")[0] in wanted]


def wheelhouse(product: Path, lab: Path, work: Path) -> tuple[Path, str]:
    """Every dependency wheel of `product[deploy,lab]`, `lab` and the test runner, cached by
    (requirements, python, machine)."""
    used = [r for r in requires(product) + requires(lab)
            if "extra ==" not in r or 'extra == "deploy"' in r or 'extra == "lab"' in r]
    reqs = sorted(used + test_runner(product))
    key = hashlib.sha256("\n".join([*reqs, platform.python_version(), platform.machine()]).encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hacluster" / "wheel-check"
    cached = base / key
    if cached.is_dir():
        return cached, f"cached ({cached}, {len(list(cached.glob('*.whl')))} wheels)"
    part = work / "wheelhouse"
    try:
        run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(part), f"{product}[deploy,lab]", str(lab),
             *test_runner(product)], timeout=900)
    except CheckFailed as err:
        raise CheckFailed(f"building the wheelhouse (needs the package index once; later runs use {base}): {err}") from None
    for own in (*part.glob("hacluster-*.whl"), *part.glob("hacluster_lab-*.whl")):
        own.unlink()
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".part-"))
    shutil.copytree(part, tmp / "w")
    try:
        (tmp / "w").rename(cached)
    except OSError:  # another run filled it meanwhile
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return cached, f"built ({cached}, {len(list(cached.glob('*.whl')))} wheels)"


def du(*paths: Path) -> int:
    """Disk usage in bytes, as `du -s` counts it (allocated blocks)."""
    files = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*"))]
    return sum(p.lstat().st_blocks * 512 for p in files if p.is_file() and not p.is_symlink())


def installer(venv: Path, site: Path) -> list[Path]:
    """pip and setuptools in a venv: `hacluster deploy` removes them after the install."""
    return [p for p in (*site.iterdir(), *(venv / "bin").iterdir())
            if p.name.split("-")[0] in ("pip", "pip3", "pip3.11", "setuptools", "pkg_resources", "_distutils_hack",
                                        "distutils")]


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def venv_site(py: Path) -> Path:
    return Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())


def check_installed(py: Path, venv: Path, cwd: Path, lab: bool) -> str:
    """Where `hacluster` (and `hacluster_lab`) come from: the venv, never the source tree."""
    code = ("import importlib.util as u, json; s = u.find_spec('hacluster_lab'); import hacluster; "
            "print(json.dumps([hacluster.__file__, s.origin if s else None]))")
    where, lab_where = json.loads(run([str(py), "-c", code], cwd=cwd).stdout)
    for f in (where, lab_where) if lab else (where,):
        if f is None or not Path(f).is_relative_to(venv) or Path(f).is_relative_to(ROOT):
            raise CheckFailed(f"imported from {f}, not from the venv {venv}")
    if not lab and lab_where is not None:
        raise CheckFailed(f"hacluster_lab is importable in the mail-node install: {lab_where}")
    return where


def agent_step(venv: Path, run_dir: Path, spec: Path) -> str:
    """The installed `hacluster agent` against a real ZooKeeper (the tests' server helper) until
    its /status says it holds the store role and the marker resource runs."""
    from hacluster.zkserver import ZooKeeperEnsemble

    zk = ZooKeeperEnsemble.local(run_dir / "zk", n=1, base_port=ZK_PORT)
    state = run_dir / "agent-state"
    state.mkdir()
    log = open(run_dir / "agent.log", "wb")
    proc = None
    try:
        zk.start(timeout=60)
        t = time.monotonic()
        proc = subprocess.Popen([str(venv / "bin" / "hacluster"), "agent", "--node", "node1", "--state-dir", str(state)],
                                cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "HACLUSTER_CONFIG": str(spec)})
        deadline = t + 30
        status: dict = {}
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CheckFailed(f"the agent exited {proc.returncode}:\n{(run_dir / 'agent.log').read_text()[-3000:]}")
            try:
                status = json.loads(urllib.request.urlopen(f"http://127.0.0.11:{API_PORT}/status", timeout=2).read())
            except OSError:
                status = {}
            if status.get("roles", {}).get("store", {}).get("held") and (state / "RUNNING").is_file():
                took = time.monotonic() - t
                time.sleep(3)  # and keeps it: a few seconds more of its loop
                again = json.loads(urllib.request.urlopen(f"http://127.0.0.11:{API_PORT}/status", timeout=2).read())
                if not again["roles"]["store"]["held"] or proc.poll() is not None:
                    raise CheckFailed(f"the agent lost the role: {again}")
                return (f"agent held role store {took:.1f}s after start (term {again['roles']['store']['term']}, "
                        f"zookeeper {again['zookeeper']}), still after 3 s more")
            time.sleep(0.2)
        raise CheckFailed(f"no role held within 30 s: {status}\n{(run_dir / 'agent.log').read_text()[-3000:]}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        zk.stop()


def drill_step(venv: Path, run_dir: Path) -> str:
    py = str(venv / "bin" / "python")
    book = run([py, "-c", f"from hacluster_lab.drill import default_playbook_dir as d; print(d() / '{DRILL}.yml')"],
               cwd=run_dir).stdout.strip()
    if not Path(book).is_relative_to(venv):
        raise CheckFailed(f"the playbook {book} is not the installed one")
    state, prefix = f"/run/hacluster-lab-wheelcheck-{os.getpid()}", f"hw{os.getpid() % 90 + 10}-"
    try:
        res = subprocess.run([str(venv / "bin" / "hacluster"), "drill", "run", book, "--json", "--state-dir", state,
                              "--prefix", prefix, "--out", str(run_dir / "drill-results")],
                             capture_output=True, text=True, cwd=run_dir, timeout=300, stdin=subprocess.DEVNULL)
    finally:  # the lab is torn down by the run; after a timeout, by the installed toolkit
        subprocess.run([py, "-c", "import sys; from pathlib import Path; from hacluster_lab.lab.lab import Lab; "
                        "Lab.teardown(Path(sys.argv[1]), sys.argv[2])", state, prefix],
                       capture_output=True, cwd=run_dir, timeout=120)
    try:
        d = json.loads(res.stdout)  # one playbook: its report
        d["passed"], d["expectations"]
    except (ValueError, KeyError, TypeError):
        raise CheckFailed(f"drill {DRILL}: exit {res.returncode}, no report\n{res.stderr[-3000:]}") from None
    if res.returncode != 0 or not d["passed"]:
        bad = [e for e in d["expectations"] if not e["passed"]]
        raise CheckFailed(f"drill {DRILL} failed (exit {res.returncode}): {json.dumps(bad)[:3000]}")
    return f"drill {DRILL} passed in {d['seconds']:.1f}s ({len(d['expectations'])} expectations)"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the suite's version: two deploy tests, no lab test")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (wheels, venv) and print it")
    ap.add_argument("--wheelhouse-only", action="store_true", help="build the wheels and the wheelhouse cache, then stop")
    ap.add_argument("pytest_args", nargs="*", help="instead of the chosen tests (paths relative to the tree)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="hacluster-wheel-check-"))
    if tmp.is_relative_to(ROOT):
        raise SystemExit("wheel-check: the temp dir must lie outside the source tree (set TMPDIR)")
    try:
        return steps(tmp, args)
    except CheckFailed as err:
        say(f"FAILED: {err}")
        return 1
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            say(f"removed {tmp}")


def steps(tmp: Path, args: argparse.Namespace) -> int:
    how = export_tree(tmp / "export")
    say(f"export: {how}")
    dist = tmp / "dist"
    product = build(tmp / "export", dist, "hacluster-*.whl")
    lab = build(tmp / "export" / "lab", dist, "hacluster_lab-*.whl")
    say(f"python -m build --wheel: {product.name} {product.stat().st_size / 1e3:.0f} kB, "
        f"{lab.name} {lab.stat().st_size / 1e3:.0f} kB")
    wh, how = wheelhouse(product, lab, tmp)
    say(f"wheelhouse: {how}")
    if args.wheelhouse_only:
        return 0

    venv = tmp / "venv"
    run_dir = tmp / "run"  # the working directory of everything below: no source tree in it
    run_dir.mkdir()
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    base = du(venv)
    pip = [str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wh)]
    run([*pip, str(product)])
    node = du(venv)
    where = check_installed(py, venv, run_dir, lab=False)
    site = venv_site(py)
    heavy = [n for n in ("matplotlib", "numpy", "PIL", "fabric", "paramiko", "scapy") if (site / n).exists()]
    if heavy:
        raise CheckFailed(f"the mail-node install has {heavy}")
    deployed = node - du(*installer(venv, site))
    if deployed >= 60e6:
        raise CheckFailed(f"a mail node's venv is {mb(deployed)} without pip and setuptools (target: under 60 MB)")
    say(f"mail node: pip install {product.name} -> venv {mb(node)} (du; the empty venv {mb(base)}), "
        f"{mb(deployed)} without pip and setuptools (as deploy leaves it); hacluster from {where}")
    biggest = sorted(((du(e), e.name) for e in site.iterdir() if e.is_dir() and not e.name.endswith("-info")), reverse=True)
    say("  largest: " + ", ".join(f"{name} {mb(n)}" for n, name in biggest[:7]))
    run([*pip, f"{product}[deploy,lab]", str(lab), *test_runner(product)])
    full = du(venv)
    where = check_installed(py, venv, run_dir, lab=True)
    say(f"lab install: + [deploy,lab], {lab.name}, {' '.join(test_runner(product))} -> venv {mb(full)}")

    hc = str(venv / "bin" / "hacluster")
    helptext = run([hc, "--help"], cwd=run_dir).stdout
    if not ("Usage: hacluster" in helptext and "deploy" in helptext and "drill" in helptext):
        raise CheckFailed(f"hacluster --help:\n{helptext}")
    say(f"hacluster --help: {len(helptext.splitlines())} lines, deploy and the lab's commands listed")
    spec = run_dir / "cluster.yml"
    from hacluster.examples import loopback_spec

    spec.write_text(loopback_spec(f"127.0.0.1:{ZK_PORT}", n=1, cluster="wheelcheck", api_port=API_PORT))
    by_opt = run([hc, "config", "check", "-c", str(spec)], cwd=run_dir).stdout.strip()
    by_env = run([hc, "config", "check"], cwd=run_dir, env={**os.environ, "HACLUSTER_CONFIG": str(spec)}).stdout.strip()
    if str(spec) not in by_env or "ok" not in by_opt:
        raise CheckFailed(f"config check: {by_opt!r} / {by_env!r}")
    say(f"hacluster config check: {by_opt.splitlines()[0]} (and the same by $HACLUSTER_CONFIG)")
    say(agent_step(venv, run_dir, spec))

    shutil.copytree(tmp / "export" / "tests", run_dir / "tests", ignore=shutil.ignore_patterns(*JUNK))
    shutil.copy2(tmp / "export" / "pyproject.toml", run_dir / "pyproject.toml")  # pytest's settings, [project] deps
    tests = args.pytest_args or (QUICK_TESTS if args.quick else FULL_TESTS)
    env = {**os.environ, "HACLUSTER_TEST_WHEEL": str(product), "HACLUSTER_TEST_WHEELHOUSE": str(wh),
           "HACLUSTER_TEST_INSTALLED": str(venv)}
    t = time.monotonic()
    res = subprocess.run([str(py), "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--durations=0",
                          "--durations-min=1", *tests],
                         cwd=run_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    lines = res.stdout.strip().splitlines() or ["(no output)"]
    summary = lines[-1]
    slow = [ln for ln in lines if ln.split("s ", 1)[0].replace(".", "").isdigit() and " call " in ln]
    if res.returncode != 0:
        raise CheckFailed(f"pytest {' '.join(tests)}: exit {res.returncode}\n{res.stdout[-6000:]}{res.stderr[-2000:]}")
    say(f"pytest (venv's python, copy of tests/): {' '.join(tests)}: {summary} ({time.monotonic() - t:.0f}s)")
    for ln in slow:
        say(f"  {ln.strip()}")
    say(drill_step(venv, run_dir))
    say(f"all passed; wheels {product.stat().st_size / 1e3:.0f} kB + {lab.stat().st_size / 1e3:.0f} kB, "
        f"mail-node venv {mb(node)} ({mb(deployed)} as deployed), lab venv {mb(full)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
