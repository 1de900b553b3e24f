"""The drill target picks the docker variant when Vagrant's docker provider made the machines, and
refuses clearly (exit 2, naming them) when some have no container -- before touching Docker."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hacluster_lab.drill import make_target
from hacluster_lab.drill.vagrant import VagrantTarget
from hacluster_lab.drill.vagrant_docker import DockerVagrantTarget, container_ids
from hacluster.errors import UserError

VAGRANT = Path(__file__).resolve().parents[2] / "vagrant"


def _lab(tmp: Path, docker: dict[str, str]) -> Path:
    for f in ("inventory.yml", "cluster.yml"):
        shutil.copy(VAGRANT / f, tmp / f)
    for name, cid in docker.items():
        d = tmp / ".vagrant" / "machines" / name / "docker"
        d.mkdir(parents=True)
        (d / "id").write_text(cid + "\n")
    # a machine of another provider is not a container
    (tmp / ".vagrant" / "machines" / "zk3" / "libvirt").mkdir(parents=True, exist_ok=True)
    (tmp / ".vagrant" / "machines" / "zk3" / "libvirt" / "id").write_text("uuid\n")
    return tmp


def test_vm_providers_keep_the_ssh_target(tmp_path: Path) -> None:
    t = make_target("vagrant", "/nonexistent", "x-", None, str(_lab(tmp_path, {})), False)
    assert type(t) is VagrantTarget


def test_docker_machines_get_the_docker_target_and_missing_ones_are_named(tmp_path: Path) -> None:
    d = _lab(tmp_path, {"zk1": "abc123", "zk2": "def456"})
    assert container_ids(d, {"zk1", "zk2", "zk3", "store1"}) == {"zk1": "abc123", "zk2": "def456"}
    t = make_target("vagrant", "/nonexistent", "x-", None, str(d), False)
    assert isinstance(t, DockerVagrantTarget)
    with pytest.raises(UserError) as err:
        t.open()
    assert err.value.exit_code == 2
    msg = str(err.value)
    assert "no container for client, fallback, relay1, relay2, store1, store2, zk3" in msg, msg
    assert "vagrant up --provider=docker" in msg


def test_partition_and_isolate_tables_are_valid_nft() -> None:
    """The VM lab's partition/isolate tables, checked by nft itself (-c: nothing loaded, in a
    throwaway network namespace). The one-line form they replaced was a syntax error."""
    import subprocess

    from hacluster_lab.drill.vagrant import _table

    for script in (_table("hcl_partition", "ip saddr { 198.51.100.31, 198.51.100.32 } drop",
                          "ip daddr { 198.51.100.31, 198.51.100.32 } drop"),
                   _table("hcl_isolate", "iifname eth1 drop", "oifname eth1 drop")):
        r = subprocess.run(["unshare", "-n", "nft", "-c", "-f", "-"], input=script, text=True, capture_output=True)
        assert r.returncode == 0, (script, r.stderr)


def test_playbooks_the_vm_lab_cannot_run_say_why_and_do_not_fail_the_run(tmp_path: Path) -> None:
    """`drill run --all --target vagrant`: a playbook that needs a lab set-up (shared spool with
    fencing) or a step the VM lab lacks is reported NOT APPLICABLE with the reason,
    run nowhere and counted neither way; with nothing left to run the command says so (exit 2)."""
    import json

    from click.testing import CliRunner

    from hacluster_lab.drill import drill
    from hacluster_lab.drill.playbook import load_playbook

    (tmp_path / "lab").mkdir()
    d = _lab(tmp_path / "lab", {})
    books = Path(__file__).resolve().parents[2] / "playbooks"
    t = VagrantTarget(d)
    why = {p: t.cannot_run(load_playbook(books / p)) for p in (
        "shared-spool-frozen-host.yml", "zookeeper-down-holder-isolated.yml", "imap-through-failover.yml",
        "placement-failback.yml", "store-holder-power-off.yml", "node-standby.yml")}
    assert "shared block-device spool with host fencing" in (why["shared-spool-frozen-host.yml"] or "")
    assert why["zookeeper-down-holder-isolated.yml"] is None  # failsafe: deployed by use_spec
    assert why["imap-through-failover.yml"] is None  # Dovecot on the stores (lab mail-path), read through the VIP
    assert why["placement-failback.yml"] is None  # deployed to the store tier by set_placement
    assert why["store-holder-power-off.yml"] is None and why["node-standby.yml"] is None
    res = CliRunner().invoke(drill, ["run", str(books / "shared-spool-frozen-host.yml"), str(books / "shared-spool-agent-stuck.yml"),
                                     "--target", "vagrant", "--vagrant-dir", str(d), "--json", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    reports = json.loads(res.stdout)["drills"]
    assert [(r["name"], r["passed"], bool(r["not_applicable"]), r["expectations"]) for r in reports] == [
        ("shared-spool-frozen-host", False, True, []), ("shared-spool-agent-stuck", False, True, [])]
    assert "cannot run any of these playbooks" in res.stderr


def test_a_spec_variant_is_deployed_once_and_cluster_yml_again_after(tmp_path: Path) -> None:
    """The failsafe drills run on the machines: use_spec deploys cluster.yml with `failsafe: true`
    once for the drills that share it, and cluster.yml itself again when they are done (close);
    drills without a variant deploy nothing. (The deploy itself, `hacluster deploy` over SSH,
    runs in `make vagrant-lab`.)"""
    from hacluster.spec import parse_spec

    d = _lab(tmp_path, {})
    deployed: list[str] = []

    class Recording(VagrantTarget):
        def _deploy(self, spec_text: str, limit: list[str] | None = None) -> None:
            assert limit is None
            deployed.append(spec_text)

    t = Recording(d)
    own = (d / "cluster.yml").read_text()
    assert t.use_spec({}) == {}  # nothing deployed: the drill report's setup says nothing
    assert deployed == []
    setup = t.use_spec({"failsafe": True})
    assert setup["spec"] == "failsafe: true" and setup["deploy_s"] >= 0
    assert t.use_spec({"failsafe": True}) == {}
    assert len(deployed) == 1 and parse_spec(deployed[0], "variant").failsafe is True
    assert parse_spec(own, "own").failsafe is False
    t.close()
    assert deployed[1:] == [own]
    t.close()
    assert len(deployed) == 2


def test_a_placement_step_is_deployed_to_the_tier_and_lifted_after(tmp_path: Path) -> None:
    """placement-failback on the machines: the store tier's machines that are on get cluster.yml
    with roles.store.failback (a bad patch is refused before any deploy), the lift deploys the
    spec back to them, and nothing else is deployed."""
    from hacluster.spec import parse_spec

    d = _lab(tmp_path, {})
    deployed: list[tuple[str, list[str] | None]] = []

    class Recording(VagrantTarget):
        def _deploy(self, spec_text: str, limit: list[str] | None = None) -> None:
            deployed.append((spec_text, limit))

    t = Recording(d)
    own = (d / "cluster.yml").read_text()
    t.use_spec({})
    out = t.set_placement("store", {"failback": {"delay_s": 4}})
    assert "deploy" in out["restarted"]
    (text, limit), = deployed
    assert limit == ["store1", "store2"]
    assert parse_spec(text, "placed").roles["store"].placement.failback_s == 4
    assert parse_spec(own, "own").roles["store"].placement.failback_s is None
    t.set_placement("store", {"failback": {"delay_s": 4}})
    assert len(deployed) == 1
    with pytest.raises(UserError, match="delay_s"):
        t.set_placement("store", {"failback": {"delay_s": "soon"}})
    assert len(deployed) == 1
    t._off.add("store1")  # powered off at the lift: it keeps its file until the next deploy
    t.set_placement("store", None)
    assert deployed[1] == (own, ["store2"])
    t.use_spec({})
    assert len(deployed) == 2
