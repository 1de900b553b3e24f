"""VIP records (what the VIP resource put on the host) and `hacluster vip cleanup`'s handling of
them without touching an interface: no record, bad node names, unreadable records. Removing real
addresses: tests/lab/test_vip.py (network namespaces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster.resources.vip_guard import Target
from hacluster.resources.vip_record import RecordError, VipRecord, read_record, record_files

T4 = Target("198.51.100.20", 24, "eth0")
T6 = Target("fd00:51::20", 64, "eth1")


def test_write_read_remove_round_trip(tmp_path: Path) -> None:
    rec = VipRecord(tmp_path, "store", "store1", "store-vip")
    rec.write([T4, T6])
    assert record_files(tmp_path) == [tmp_path / "vips" / "store.json"]
    assert read_record(rec.path) == [T4, T6]
    body = json.loads(rec.path.read_text())
    assert body["addresses"][0] == {"interface": "eth0", "address": "198.51.100.20", "prefixlen": 24}
    assert (body["node"], body["role"], body["resource"]) == ("store1", "store", "store-vip")
    rec.write([T4])  # replaced whole (rename), no temporary file left behind
    assert read_record(rec.path) == [T4] and [p.name for p in rec.path.parent.iterdir()] == ["store.json"]
    rec.remove()
    rec.remove()  # idempotent
    assert record_files(tmp_path) == [] and record_files(tmp_path / "nothing-here") == []


@pytest.mark.parametrize("text", ["", "{", '{"addresses": [{"address": "300.1.1.1", "prefixlen": 24, "interface": "e"}]}',
                                  '{"addresses": [{"address": "192.0.2.1", "prefixlen": 33, "interface": "e"}]}',
                                  '{"node": "x"}', '{"addresses": [{"address": "192.0.2.1"}]}'])
def test_unreadable_record_names_its_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(RecordError, match=rf"^{path}: not a VIP record: "):
        read_record(path)


def test_cleanup_without_records_reads_no_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vip", "cleanup", "--node", "store1", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"store1: no VIP recorded in {tmp_path / 'vips'}\n"


def test_cleanup_state_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HACLUSTER_STATE_DIR", str(tmp_path / "s"))  # what /etc/default/hacluster-agent sets
    assert main(["vip", "cleanup", "--node", "store1"]) == 0
    assert str(tmp_path / "s" / "vips") in capsys.readouterr().out


@pytest.mark.parametrize("node", ["../etc", "Store1", "", "a/b"])
def test_cleanup_bad_node_name_is_one_line_exit_2(node: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vip", "cleanup", "--node", node]) == 2
    err = capsys.readouterr().err
    assert "not a node name" in err and err.count("\n") == 1


def test_cleanup_reports_an_unreadable_record_and_keeps_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "vips" / "store.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    assert main(["vip", "cleanup", "--node", "store1", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a VIP record" in err and err.count("\n") == 1 and "Traceback" not in err
    assert bad.exists()  # evidence for the operator, not silently dropped
