"""The deploy inventory: Ansible-style groups, var precedence, aliases, --limit, rollout order,
and every kind of mistake reported as FILE:LINE: field (exit 2, nothing deployed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.errors import UserError
from hacluster.deploy.inventory import InventoryError, load_inventory, parse_inventory

# line numbers matter below: keep this text's layout as it is
INV = """\
all:
  vars:
    spec: cluster.yml
    ssh_key: keys/deploy
    prefix: /opt/hacluster
  children:
    zookeeper:
      hosts:
        zk1: {ssh_host: 198.51.100.31}
    store:
      vars: {ssh_user: admin, become: true}
      hosts:
        store1: {ansible_host: 198.51.100.11}
        store2: {ssh_host: 198.51.100.12, ssh_port: 2222, ssh_user: root, become: false}
    relay:
      hosts:
        relay1:
    client:
      hosts:
        client: {ssh_host: 203.0.113.10}
"""


def test_groups_vars_and_aliases(tmp_path: Path) -> None:
    inv = parse_inventory(INV, "inv.yml", tmp_path)
    s1, s2, r1 = inv.hosts["store1"], inv.hosts["store2"], inv.hosts["relay1"]
    assert s1.groups == ("store",) and s1.tier == "store" and not s1.zookeeper
    assert s1.address == "198.51.100.11"  # ansible_host
    assert s1.var("ssh_user") == "admin" and s1.var("become") is True  # group vars
    assert s2.var("ssh_user") == "root" and s2.var("become") is False and s2.var("ssh_port") == 2222  # host vars win
    assert r1.address == "relay1" and r1.var("ssh_user") == "root" and r1.var("ssh_port") == 22  # defaults
    # local paths are relative to the inventory's folder; target paths stay as written
    assert s1.var("spec") == str(tmp_path / "cluster.yml") and s1.var("ssh_key") == str(tmp_path / "keys" / "deploy")
    assert s1.var("prefix") == "/opt/hacluster"
    assert inv.hosts["zk1"].zookeeper and inv.hosts["zk1"].tier is None
    assert inv.hosts["client"].tier is None and not inv.hosts["client"].zookeeper
    assert s2.target == "root@198.51.100.12:2222"


def test_rollout_order_and_limit(tmp_path: Path) -> None:
    inv = parse_inventory(INV, "inv.yml", tmp_path)
    # ZooKeeper first, then relays, then stores (file order within a group), others last
    assert [h.name for h in inv.select(None)] == ["zk1", "relay1", "store1", "store2", "client"]
    assert [h.name for h in inv.select("store")] == ["store1", "store2"]
    assert [h.name for h in inv.select("store2,relay")] == ["relay1", "store2"]
    with pytest.raises(UserError, match=r"--limit: no host or group named 'store3'"):
        inv.select("store3")


def test_top_level_groups_without_all(tmp_path: Path) -> None:
    text = "store:\n  vars: {spec: c.yml}\n  hosts:\n    s1:\n    s2: {ssh_port: 2200}\n"
    inv = parse_inventory(text, "inv.yml", tmp_path)
    assert sorted(inv.hosts) == ["s1", "s2"] and inv.hosts["s2"].var("ssh_port") == 2200
    assert inv.groups["store"] == ("s1", "s2")


def test_nested_children_and_host_in_two_groups(tmp_path: Path) -> None:
    text = """\
all:
  vars: {spec: c.yml, python: python3.11}
  children:
    site_a:
      vars: {prefix: /srv/a}
      children:
        store:
          hosts:
            s1: {ssh_host: 198.51.100.11}
    zookeeper:
      hosts:
        s1: {zk_id: 2}
