"""Pure parts of the fast takeover and of `bench failover`: the role's `run_on_standby` in the
spec, the MTA's start on the takeover path, and the bench's per-trial observer and summaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacluster_lab.bench.failover import FirstSeen, agent_deciding, ratio, targets
from hacluster.errors import UserError
from hacluster_lab.lab.monitor import Snapshot
from hacluster.resources.base import OCF
from hacluster.resources.mta import MtaResource
from hacluster.spec import load_spec, parse_spec

SPEC = """\
cluster: t
zookeeper: {{hosts: ["127.0.0.1:2181"]}}
roles:
  store:
    tier: store
    vip: {{address: 198.51.100.20/24, interface: eth0}}
    resources:
      - {{type: mta, name: postfix}}
      - {{type: command, name: cmd, start: "true", stop: "true"}}
{extra}
nodes:
  - {{name: s1, tier: store, interface: eth0, addresses: [198.51.100.11/24]}}
"""


def spec_with(extra: str):
    return parse_spec(SPEC.format(extra=extra), "c.yml")


def test_run_on_standby_names_resources_of_the_role() -> None:
    assert spec_with("    run_on_standby: [postfix, cmd]").roles["store"].run_on_standby == {"postfix", "cmd"}
    assert spec_with("").roles["store"].run_on_standby == frozenset()


@pytest.mark.parametrize("extra, msg", [
    ("    run_on_standby: [nope]", "no resource named 'nope'"),
    ("    run_on_standby: [store-vip]", "'store-vip' is a vip resource: it may only run on the holder"),
    ("    run_on_standby: postfix", "must be a list of resource names"),
])
def test_run_on_standby_errors_name_file_line_and_field(extra: str, msg: str) -> None:
    with pytest.raises(UserError) as err:
        spec_with(extra)
    assert "c.yml:10: roles.store.run_on_standby" in str(err.value) and msg in str(err.value), str(err.value)


def test_embedded_lab_keeps_postfix_on_the_standby() -> None:
    assert load_spec(None).roles["store"].run_on_standby == {"postfix"}


def test_standby_mta_start_is_a_pid_file_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the takeover path a running standby instance is confirmed without `postfix status`."""
    conf = tmp_path / "postfix"
    conf.mkdir()
    (conf / "main.cf").write_text("")
    res = MtaResource("postfix", conf, standby_running=True)
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(res, "master_pid", lambda: 4242)
    monkeypatch.setattr(res, "_run", lambda *a, **kw: calls.append(a))
    monkeypatch.setattr("shutil.which", lambda _: "/usr/sbin/postfix")
    assert res.start() == OCF.SUCCESS and calls == []
    plain = MtaResource("postfix", conf)
    monkeypatch.setattr(plain, "master_pid", lambda: 4242)
    monkeypatch.setattr(plain, "monitor", lambda: calls.append(("status",)) or OCF.SUCCESS)
    assert plain.start() == OCF.SUCCESS and calls == [("status",)]


def snap(t: float, holders: dict[str, str], neigh: str | None) -> Snapshot:
    return Snapshot(t, {"198.51.100.20": holders}, {"198.51.100.20": neigh})


def test_first_seen_with_one_holder_then_the_other() -> None:
    fs = FirstSeen("198.51.100.20", "store1")
    for s in (snap(1.0, {"store1": "m1"}, "m1"), snap(1.1, {}, "m1"), snap(1.2, {"store2": "m2"}, "m1"),
              snap(1.3, {"store2": "m2"}, "m2"), snap(1.4, {"store2": "m2"}, "m2")):
        fs.observe(s)
    assert (fs.t_vip, fs.to, fs.mac, fs.t_arp) == (1.2, "store2", "m2", 1.3)


def test_first_seen_counts_a_new_holder_beside_the_stale_one() -> None:
    """keepalived after kill -9: the old node keeps the VIP; the new holder is still seen."""
    fs = FirstSeen("198.51.100.20", "store1")
    fs.observe(snap(1.0, {"store1": "m1"}, "m1"))
    fs.observe(snap(2.0, {"store1": "m1", "store2": "m2"}, "m1"))
    fs.observe(snap(2.1, {"store1": "m1", "store2": "m2"}, "m2"))
    assert (fs.t_vip, fs.to, fs.t_arp) == (2.0, "store2", 2.1)


