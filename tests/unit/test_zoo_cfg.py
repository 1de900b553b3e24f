"""Every zoo.cfg we write purges old snapshots and transaction logs: the lab's and the tests'
servers (hacluster/zkserver.py) and the ones `hacluster deploy` installs. Every lease renewal is a
logged transaction; with ZooKeeper's default (autopurge off) the dataDir grows until the disk
is full."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from hacluster.deploy import Deployer
from hacluster.deploy.render import Layout
from hacluster.deploy.inventory import parse_inventory
from hacluster.spec import parse_spec
from hacluster.zkserver import ZkServerSpec, render_config

ROOT = Path(__file__).resolve().parents[2]


def settings(cfg: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in cfg.splitlines() if "=" in line and not line.startswith("#"))


def test_lab_and_test_servers_purge_old_snapshots() -> None:
    s = [ZkServerSpec(i, "127.0.0.1", 2181 + 10 * i, 2888 + i, 3888 + i) for i in (1, 2, 3)]
    for servers in (s[:1], s):
        cfg = settings(render_config(servers[0], servers, Path("/tmp/zk/data"), 200))
        assert cfg["autopurge.snapRetainCount"] == "3" and cfg["autopurge.purgeInterval"] == "1"


def test_deployed_servers_purge_old_snapshots(tmp_path: Path) -> None:
    shutil.copy(ROOT / "hacluster" / "examples" / "lab.yml", tmp_path / "cluster.yml")
    inv = parse_inventory("zookeeper:\n  vars: {spec: cluster.yml}\n  hosts:\n    zk1: {ssh_host: 198.51.100.31}\n"
                          "    zk2: {ssh_host: 198.51.100.32}\n", "inv.yml", tmp_path)
    spec = parse_spec((tmp_path / "cluster.yml").read_text(), "cluster.yml")
    d = Deployer(inv, None, True, io.StringIO())
    try:
        for kind in ("systemd", "none"):
            files = d.zookeeper_files(inv.hosts["zk2"], spec, Layout("/opt/hc"), kind)
            zoo = next(f for f in files if f.path.endswith("/zoo.cfg"))
            cfg = settings(zoo.content.decode())
            assert cfg["autopurge.snapRetainCount"] == "3" and cfg["autopurge.purgeInterval"] == "1"
            assert cfg["tickTime"] == "2000" and cfg["clientPortAddress"] == "198.51.100.32"
    finally:
        shutil.rmtree(d.work, ignore_errors=True)
