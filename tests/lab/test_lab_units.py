"""Pure parts of the lab: the plan from a spec, generated configs, the main.cf edit, nft rules,
and the invariant monitor's bookkeeping (no namespaces needed)."""

from __future__ import annotations

import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from hacluster.errors import UserError
from hacluster_lab.lab import nftrules
from hacluster_lab.lab.dns import dnsmasq_conf
from hacluster_lab.lab.monitor import Snapshot, Tracker
from hacluster_lab.lab.postfix import main_cf, register_config_dirs, unregister_config_dirs, write_instance
from hacluster_lab.lab.state import LabOptions, LabPaths
from hacluster_lab.lab.topology import build_plan
from hacluster.resources.base import OCF
from hacluster.resources.mta import MtaResource
from hacluster.spec import default_spec_text, load_spec, parse_spec


def test_plan_from_default_spec() -> None:
    plan = build_plan(load_spec(None), "hcl-")
    names = plan.names()
    assert names[0] == "router"
    assert set(names) == {"router", "relay1", "relay2", "fallback", "store1", "store2", "client", "dns", "zk1", "zk2", "zk3"}
    zk = plan.of_kind("zk")
    assert [(h.name, h.address, h.zk_port) for h in zk] == [
        ("zk1", "198.51.100.31", 2181), ("zk2", "198.51.100.32", 2181), ("zk3", "198.51.100.33", 2181)]
    client = plan.host("client")
    assert [str(a) for a in client.addresses] == ["203.0.113.10/24", "fd00:113::10/64"]
    assert str(client.gateway4) == "203.0.113.1" and str(client.gateway6) == "fd00:113::1"
    assert {v.ip for v in plan.vips} == {"198.51.100.20", "fd00:51::20"}
    assert all(len(h.peer) <= 15 for h in plan.hosts)
    assert len({h.mac for h in plan.hosts}) == len(plan.hosts)