def test_first_seen_ignores_the_neighbour_entry_before_the_move() -> None:
    fs = FirstSeen("198.51.100.20", "store1")
    fs.observe(snap(1.0, {"store1": "m1"}, "m2"))  # an old entry for store2's MAC from an earlier run
    assert fs.t_arp is None and fs.t_vip is None


def test_ratio_and_targets() -> None:
    assert ratio({"p50": 0.9}, {"p50": 3.0}) == 0.3
    assert ratio({}, {"p50": 3.0}) is None and ratio({"p50": 1.0}, {}) is None
    res = {"hacluster": {"to_smtp_s": {"p50": 0.95, "p95": 1.2, "max": 2.1}, "dual_holder_samples": 0},
           "ratio_smtp_p50": 0.31}
    assert targets(res) == {"to_smtp_p50_le_1s": True, "to_smtp_max_le_2s": False, "ratio_smtp_p50_le_0.4": True,
                            "hacluster_dual_holder_samples_0": True}
    assert targets({"hacluster": {"to_smtp_s": {}, "dual_holder_samples": 3}})["ratio_smtp_p50_le_0.4"] is None


def test_warm_keeper_opens_an_smtp_session_and_quits(tmp_path: Path) -> None:
    """The standby's Postfix is kept warm: banner read, QUIT sent (so smtpd goes back to idle)."""
    import socket
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"220 test ESMTP\r\n")
            got.append(conn.recv(64))
            conn.sendall(b"221 bye\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    res = MtaResource("postfix", tmp_path, standby_running=True, warm_address=f"127.0.0.1:{srv.getsockname()[1]}")
    assert res.warm_once() is True
    t.join(2)
    srv.close()
    assert got == [b"QUIT\r\n"]
    assert res.warm_once(timeout=0.5) is False  # nobody listens any more: False, no exception


@pytest.mark.parametrize("value, msg", [("nope", "must be HOST:PORT"), ("h:0", "must be HOST:PORT"), (25, "HOST:PORT or")])
def test_warm_address_errors_name_the_field(value: object, msg: str) -> None:
    from types import SimpleNamespace

    from hacluster.resources.mta import build
    from hacluster.spec import ResourceSpec

    ctx = SimpleNamespace(spec=SimpleNamespace(source="c.yml"), role=SimpleNamespace(name="store"))
    with pytest.raises(UserError) as err:
        build(ResourceSpec("mta", "postfix", {}), {"warm_address": value}, ctx)
    assert str(err.value).startswith("c.yml: roles.store.resources[postfix].warm_address: ") and msg in str(err.value)
    assert build(ResourceSpec("mta", "postfix", {}), {"warm_address": ""}, ctx).warm_address is None


def test_a_restarted_agent_counts_as_ready_once_it_decides() -> None:
    log = "2026 INFO agent store1 up: tier store\n2026 INFO store1 store: standby resource postfix running\n"
    assert not agent_deciding(log, "store1")
    assert agent_deciding(log + "2026 INFO store1 store: wait (holder store2 term 4, unchanged for 0.02s)\n", "store1")
    assert not agent_deciding("2026 INFO store2 store: wait (holder store1 term 4)\n", "store1")


def test_keepalived_conf_tuned_below_a_second_is_vrrp3() -> None:
    from hacluster_lab.bench.keepalived import conf

    default = conf("store1", "eth0", 100, "198.51.100.20/24")
    assert "advert_int 1\n" in default and "version 3" not in default
    tuned = conf("store1", "eth0", 100, "198.51.100.20/24", 0.1)
    assert "    version 3\n    advert_int 0.1\n" in tuned
    for bad in (0.005, 0.125, 300):
        with pytest.raises(ValueError):
            conf("store1", "eth0", 100, "198.51.100.20/24", bad)


def test_keepalived_advert_option_rejects_what_vrrp_cannot_send(capsys: pytest.CaptureFixture[str]) -> None:
    from hacluster.cli import main

    assert main(["bench", "failover", "--vs", "keepalived", "--keepalived-advert", "0.125"]) == 2
    assert "whole centiseconds" in capsys.readouterr().err
