"""An operator command finds the embedded lab only from its `up` record, and only while the
record, its namespace and its spec are all there (hacluster.lab_access)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hacluster import lab_access
from hacluster.lab_access import LabAccess, find_lab, record


@pytest.fixture
def lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    netns_dir = tmp_path / "netns"
    netns_dir.mkdir()
    (netns_dir / "hcl-router").touch()
    monkeypatch.setattr(lab_access, "NETNS_DIR", netns_dir)
    state = tmp_path / "lab"
    state.mkdir()
    (state / "spec.yml").write_text("cluster: {name: lab}\n")
    return state


def _write(state: Path, **rec: object) -> None:
    (state / "lab.json").write_text(json.dumps(rec))


def test_an_up_lab_is_found(lab_dir: Path) -> None:
    _write(lab_dir, status="up", operator=record("hcl-router", lab_dir / "spec.yml"))
    assert find_lab(lab_dir) == LabAccess(lab_dir, "hcl-router", lab_dir / "spec.yml")


@pytest.mark.parametrize("rec", [
    {},  # no record at all is below: this is a record without the entry
    {"status": "starting", "operator": {"netns": "hcl-router", "config": "SPEC"}},  # not up yet
    {"status": "up", "operator": {"netns": "hcl-gone", "config": "SPEC"}},  # its namespace is gone
    {"status": "up", "operator": {"netns": "hcl-router", "config": "/nonexistent/spec.yml"}},
    {"status": "up", "operator": {"netns": "../../etc/x", "config": "SPEC"}},  # not a namespace name
    {"status": "up", "operator": ["hcl-router"]},  # scribbled
])
def test_anything_less_is_not_a_lab(lab_dir: Path, rec: dict) -> None:
    text = json.dumps(rec).replace("SPEC", str(lab_dir / "spec.yml"))
    (lab_dir / "lab.json").write_text(text)
    assert find_lab(lab_dir) is None


def test_no_record_or_bad_json(lab_dir: Path, tmp_path: Path) -> None:
    assert find_lab(tmp_path / "nothing") is None
    (lab_dir / "lab.json").write_text("{not json")
    assert find_lab(lab_dir) is None


def test_joining_the_lab_without_the_right_is_one_clear_line(lab_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    from hacluster import config_path
    from hacluster.errors import UserError

    _write(lab_dir, status="up", operator=record("hcl-router", lab_dir / "spec.yml"))
    monkeypatch.setattr(lab_access, "lab_state_dir", lambda: lab_dir)
    monkeypatch.setattr(config_path, "DEFAULT_PATH", tmp_path / "absent.yml")

    def refuse(_: LabAccess) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(lab_access, "enter", refuse)
    with pytest.raises(UserError, match="joining it failed .Operation not permitted.: run this as root"):
        config_path.resolve_or_lab(None, environ={})
