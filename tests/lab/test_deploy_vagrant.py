"""The VM lab's files: `vagrant validate --ignore-provider` passes (Debian's vagrant package), a
broken Vagrantfile fails it, and the Vagrantfile, vagrant/inventory.yml and vagrant/cluster.yml
describe the namespace lab's topology (hacluster/examples/lab.yml) with the same addresses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hacluster.deploy.inventory import load_inventory
from hacluster.spec import default_spec_path, load_spec

ROOT = Path(__file__).resolve().parents[2]
VAGRANT = ROOT / "vagrant"

pytestmark = pytest.mark.timeout(600)  # vagrant validate: ~7 s of CPU, minutes of wall time at load 50


def _validate(folder: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VAGRANT_HOME": str(tmp / "vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    return subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=280, stdin=subprocess.DEVNULL)


def _copy(tmp: Path) -> Path:
    """A copy, so validating leaves no .vagrant/ in the work tree."""
    dst = tmp / "vagrant"
    shutil.copytree(VAGRANT, dst, ignore=shutil.ignore_patterns(".vagrant", ".secrets", ".state", "drill-results"))
    return dst


def test_vagrant_validate_passes(tmp_path: Path) -> None:
    r = _validate(_copy(tmp_path), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Vagrantfile validated successfully." in r.stdout
    for name in ("zk1", "zk2", "zk3", "relay1", "relay2", "fallback", "store1", "store2", "client"):
        assert f"==> {name}:" in r.stdout


def test_vagrant_validate_fails_on_a_broken_vagrantfile(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    vf = folder / "Vagrantfile"
    vf.write_text(vf.read_text().replace("node.vm.hostname =", "node.vm.hostnmae =", 1))
    r = _validate(folder, tmp_path)
    assert r.returncode != 0 and "hostnmae" in r.stdout + r.stderr


def _machines() -> dict[str, str]:
    """name -> address, from the Vagrantfile's MACHINES and SEGMENTS tables."""
    text = (VAGRANT / "Vagrantfile").read_text()
    nets = dict(re.findall(r'"(\w+)"\s*=>\s*\{ net: "([\d.]+)"', text))
    return {name: f"{nets[seg]}.{last}" for name, seg, last in re.findall(r'"(\w+)"\s*=>\s*\["(\w+)",\s*(\d+),', text)}


def test_same_topology_as_the_namespace_lab() -> None:
    lab = load_spec(default_spec_path())
    vm = load_spec(VAGRANT / "cluster.yml")
    machines = _machines()
    assert set(machines) == {*lab.nodes, "zk1", "zk2", "zk3", "client"}
    for name, node in lab.nodes.items():
        assert machines[name] == node.address, name  # the lab's IPv4 address of each node
        vnode = vm.nodes[name]
        assert (vnode.tier, vnode.address, vnode.priority, vnode.mx_preference) == \
               (node.tier, node.address, node.priority, node.mx_preference)
    assert vm.zookeeper.hosts == lab.zookeeper.hosts
    assert [f"{machines[z]}:2181" for z in ("zk1", "zk2", "zk3")] == list(vm.zookeeper.hosts)
    assert lab.lab is not None and machines["client"] == str(lab.lab.client.ip)
    assert set(vm.roles) == set(lab.roles) and vm.roles["store"].vips[0].ip == lab.roles["store"].vips[0].ip
    # the same resources run on the standby (the FallbackMX Postfix whatever ZooKeeper does)
    assert {r: vm.roles[r].run_on_standby for r in vm.roles} == {r: lab.roles[r].run_on_standby for r in lab.roles}
    assert vm.roles["fallback"].run_on_standby == {"postfix"}


def test_inventory_deploys_every_vm_with_its_tier() -> None:
    inv = load_inventory(VAGRANT / "inventory.yml")
    vm = load_spec(inv.hosts["store1"].var("spec"))
    machines = _machines()
    assert set(inv.hosts) == set(machines)
    for name, h in inv.hosts.items():
        assert h.address == machines[name], name
        if name in vm.nodes:
            assert h.tier == vm.nodes[name].tier
    assert [h.name for h in inv.group("zookeeper")] == ["zk1", "zk2", "zk3"]
    assert [h.var("zk_id") for h in inv.group("zookeeper")] == [1, 2, 3]
    # rollout: ZooKeeper, fallback, relays, stores; the client gets nothing
    assert [h.name for h in inv.select(None)][:8] == ["zk1", "zk2", "zk3", "fallback", "relay1", "relay2", "store1", "store2"]
    assert inv.hosts["client"].tier is None and not inv.hosts["client"].zookeeper


def test_vm_lab_has_the_checks_the_raid_and_spool_drills_need() -> None:
    """raid-degraded and spool-full run on the VM lab too: cluster.yml gives the stores a raid
    check on a sample file and a spool check on /var/mail, which the Vagrantfile makes a small
    filesystem of its own on each store (so filling it does not fill the VM's root)."""
    from hacluster_lab.drill.vagrant import VagrantTarget

    target = VagrantTarget(VAGRANT)
    text = (VAGRANT / "Vagrantfile").read_text()
    stores = re.search(r"SPOOL_STORES = %w\[([^\]]*)\]", text)
    assert stores is not None and set(stores.group(1).split()) == {"store1", "store2"}
    image = re.search(r'SPOOL_IMAGE = "([^"]+)"', text)
    assert image is not None
    for node in ("store1", "store2"):
        assert target._check_param(node, "raid", "mdstat") == "/var/lib/hacluster/mdstat"
        spool = target._check_param(node, "spool", "path")
        assert f'echo "#{{SPOOL_IMAGE}} {spool} ext4 loop,nofail 0 2"' in text, spool