def test_plan_refuses_addresses_outside_documentation_ranges(tmp_path: Path) -> None:
    text = default_spec_text().replace("192.0.2.12/24", "10.1.2.3/24")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "10.1.2.3" in ln)
    with pytest.raises(UserError) as err:
        build_plan(parse_spec(text, "x.yml"), text=text)
    assert f"x.yml:{line}: nodes.relay2.addresses: 10.1.2.3 is outside the lab's allowed ranges" in str(err.value)
    # the CLI says the same in one line, exit 2, before touching anything
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    res = subprocess.run([sys.executable, "-m", "hacluster", "lab", "up", "--spec", str(bad), "--state-dir",
                          str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip() == (f"hacluster: {bad}:{line}: nodes.relay2.addresses: 10.1.2.3 is outside the lab's "
                                  "allowed ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, fd00::/8)")
    assert not (tmp_path / "state").exists()


def test_plan_needs_lab_section_and_reserved_names() -> None:
    text = default_spec_text()
    no_lab = text[: text.index("\nlab:")] + "\n"
    with pytest.raises(UserError, match="lab: section missing"):
        build_plan(parse_spec(no_lab, "y.yml"))
    with pytest.raises(UserError, match="reserved"):
        build_plan(parse_spec(text.replace("name: relay2", "name: client"), "z.yml"))


def test_postfix_configs_by_kind(tmp_path: Path) -> None:
    plan = build_plan(load_spec(None))
    paths = LabPaths(tmp_path)
    relay = main_cf(plan.host("relay1"), plan, paths, LabOptions())
    assert "relay_domains = lab.example" in relay
    assert "smtp_fallback_relay = [192.0.2.13]:25" in relay
    assert f"transport_maps = texthash:{tmp_path}/nodes/relay1/postfix/transport" in relay
    assert f"maillog_file = {tmp_path}/nodes/relay1/maillog" in relay
    assert str(tmp_path) in relay.split("maillog_file_prefixes = ")[1].splitlines()[0]
    fallback = main_cf(plan.host("fallback"), plan, paths, LabOptions())
    assert "smtp_fallback_relay = \n" in fallback  # no loop back to itself
    store = main_cf(plan.host("store1"), plan, paths, LabOptions(shared_spool=True))
    assert "virtual_mailbox_domains = lab.example" in store
    assert f"virtual_mailbox_base = {tmp_path}/spool/mail" in store
    # delivery goes through our agent (duplicate suppression), one recipient per call
    assert "virtual_transport = hadeliver" in store and "hadeliver_destination_recipient_limit = 1" in store
    assert "virtual_transport" not in relay
    client = main_cf(plan.host("client"), plan, paths, LabOptions())
    assert "inet_interfaces = loopback-only" in client and "relay_domains" not in client


def test_maillog_is_writable_by_mail_owner(tmp_path: Path) -> None:
    """postsuper logs as mail_owner and opens maillog_file itself while postlogd is not up: a
    root-only maillog made `postfix start` fatal after a shared-spool takeover (bench no-loss)."""
    plan = build_plan(load_spec(None))
    paths = LabPaths(tmp_path)
    write_instance(plan.host("store1"), plan, paths, LabOptions(shared_spool=True, spool_mode="shared"))
    st = paths.maillog("store1").stat()
    assert st.st_uid == pwd.getpwnam("postfix").pw_uid and st.st_mode & 0o200


def test_dnsmasq_zone_has_mx_by_preference(tmp_path: Path) -> None:
    spec = load_spec(None)
    conf = dnsmasq_conf(spec, build_plan(spec), tmp_path / "log")
    assert "mx-host=lab.example,relay1.lab.example,10" in conf
    assert "mx-host=lab.example,relay2.lab.example,20" in conf
    assert "host-record=relay1.lab.example,192.0.2.11,fd00:2::11" in conf
    assert "no-resolv" in conf  # no upstream: a lookup never leaves the lab


def test_main_cf_block_round_trip(tmp_path: Path) -> None:
    main = tmp_path / "main.cf"
    original = "myhostname = vm\nalternate_config_directories = /etc/postfix-out\n"
    main.write_text(original)
    state, backup = Path("/run/hacluster-lab-x"), tmp_path / "main.cf.orig"
    register_config_dirs([Path("/a/postfix"), Path("/b/postfix")], state, backup, main)
    text = main.read_text()
    assert "alternate_config_directories = /etc/postfix-out, /a/postfix, /b/postfix" in text
    register_config_dirs([Path("/a/postfix")], state, backup, main)  # again: replaces, not appends
    assert main.read_text().count("BEGIN hacluster-lab") == 1
    assert unregister_config_dirs(state, backup, main) is True
    assert main.read_text() == original
    assert unregister_config_dirs(state, backup, main) is False  # idempotent


def test_main_cf_block_removed_without_backup(tmp_path: Path) -> None:
    """Crash recovery: the state dir (and the backup) are gone, the markers still find the block."""
    main = tmp_path / "main.cf"
    original = "biff = no"  # no trailing newline
    main.write_text(original)
    state = Path("/run/hacluster-lab-y")
    register_config_dirs([Path("/a")], state, tmp_path / "orig", main)
    (tmp_path / "orig").unlink()
    unregister_config_dirs(state, None, main)
    assert main.read_text().strip() == original


def test_main_cf_absent_is_created_and_removed_again(tmp_path: Path) -> None:
    """Debian's "No configuration" writes no main.cf: register creates one (the setgid tools and
    the OCF postfix agent check the list), and the last unregister restores "absent"."""
    main = tmp_path / "postfix" / "main.cf"
    register_config_dirs([Path("/a/postfix")], Path("/run/lab-a"), tmp_path / "orig-a", main)
    assert "alternate_config_directories = /a/postfix" in main.read_text()
    assert not (tmp_path / "orig-a").exists()  # nothing to back up: the original is "absent"
    register_config_dirs([Path("/b/postfix")], Path("/run/lab-b"), None, main)  # a second user
    assert unregister_config_dirs(Path("/run/lab-a"), tmp_path / "orig-a", main) is True
    assert main.exists() and "/b/postfix" in main.read_text() and "/a/postfix" not in main.read_text()
    assert unregister_config_dirs(Path("/run/lab-b"), None, main) is True
    assert not main.exists()
    assert unregister_config_dirs(Path("/run/lab-b"), None, main) is False  # idempotent


def test_main_cf_that_existed_empty_is_kept(tmp_path: Path) -> None:
    main = tmp_path / "main.cf"
    main.write_text("")
    register_config_dirs([Path("/a")], Path("/run/lab-a"), tmp_path / "orig", main)
    unregister_config_dirs(Path("/run/lab-a"), tmp_path / "orig", main)
    assert main.exists() and main.read_text() == ""


def test_nft_rulesets_are_valid() -> None:
    plan = build_plan(load_spec(None))
    for text in (nftrules.isolate_ruleset(), nftrules.partition_ruleset(plan.host("store2"))):
        # -c: parse and check only, nothing is applied
        proc = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    rules = nftrules.partition_ruleset(plan.host("store2"))
    assert "ether saddr 02:00:c6:33:64:0c drop" in rules and "198.51.100.12" in rules and "fd00:51::12" in rules
    present = nftrules.present_tables("table inet hcl_isolate\ntable ip filter\ntable arp hcl_isolate\n")
    assert nftrules.delete_ruleset(present) == "delete table inet hcl_isolate\ndelete table arp hcl_isolate\n"


def _snap(t: float, holders: dict[str, str], neigh: str | None = None) -> Snapshot:
    vip = "198.51.100.20"
    return Snapshot(t, {vip: dict(holders)}, {vip: neigh})


def test_tracker_dual_holders_and_moves() -> None:
    tr = Tracker(("198.51.100.20",))
    a, b = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
    tr.observe(_snap(1.000, {"store1": a}, a))
    tr.observe(_snap(1.005, {"store1": a, "store2": b}, a))  # both: the one thing that must not happen
    tr.observe(_snap(1.010, {"store1": a, "store2": b}, a))
    tr.observe(_snap(1.015, {"store2": b}, a))  # move store1 -> store2; ARP still old
    tr.observe(_snap(1.020, {"store2": b}, b))  # router follows
    tr.observe(_snap(1.025, {}, b))
    tr.observe(_snap(1.030, {"store1": a}, b))
    rep = tr.finish()
    assert rep.dual_holder_samples == 2
    assert rep.dual_holder_intervals == [{"vip": "198.51.100.20", "holders": ["store1", "store2"], "t_start": 1.005,
                                          "t_end": 1.015, "samples": 2}]
    m1, m2 = rep.moves
    assert (m1["from"], m1["to"], m1["t_vip"], m1["t_arp"]) == ("store1", "store2", 1.015, 1.020)
    assert m1["arp_s"] == pytest.approx(0.005)
    assert (m2["from"], m2["to"], m2["t_from_lost"], m2["t_arp"]) == ("store2", "store1", 1.025, None)
    assert rep.samples == 7 and rep.max_gap_s == pytest.approx(0.005)
    assert rep.initial == {"198.51.100.20": ["store1"]} and rep.final == {"198.51.100.20": ["store1"]}


def test_tracker_single_holder_is_clean() -> None:
    tr = Tracker(("198.51.100.20",))
    for i in range(100):
        tr.observe(_snap(i * 0.005, {"store1": "02:00:00:00:00:0a"}))
    rep = tr.finish()
    assert rep.dual_holder_samples == 0 and rep.moves == [] and rep.samples == 100


def test_mta_resource_reports_missing_config(tmp_path: Path) -> None:
    res = MtaResource("postfix", tmp_path / "nope")
    assert res.monitor() == OCF.ERR_CONFIGURED
    assert res.start() == OCF.ERR_CONFIGURED


def test_mta_factory_names_bad_params() -> None:
    from hacluster.resources.factory import ResourceContext, build_resources

    spec = load_spec(None)
    role = spec.roles["store"]
    ctx = ResourceContext(spec, role, spec.nodes["store1"], Path("/run/x/store1"))
    mta = next(r for r in build_resources(ctx) if isinstance(r, MtaResource))
    assert mta.config_dir == Path("/run/x/store1/postfix")  # {state_dir} expanded
    bad = parse_spec(default_spec_text().replace('config_dir: "{state_dir}/postfix"}   #',
                                                 'config_dir: "{state_dir}/postfix", kind: exim}   #'), "k.yml")
    with pytest.raises(UserError, match=r"k.yml: roles.store.resources\[postfix\].kind: unsupported MTA kind 'exim'"):
        build_resources(ResourceContext(bad, bad.roles["store"], bad.nodes["store1"], Path("/run/x")))
