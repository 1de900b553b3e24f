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
