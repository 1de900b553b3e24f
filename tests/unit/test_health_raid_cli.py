"""`hacluster raid status` through the real entry point: output, JSON shape and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hacluster.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mdstat"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["raid", "status", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "fixture,code",
    [
        ("procfs-many-arrays.mdstat", 1),
        ("raid1-degraded-faulty.mdstat", 1),
        ("raid1-recovering.mdstat", 1),
        ("raid5-degraded.mdstat", 1),
    ],
)
def test_exit_code_per_fixture(capsys, fixture: str, code: int) -> None:
    assert run(capsys, "--mdstat", str(FIXTURES / fixture))[0] == code


def test_clean_array_exits_0(capsys, tmp_path: Path) -> None:
    f = tmp_path / "mdstat"
    f.write_text("Personalities : [raid1]\nmd0 : active raid1 a[0] b[1]\n      100 blocks [2/2] [UU]\n\nunused devices: <none>\n")
    code, out, err = run(capsys, "--mdstat", str(f))
    assert code == 0 and err == ""
    assert out.splitlines()[1].split() == ["md0", "raid1", "clean", "2/2", "-", "-", "-"]


def test_no_arrays_exits_0(capsys, tmp_path: Path) -> None:
    f = tmp_path / "mdstat"
    f.write_text("Personalities : \nunused devices: <none>\n")
    assert run(capsys, "--mdstat", str(f))[:2] == (0, "no md arrays\n")


def test_json_shape(capsys) -> None:
    code, out, err = run(capsys, "--mdstat", str(FIXTURES / "raid1-recovering.mdstat"), "--json")
    assert code == 1
    assert json.loads(out) == {"arrays": [{
        "name": "md0", "level": "raid1", "state": "recovering", "disks_total": 2, "disks_active": 1,
        "failed_devices": [], "spare_devices": [], "progress_pct": 6.6}]}
    assert err == "hacluster: 1 of 1 arrays not clean: md0 recovering\n"


def test_mdstat_and_detail_merge(capsys) -> None:
    code, out, _ = run(capsys, "--mdstat", str(FIXTURES / "raid1-degraded-faulty.mdstat"),
                       "--mdadm-detail", str(FIXTURES / "mdadm-detail-degraded.txt"), "--json")
    assert code == 1
    assert [(a["name"], a["state"]) for a in json.loads(out)["arrays"]] == [("md0", "clean"), ("md1", "degraded")]


def test_detail_only_does_not_read_proc(capsys) -> None:
    code, out, _ = run(capsys, "--mdadm-detail", str(FIXTURES / "mdadm-detail-degraded.txt"))
    assert code == 1 and out.splitlines()[1].split()[:3] == ["md1", "raid1", "degraded"]


def test_unreadable_exits_2(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "--mdstat", str(tmp_path / "missing"))
    assert (code, out) == (2, "")
    assert err == f"hacluster: cannot read {tmp_path / 'missing'}: No such file or directory\n"


def test_malformed_exits_2_naming_file_and_line(capsys, tmp_path: Path) -> None:
    f = tmp_path / "mdstat"
    f.write_text("Personalities : [raid1]\nmd0 : active raid1 a[0]\n      many blocks\n")
    code, out, err = run(capsys, "--mdstat", str(f))
    assert (code, out) == (2, "")
    assert err == f"hacluster: {f}:3: expected '<N> blocks ...' for md0: 'many blocks'\n"
