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


def test_stores_serve_imap_over_their_maildirs_others_do_not() -> None:
    """Dovecot on each store (the namespace lab's config renderer), over the Maildir base Postfix
    delivers into, listening on every address so the VIP answers from whichever store holds it."""
    ms = _machines()
    for store in ("store1", "store2"):
        conf = ms[store].files["/etc/hacluster-lab/dovecot.conf"]
        assert "mail_location = maildir:/var/mail/%n\n" in conf and "listen = *\n" in conf
        assert "mail_uid = 65534\n" in conf  # the delivery agent's user owns the Maildirs
        assert "ExecStart=/usr/sbin/dovecot -F -c /etc/hacluster-lab/dovecot.conf" in ms[store].files[
            "/etc/systemd/system/hacluster-lab-imap.service"]
        assert "systemctl restart hacluster-lab-imap" in ms[store].commands
        assert any(c.startswith("[ -s /var/lib/hacluster-lab/dovecot/cert.pem ] || openssl req") for c in ms[store].commands)
    for other in ("relay1", "relay2", "fallback", "client"):
        assert not any("dovecot" in f for f in ms[other].files)


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


def test_stores_deliver_through_the_namespace_labs_delivery_agent() -> None:
    """relay1-down's duplicate on the machines: virtual(8) stored a message relay1 sent again after
    its power cut; the stores now deliver through `hadeliver` (duplicate suppression), as the
    namespace lab's do -- the same main.cf lines and the same master.cf entry."""
    from hacluster_lab.lab.postfix import deliver_main_cf

    for store in ("store1", "store2"):
        m = _machines()[store]
        for k, v in deliver_main_cf().items():
            assert m.settings[k] == v
        assert m.settings["virtual_transport"] == "hadeliver"
        postconf_m = next(c for c in m.commands if c.startswith("postconf -M "))
        assert "hadeliver/unix=hadeliver unix - n n - - pipe flags=DRXu user=nobody argv=" in postconf_m
        assert "-m hacluster.spool.deliver --base /var/mail --mailbox ${user}" in postconf_m
        assert "/usr/local/lib/hacluster-deliver/hacluster/spool/deliver.py" in m.files
    assert "virtual_transport" not in _machines()["relay1"].settings


def test_the_master_entry_applies_with_postconf(tmp_path: Path) -> None:
    """The store's `postconf -M` command, run on a copy of Debian's master.cf, leaves the service
    as the namespace lab renders it (paths aside)."""
    import re
    import shutil

    conf = tmp_path / "etc"
    conf.mkdir()
    shutil.copy("/etc/postfix/master.cf", conf / "master.cf")
    (conf / "main.cf").write_text("")
    cmd = next(c for c in _machines()["store1"].commands if c.startswith("postconf -M "))
    subprocess.run(cmd.replace("postconf -M ", f"postconf -c {conf} -M ", 1), shell=True, check=True, timeout=30)
    got = subprocess.run(["postconf", "-c", str(conf), "-M", "hadeliver/unix"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert re.match(r"^hadeliver\s+unix\s+-\s+n\s+n\s+-\s+-\s+pipe flags=DRXu user=nobody argv=/usr/bin/env "
                    r"PYTHONPATH=/usr/local/lib/hacluster-deliver /usr/bin/python3 -m hacluster.spool.deliver "
                    r"--base /var/mail --mailbox \$\{user\} --log /var/log/hacluster-deliver.log$", got.strip()), got
    assert "smtp      inet" in (conf / "master.cf").read_text()  # Debian's services are kept


def test_the_staged_agent_suppresses_a_second_copy(tmp_path: Path) -> None:
    """The files a store gets are a working delivery agent on their own (stdlib only): the same
    message twice lands once."""
    lib, base = tmp_path / "lib", tmp_path / "mail"
    base.mkdir()
    m = _machines()["store1"]
    for path, text in m.files.items():
        if path.startswith("/usr/local/lib/hacluster-deliver/"):
            dest = lib / path.removeprefix("/usr/local/lib/hacluster-deliver/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
    msg = b"Message-ID: <dup-1@lab.example>\nSubject: x\n\nbody\n"
    outs = [subprocess.run(["/usr/bin/python3", "-m", "hacluster.spool.deliver", "--base", str(base), "--mailbox", "user"],
                           input=msg, capture_output=True, env={"PYTHONPATH": str(lib)}, timeout=30, cwd=tmp_path)
            for _ in range(2)]
    assert [o.returncode for o in outs] == [0, 0], outs
    assert outs[1].stdout.startswith(b"duplicate suppressed"), outs[1].stdout
    assert len(list((base / "user" / "new").iterdir())) == 1
