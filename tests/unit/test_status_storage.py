"""`hacluster status`'s RAID and spool section from the members' published check results (pure):
simulated RAID flagged, nodes without either check left out, a spec without them told how to add."""

from __future__ import annotations

from typing import Any

import pytest

from hacluster.operator.client import _print_storage, storage_of
from hacluster.spec import default_spec_text, parse_spec
from hacluster.http.web import raid_view


def member(health: dict[str, Any]) -> dict[str, Any]:
    return {"health": health}


RAID = {"severity": "warn", "ok": True, "detail": "md0 clean, md1 degraded",
        "data": {"path": "/run/x/mdstat", "simulated": True, "arrays": [], "degraded": ["md1"]}}
SPOOL = {"severity": "ok", "ok": True, "detail": "/run/x/mail: writable, 30.0% free", "data": {"path": "/run/x/mail"}}


def test_storage_rows_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    spec = parse_spec(default_spec_text(), "t.yml")
    st = storage_of(spec, {"store1": member({"raid": RAID, "spool": SPOOL}), "store2": None,
                           "relay1": member({"queue": {"severity": "ok"}})})
    assert st == {"storage": {"store1": {
        "raid": {"severity": "warn", "ok": True, "detail": "md0 clean, md1 degraded", "path": "/run/x/mdstat",
                 "simulated": True},
        "spool": {"severity": "ok", "ok": True, "detail": "/run/x/mail: writable, 30.0% free", "path": "/run/x/mail"}}}}
    _print_storage(st)
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("STORAGE") and "simulated mdstat files" in out[1]
    assert out[2] == "store1      RAID   warn   md0 clean, md1 degraded [simulated]"
    assert out[3] == "            spool  ok     /run/x/mail: writable, 30.0% free"
    assert raid_view({"raid": RAID})["simulated"] is True
    assert raid_view({"raid": {**RAID, "data": {}}})["simulated"] is False


def test_a_real_raid_is_not_flagged_and_none_reported_says_how(capsys: pytest.CaptureFixture[str]) -> None:
    spec = parse_spec(default_spec_text(), "t.yml")
    real = {**RAID, "data": {"path": "/proc/mdstat", "simulated": False}}
    _print_storage(storage_of(spec, {"store1": member({"raid": real})}))
    out = capsys.readouterr().out
    assert "simulated" not in out and "store1      RAID   warn" in out
    _print_storage(storage_of(spec, {}))
    assert "RAID and spool: not reported (add `- {check: raid}`" in capsys.readouterr().out
