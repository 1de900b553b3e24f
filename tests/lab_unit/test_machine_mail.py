"""The Vagrant lab's mail path (hacluster_lab.lab.machine_mail): what each machine gets, rendered from
the same functions as the namespace lab's Postfix instances, and the lab DNS on the client."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hacluster.deploy.inventory import load_inventory
from hacluster_lab.lab.machine_mail import plan
from hacluster_lab.lab.postfix import main_cf
from hacluster_lab.lab.state import LabOptions, LabPaths
from hacluster_lab.lab.topology import build_plan
from hacluster.spec import default_spec_path, load_spec

VAGRANT = Path(__file__).resolve().parents[2] / "vagrant"


def _machines() -> dict:
    return {m.host: m for m in plan(load_spec(VAGRANT / "cluster.yml"), load_inventory(VAGRANT / "inventory.yml"))}


def test_relays_relay_the_domain_to_the_store_vip_with_the_fallback_behind() -> None:
    ms = _machines()
    for relay in ("relay1", "relay2"):
        s = ms[relay].settings
        assert s["relay_domains"] == "lab.example"
        assert s["transport_maps"] == "texthash:/etc/postfix/transport"
        assert s["smtp_fallback_relay"] == "[192.0.2.13]:25"
        assert ms[relay].files["/etc/postfix/transport"] == "lab.example smtp:[198.51.100.20]:25\n"
        assert "systemctl restart postfix" in ms[relay].commands  # the system service on relays


def test_fallback_queues_for_the_vip_and_stores_deliver_to_maildir() -> None:
    ms = _machines()
    fb = ms["fallback"]
    assert fb.settings["smtp_fallback_relay"] == ""  # the last resort keeps its queue
    assert fb.files["/etc/postfix/transport"] == "lab.example smtp:[198.51.100.20]:25\n"
    for store in ("store1", "store2"):
        s = ms[store].settings
        assert s["virtual_mailbox_domains"] == "lab.example"
        assert s["virtual_mailbox_base"] == "/var/mail"
        assert "user@lab.example user/\n" in ms[store].files["/etc/postfix/vmailbox"]
        # the agent starts the stores' and the fallback's Postfix (cluster.yml's mta resource)
        assert any("disable" in c and "postfix" in c for c in ms[store].commands)
    assert not {"zk1", "zk2", "zk3"} & set(ms)  # ZooKeeper machines carry no mail


def test_client_serves_mx_10_relay1_and_mx_20_relay2() -> None:
    dns = _machines()["client"].files["/etc/hacluster-lab/dnsmasq.conf"]
    assert "mx-host=lab.example,relay1.lab.example,10\n" in dns
    assert "mx-host=lab.example,relay2.lab.example,20\n" in dns
    assert "host-record=relay2.lab.example,192.0.2.12\n" in dns
    assert "listen-address=203.0.113.10\n" in dns
    assert "no-resolv\n" in dns  # no upstream: no lookup leaves the lab


def test_one_source_with_the_namespace_lab(tmp_path: Path) -> None:
    """Every routing and timer setting a machine gets is what the namespace lab's instance of the
    same kind has (paths aside): a change to the renderer changes both labs."""
    spec = load_spec(default_spec_path())
    lab_plan = build_plan(spec)
    paths, opts = LabPaths(tmp_path), LabOptions()
    ms = _machines()
    path_keys = {"transport_maps", "virtual_mailbox_base", "virtual_mailbox_maps", "myhostname"}
    for name in ("relay1", "fallback", "store1", "client"):
        ns_cf = dict(ln.split(" = ", 1) for ln in main_cf(lab_plan.host(name), lab_plan, paths, opts).splitlines())
        for k, v in ms[name].settings.items():
            if k not in path_keys:
                assert ns_cf.get(k) == v, (name, k)


def test_script_is_valid_shell_and_writes_files_before_postconf() -> None:
    script = _machines()["relay1"].script()
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert script.index("/etc/postfix/transport") < script.index("postconf -e") < script.index("postfix check")
