"""The wheel is what a production host installs (issue 14): it must carry agents/ (the unit
`hacluster deploy` renders, OCF scripts, alert rules, dashboard), the MIT licence and metadata
without matplotlib in the core dependencies; and `hacluster deploy` run from an *installed* copy
(no source tree next to it) must find the unit.

Offline, as in .ci/isolated, and as `make product-check` does it (tests/product_check.py builds
both): the wheel is built with this venv's setuptools (--no-build-isolation) from a copy of the
tree (a build leaves build/ and *.egg-info behind), and installed --no-deps --no-index into a
fresh venv that sees this venv's dependencies but nothing of hacluster or the lab toolkit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from hacluster.spec import default_spec_text
from product_check import build_wheel, product_venv  # tests/: the wheel and venv `make product-check` builds

ROOT = Path(__file__).resolve().parents[2]
AGENT_FILES = ("hacluster-agent.service", "ocf/hacluster-vip", "ocf/hacluster-mta", "ocf/hacluster-spool",
               "ocf/hacluster-replicator", "prometheus-alerts.yml", "grafana-dashboard.json")

pytestmark = pytest.mark.timeout(180)

# run by the installed copy: where it lives, and the unit `deploy` plans for a fresh systemd host
PLAN = textwrap.dedent("""\
    import json, sys
    import hacluster
    from hacluster.deploy import Deployer
    from hacluster.deploy.package import source_root
    from hacluster.deploy.plan import Facts
    from hacluster.deploy.inventory import load_inventory

    inv = load_inventory(sys.argv[1])
    dep = Deployer(inv, None, True, sys.stderr)
    try:
        d = dep.desired(inv.hosts["store1"], Facts(uid=0, python="3.11", machine="x86_64", systemd=True))
    finally:
        dep.close()
    unit = next(f for f in d.files if f.step == "service")
    print(json.dumps({"module": hacluster.__file__, "source_root": str(source_root()), "unit_path": unit.path,
                      "unit": unit.content.decode(), "package": d.package.name}))
""")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, **kw)
    assert res.returncode == 0, f"{cmd}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_agents_licence_and_lean_dependencies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        meta = Parser().parsestr(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        licence = z.read(next(n for n in names if n.endswith("/licenses/LICENSE"))).decode()
    for f in AGENT_FILES:
        assert f"hacluster/agents/{f}" in names, f
    assert all(modes[f"hacluster/agents/ocf/{s}"] & 0o111 for s in ("hacluster-vip", "hacluster-mta"))
    assert meta["License-Expression"] == "MIT" and "MIT License" in licence and "hacluster developers" in licence
    requires = meta.get_all("Requires-Dist")
    core = {r.split(";")[0].split(">")[0].split("<")[0].strip() for r in requires if "extra ==" not in r}
    assert {"kazoo", "click", "cryptography"} <= core and "matplotlib" not in core
    # SSH only for `hacluster deploy`: a mail node never deploys
    assert not {"fabric", "paramiko", "invoke"} & core
    assert all(any(r.startswith(m) and 'extra == "deploy"' in r for r in requires) for m in ("fabric", "paramiko", "invoke"))
    assert any(r.startswith("hacluster[deploy]") and 'extra == "lab"' in r for r in requires)
    # scapy (24 MB) only builds reference frames in the tests: the VIP's frames are struct-built
    assert "scapy" not in core and any(r.startswith("scapy") and 'extra == "test"' in r for r in requires)
    assert any(r.startswith("matplotlib") and 'extra == "lab"' in r for r in requires)
    # the lab toolkit is a distribution of its own, behind the [lab] extra: none of it in this wheel
    assert any(r.startswith("hacluster-lab") and 'extra == "lab"' in r for r in requires)
    assert not [n for n in names if n.startswith("hacluster_lab/") or "playbooks" in n]
    assert not [n for n in names if n.endswith("entry_points.txt") and b"fence_hacluster_lab" in z_read(wheel, n)]
    assert any(r.startswith("hacluster[lab]") and 'extra == "test"' in r for r in requires)


def z_read(wheel: Path, name: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        return z.read(name)


def test_the_lab_wheel_carries_the_playbooks_and_plugs_its_commands_in(tmp_path: Path) -> None:
    """hacluster-lab (lab/pyproject.toml): the drills' playbooks as package data (`drill run --all`
    reads them from the installed package), its commands as `hacluster.commands` entry points."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "lab", src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(tmp_path / "dist"), str(src)])
    (whl,) = (tmp_path / "dist").glob("hacluster_lab-*.whl")
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        eps = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    books = sorted(p.name for p in (ROOT / "lab/hacluster_lab/drill/playbooks").glob("*.yml"))
    assert books and all(f"hacluster_lab/drill/playbooks/{b}" in names for b in books)
    assert not [n for n in names if n.startswith("hacluster/")]  # the product is a dependency, not a copy
    assert "[hacluster.commands]" in eps and "lab = hacluster_lab.lab.cli:lab" in eps
    assert "fence_hacluster_lab = hacluster_lab.lab.fence_agent:main" in eps