"""
    inv = parse_inventory(text, "inv.yml", tmp_path)
    s1 = inv.hosts["s1"]
    assert set(s1.groups) == {"store", "site_a", "zookeeper"}
    assert s1.var("prefix") == "/srv/a" and s1.var("python") == "python3.11" and s1.var("zk_id") == 2
    assert s1.address == "198.51.100.11"
    assert inv.groups["site_a"] == ("s1",)


@pytest.mark.parametrize(
    "line, new, expected",
    [
        (4, "    ssh_kye: keys/deploy", "inv.yml:4: all.vars.ssh_kye: unknown key"),
        (14, "        store2: {ssh_host: 198.51.100.12, ssh_port: 70000}", "inv.yml:14: all.children.store.hosts.store2.ssh_port: must be 1..65535"),
        (14, "        store2: {ssh_host: 198.51.100.12, ssh_port: '22'}", "inv.yml:14: all.children.store.hosts.store2.ssh_port: must be int, got str"),
        (5, "    prefix: opt/hacluster", "inv.yml:5: all.vars.prefix: must be an absolute path on the target"),
        (5, "    service: upstart", "inv.yml:5: all.vars.service: must be one of auto, systemd, none"),
        (5, "    install: apt", "inv.yml:5: all.vars.install: must be one of wheelhouse, pypi"),
        (11, "      vars: {ssh_user: admin, become: yes-please}", "inv.yml:11: all.children.store.vars.become: must be bool, got str"),
        (13, "        store1: {ansible_host: 198.51.100.11, ssh_host: 198.51.100.12}", "sets ssh_host twice"),
    ],
)
def test_problems_name_file_line_field(tmp_path: Path, line: int, new: str, expected: str) -> None:
    lines = INV.splitlines()
    lines[line - 1] = new
    with pytest.raises(InventoryError) as exc:
        parse_inventory("\n".join(lines) + "\n", "inv.yml", tmp_path)
    assert expected in str(exc.value), str(exc.value)


def test_all_problems_at_once_and_spec_required(tmp_path: Path) -> None:
    text = "all:\n  hosts:\n    a: {ssh_port: 0}\n    b: {sudo: true}\n"
    with pytest.raises(InventoryError) as exc:
        parse_inventory(text, "inv.yml", tmp_path)
    msg = str(exc.value).splitlines()
    assert "inv.yml:3: all.hosts.a.ssh_port: must be 1..65535" in msg
    assert any(m.startswith("inv.yml:4: all.hosts.b.sudo: unknown key") for m in msg)
    assert "inv.yml:3: a.spec: is required (set it in all.vars)" in msg


@pytest.mark.parametrize(
    "text, expected",
    [
        ("all:\n  hosts: {a: {spec: x}\n", "inv.yml:3: (yaml):"),
        ("- a\n- b\n", "inv.yml:1: (top): must be a mapping of groups"),
        ("all:\n  hosts: {a: {spec: x}}\nstore:\n  hosts: {b: }\n", "inv.yml:3: store: put groups under all.children"),
        ("all:\n  children:\n    all: {}\n", "inv.yml:3: all.children.all: `all` is the root group"),
        ("all: {}\n", "inv.yml:1: all: no hosts"),
        ("store:\n  vars: {spec: c}\n  hosts: [a, b]\n", "inv.yml:3: store.hosts: must be a mapping of names, got a list"),
        ("store: [a]\n", "inv.yml:1: store: must be a mapping, got a list"),
        ("all:\n  vars: {spec: a}\n  vars: {spec: b}\n  hosts: {a: }\n", "inv.yml:"),
    ],
)
def test_broken_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InventoryError) as exc:
        parse_inventory(text, "inv.yml", tmp_path)
    assert str(exc.value).startswith(expected), str(exc.value)
    assert "\n" not in str(exc.value) or expected == "inv.yml:"


def test_cli_bad_inventory_exit_2_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "inv.yml"
    f.write_text("all:\n  vars: {spec: c.yml, ssh_port: 0, service: upstart}\n  hosts: {a: }\n")
    assert main(["deploy", "--inventory", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith(f"{f}:2: all.vars.") for line in err), err
    assert main(["deploy", "--inventory", str(tmp_path / "missing.yml")]) == 2
    assert "missing.yml: cannot read" in capsys.readouterr().err
    (tmp_path / "bin.yml").write_bytes(b"all:\n  hosts: {a: }\n\xff\n")
    assert main(["deploy", "--inventory", str(tmp_path / "bin.yml")]) == 2
    assert "bin.yml:3: (encoding): not UTF-8" in capsys.readouterr().err


SPEC = """\
cluster: t
zookeeper: {hosts: [198.51.100.31:2181]}
roles:
  store: {tier: store}
nodes:
  - {name: store1, tier: store, interface: eth0, addresses: [198.51.100.11/24]}
  - {name: relay1, tier: relay, interface: eth0, addresses: [192.0.2.11/24]}
"""


def test_cli_inventory_against_spec_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every host must be a node of the spec with its group's tier; checked before any SSH."""
    (tmp_path / "cluster.yml").write_text(SPEC)
    f = tmp_path / "inv.yml"
    f.write_text("""\
all:
  vars: {spec: cluster.yml, zk_credentials: zk.auth}
  children:
    store:
      hosts:
        store1:
        relay1:
        store9:
    zookeeper:
      hosts:
        zk1:
        zk2:
""")
    assert main(["deploy", "--inventory", str(f), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{f}:7: relay1: is in group store but node relay1 has tier relay" in err
    assert f"{f}:8: store9: no node 'store9' in {tmp_path / 'cluster.yml'}" in err
    assert f"{f}:12: zk2.zk_id: 2 is not a server of zookeeper.hosts" in err
    assert f"{f}:6: store1.zk_credentials: {tmp_path / 'zk.auth'}: no such file" in err
    assert "Traceback" not in err


def test_cli_bad_spec_is_file_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cluster.yml").write_text(SPEC.replace("tier: store}", "tier: storage}"))
    f = tmp_path / "inv.yml"
    f.write_text("store:\n  vars: {spec: cluster.yml}\n  hosts: {store1: }\n")
    assert main(["deploy", "--inventory", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'cluster.yml'}:4: roles.store.tier: unknown tier" in err


def test_load_inventory_resolves_against_its_folder(tmp_path: Path) -> None:
    sub = tmp_path / "site"
    sub.mkdir()
    (sub / "inv.yml").write_text("store:\n  vars: {spec: ../cluster.yml, known_hosts: ~/kh}\n  hosts: {s1: }\n")
    h = load_inventory(sub / "inv.yml").hosts["s1"]
    assert h.var("spec") == str(tmp_path / "cluster.yml")
    assert h.var("known_hosts") == str(Path("~/kh").expanduser())
