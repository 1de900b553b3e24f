"""The systemd resource's mapping of systemctl answers to OCF codes, with a fake systemctl (a
shell script reading the state from a file); the real thing: tests/integration/test_systemd_resource.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hacluster.errors import UserError
from hacluster.resources.base import OCF
from hacluster.resources.systemd_unit import SystemdUnit, build

FAKE = """#!/bin/sh
# fake systemctl: $STATE_DIR/state is the unit's ActiveState, $STATE_DIR/load its LoadState
echo "$@" >> "{d}/calls"
shift  # --no-ask-password
case "$1" in
  is-active) cat "{d}/state"; [ "$(cat {d}/state)" = active ] ;;
  show) cat "{d}/load" ;;
  start) [ -f "{d}/fail" ] && {{ echo "Job failed" >&2; exit 1; }}; echo "{after_start}" > "{d}/state" ;;
  stop) echo inactive > "{d}/state" ;;
esac
"""


def fake(tmp_path: Path, state: str = "inactive", load: str = "loaded", after_start: str = "active") -> SystemdUnit:
    (tmp_path / "state").write_text(state + "\n")
    (tmp_path / "load").write_text(load + "\n")
    ctl = tmp_path / "systemctl"
    ctl.write_text(FAKE.format(d=tmp_path, after_start=after_start))
    ctl.chmod(0o755)
    return SystemdUnit("postfix", "postfix@-.service", 5.0, systemctl=str(ctl))


@pytest.mark.parametrize("state,load,want", [
    ("active", "loaded", OCF.SUCCESS), ("reloading", "loaded", OCF.SUCCESS),
    ("inactive", "loaded", OCF.NOT_RUNNING), ("failed", "loaded", OCF.NOT_RUNNING),
    ("activating", "loaded", OCF.ERR_GENERIC), ("deactivating", "loaded", OCF.ERR_GENERIC),
    ("inactive", "not-found", OCF.ERR_INSTALLED),
])
def test_monitor(tmp_path: Path, state: str, load: str, want: OCF) -> None:
    assert fake(tmp_path, state, load).monitor() == want


def test_start_stop_and_a_unit_that_dies_right_after_start(tmp_path: Path) -> None:
    u = fake(tmp_path)
    assert u.start() == OCF.SUCCESS and u.monitor() == OCF.SUCCESS
    assert u.stop() == OCF.SUCCESS and u.monitor() == OCF.NOT_RUNNING
    assert "--no-ask-password start postfix@-.service" in (tmp_path / "calls").read_text()
    assert fake(tmp_path, after_start="failed").start() == OCF.ERR_GENERIC  # Type=simple that exited at once
    (tmp_path / "fail").touch()
    assert fake(tmp_path).start() == OCF.ERR_GENERIC


def test_no_systemctl_is_a_failure_not_a_traceback(tmp_path: Path) -> None:
    u = SystemdUnit("postfix", "postfix@-.service", 5.0, systemctl=str(tmp_path / "missing"))
    assert u.start() == OCF.ERR_GENERIC and u.monitor() == OCF.ERR_GENERIC


@pytest.mark.parametrize("params,match", [({}, "unit: must name"), ({"unit": "/etc/x.service"}, "unit: must name"),
                                          ({"unit": "a.service", "timeout_s": "x"}, "timeout_s: must be a number"),
                                          ({"unit": "a.service", "timeout_s": 0}, "timeout_s: must be > 0")])
def test_build_refuses_bad_params(params: dict, match: str) -> None:
    ctx = SimpleNamespace(spec=SimpleNamespace(source="c.yml"), role=SimpleNamespace(name="store"))
    with pytest.raises(UserError, match=match):
        build(SimpleNamespace(name="postfix"), params, ctx)


def test_config_check_names_file_line_and_field() -> None:
    from hacluster.spec import SpecError, default_spec_text, parse_spec

    text = default_spec_text().replace("      - {type: vip, name: store-vip}",
                                       "      - {type: systemd, name: pf}\n      - {type: vip, name: store-vip}")
    with pytest.raises(SpecError) as err:
        parse_spec(text, "c.yml")
    assert "roles.store.resources[1].unit: is required" in str(err.value) and str(err.value).startswith("c.yml:")
