"""The queue drain's pure parts: the drain config (every transport to the VIP, no listener, its own
data directory, the rest of the real config kept) and the queue count."""

from __future__ import annotations

from pathlib import Path

from hacluster_lab.lab.postfix import MASTER_CF
from hacluster.spool.drain import drain_config, queued


def test_drain_config_points_every_transport_at_the_relay(tmp_path: Path) -> None:
    main = "queue_directory = /q\nvirtual_transport = virtual\ninet_interfaces = all\nmyhostname = s1\n"
    m, master = drain_config(main, MASTER_CF, "[198.51.100.20]:25", tmp_path / "data")
    conf = dict(line.split(" = ", 1) for line in m.splitlines() if " = " in line)
    assert conf["queue_directory"] == "/q" and conf["myhostname"] == "s1"
    for key in ("virtual_transport", "relay_transport", "default_transport", "local_transport"):
        assert conf[key] == "smtp:[198.51.100.20]:25"
    assert conf["inet_interfaces"] == "loopback-only" and conf["data_directory"] == str(tmp_path / "data")
    assert m.count("virtual_transport") == 1  # replaced, not appended after the original
    assert not any(line.startswith("smtp") and " inet " in line for line in master.splitlines())
    assert any(line.startswith("smtp      unix") for line in master.splitlines())  # the client stays
    assert any(line.startswith("pickup") for line in master.splitlines())


def test_queued_counts_queue_files_only(tmp_path: Path) -> None:
    (tmp_path / "deferred" / "A").mkdir(parents=True)
    (tmp_path / "deferred" / "A" / "ABC").write_text("x")
    (tmp_path / "deferred" / "A" / "ABC").chmod(0o700)
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "CUT").write_text("x")  # incomplete (0600): never delivered, not drained
    (tmp_path / "incoming" / "CUT").chmod(0o600)
    (tmp_path / "maildrop").mkdir()
    (tmp_path / "maildrop" / "D").write_text("x")
    (tmp_path / "pid").mkdir()
    (tmp_path / "pid" / "master.pid").write_text("1")
    assert queued(tmp_path) == 2


def test_drain_config_sends_virtual_mail_through_the_delivery_agent_in_drain_mode(tmp_path: Path) -> None:
    """With our delivery agent in the real master.cf, the drain routes the store's own mail through
    the same agent in drain mode (hadrain: forward unless this spool already holds it)."""
    from hacluster_lab.lab.postfix import deliver_service

    master_cf = MASTER_CF + deliver_service(tmp_path / "mail", tmp_path / "deliver.log", python="/usr/bin/python3",
                                            lib_dir=tmp_path / "lib")
    main = "queue_directory = /q\nvirtual_transport = hadeliver\n"
    m, master = drain_config(main, master_cf, "[198.51.100.20]:25", tmp_path / "data")
    conf = dict(line.split(" = ", 1) for line in m.splitlines() if " = " in line)
    assert conf["virtual_transport"] == "hadrain" and conf["hadrain_destination_recipient_limit"] == "1"
    assert conf["relay_transport"] == "smtp:[198.51.100.20]:25"
    lines = master.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("hadrain "))
    assert " pipe" in lines[i]
    entry = lines[i + 1]
    assert "user=nobody" in entry and "flags=u " in entry  # no Delivered-To/Return-Path: passed on, not delivered
    assert entry.endswith("--forward [198.51.100.20]:25 --sender=${sender} --recipient=${recipient}")
    assert f"--base {tmp_path / 'mail'} --mailbox ${{user}}" in entry
    # the real entry is kept too (unused by the drain's transports, harmless)
    assert any(ln.startswith("hadeliver ") for ln in lines)


def test_drain_service_absent_without_our_delivery_agent() -> None:
    from hacluster.spool.drain import drain_service

    assert drain_service(MASTER_CF, "[198.51.100.20]:25") is None
    odd = MASTER_CF + "hadeliver unix - n n - - pipe\n  flags=DRXu user=nobody argv=/usr/bin/procmail\n"
    assert drain_service(odd, "[198.51.100.20]:25") is None  # not our agent: plain SMTP as before