def test_deploy_from_an_installed_wheel_finds_the_unit(wheel: Path, tmp_path: Path) -> None:
    # the wheel alone in a fresh venv, its dependencies this venv's, nothing of the lab toolkit
    py = product_venv(tmp_path, wheel)
    site = py.parents[1]

    spec = tmp_path / "cluster.yml"
    spec.write_text(default_spec_text())
    inv = tmp_path / "inventory.yml"
    inv.write_text(f"store:\n  vars: {{spec: {spec}, prefix: /opt/hc, wheel: {wheel}}}\n"
                   "  hosts: {store1: {service: systemd}}\n")
    out = json.loads(_run([str(py), "-c", PLAN, str(inv)], cwd=tmp_path).stdout)
    assert out["module"].startswith(str(site)), out["module"]  # the installed copy, not this tree
    assert out["source_root"] == "None" and out["package"] == "hacluster"
    assert out["unit_path"] == "/etc/systemd/system/hacluster-agent.service"
    assert "ExecStart=/opt/hc/current/bin/hacluster agent --node ${HACLUSTER_NODE} $HACLUSTER_AGENT_ARGS\n" in out["unit"]
    assert "Environment=HACLUSTER_CONFIG=/opt/hc/etc/cluster.yml HACLUSTER_NODE=store1\n" in out["unit"]
    assert out["unit"].startswith("# Written by `hacluster deploy`")
    # and the installed command line runs without matplotlib's absence mattering
    res = _run([str(py), "-m", "hacluster", "config", "check", "-c", str(spec)], cwd=tmp_path)
    assert "ok: cluster lab" in res.stdout
    # what a mail node runs imports neither scapy nor matplotlib (blocked here: they are in this venv)
    code = ("import sys; sys.modules.update(scapy=None, matplotlib=None)\n"
            "from hacluster.resources import garp, vip; import hacluster.agent.loop, hacluster.http.api, hacluster.deploy.remote\n"
            "print(len(garp.announcements('02:00:5e:00:00:11', ('198.51.100.20', 'fd00::20'))))")
    assert _run([str(py), "-c", code], cwd=tmp_path).stdout.strip() == "3"
    # without the lab toolkit (this venv's hacluster_lab is an editable hook, which doesn't run
    # there): no lab section in --help, and a lab command says what to install, exit 2
    assert "Lab (" not in _run([str(py), "-m", "hacluster", "--help"], cwd=tmp_path).stdout
    lab = subprocess.run([str(py), "-m", "hacluster", "drill", "run", "--all"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert lab.returncode == 2 and "install 'hacluster[lab]'" in lab.stderr and "Traceback" not in lab.stderr
    # the console script's --help, and deploy without the `deploy` extra: one line naming it, exit 2
    assert "Usage: hacluster" in _run([str(py), "-m", "hacluster", "--help"], cwd=tmp_path).stdout
    code = ("import sys; sys.modules.update(fabric=None, paramiko=None, invoke=None)\n"
            "from hacluster.cli import main; sys.argv = ['hacluster', 'deploy', '-i', 'inventory.yml', '--dry-run']; sys.exit(main())")
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip() == (
        "hacluster: hacluster deploy needs the 'deploy' extra (fabric, paramiko, invoke not installed): "
        "pip install 'hacluster[deploy]'"), res.stderr
