"""One rule for which cluster spec a command reads (issue 14): -c/--config FILE, else
$HACLUSTER_CONFIG, else /etc/hacluster/cluster.yml; a missing spec is exit 2 with one line naming
all three places, never the embedded lab spec. Lab-building commands default to the lab spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hacluster import config_path
from hacluster.cli import main
from hacluster.config_path import resolve_config
from hacluster.errors import UserError
from hacluster.spec import default_spec_text

PLACES = ("-c/--config FILE", "$HACLUSTER_CONFIG", "/etc/hacluster/cluster.yml")


def spec_file(path: Path, cluster: str) -> Path:
    """The lab spec under another cluster name, so a test sees which file was read."""
    path.write_text(default_spec_text().replace("cluster: lab\n", f"cluster: {cluster}\n", 1))
    return path


@pytest.fixture
def three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """Spec files for the flag, the environment and the default place (all present)."""
    default = spec_file(tmp_path / "default.yml", "from-default")
    monkeypatch.setattr(config_path, "DEFAULT_PATH", default)
    return spec_file(tmp_path / "flag.yml", "from-flag"), spec_file(tmp_path / "env.yml", "from-env"), default


def test_flag_beats_environment_beats_default(three: tuple[Path, Path, Path]) -> None:
    flag, env, default = three
    assert resolve_config(str(flag), {"HACLUSTER_CONFIG": str(env)}) == flag
    assert resolve_config(None, {"HACLUSTER_CONFIG": str(env)}) == env
    assert resolve_config(None, {}) == default
    assert resolve_config(None, {"HACLUSTER_CONFIG": ""}) == default  # empty: not set


ABSENT_DEFAULT = Path("/nonexistent/etc/hacluster/cluster.yml")  # the default place, absent whatever this host has


@pytest.mark.parametrize("given, env, named", [
    ("/nonexistent/flag.yml", "", "/nonexistent/flag.yml (given on the command line)"),
    (None, "/nonexistent/env.yml", "/nonexistent/env.yml (from $HACLUSTER_CONFIG)"),
    (None, "", f"{ABSENT_DEFAULT} (the default)"),
])
def test_missing_spec_names_the_file_and_all_three_places(given: str | None, env: str, named: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_path, "DEFAULT_PATH", ABSENT_DEFAULT)
    with pytest.raises(UserError) as err:
        resolve_config(given, {"HACLUSTER_CONFIG": env})
    assert err.value.exit_code == 2 and named in str(err.value)
    assert all(p in str(err.value) for p in (*PLACES[:2], str(ABSENT_DEFAULT))) and "\n" not in str(err.value)


def test_optional_spec_may_be_absent_only_at_the_default_place() -> None:
    assert resolve_config(None, {}, required=False) is None
    with pytest.raises(UserError, match=r"/nonexistent/env\.yml \(from \$HACLUSTER_CONFIG\)"):
        resolve_config(None, {"HACLUSTER_CONFIG": "/nonexistent/env.yml"}, required=False)


@pytest.mark.parametrize("argv", [["config", "check"], ["config", "show"], ["status"], ["history"], ["mx", "zone"],
                                  ["agent", "--node", "store1"]])
def test_no_spec_is_exit_2_not_the_lab(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no cluster spec" in err and all(p in err for p in PLACES[:2])


def test_config_check_and_show_read_the_environment(three: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    flag, env, _ = three
    monkeypatch.setenv("HACLUSTER_CONFIG", str(env))
    assert main(["config", "check"]) == 0
    assert "ok: cluster from-env" in capsys.readouterr().out
    assert main(["config", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "from-env"
    assert main(["config", "check", "-c", str(flag)]) == 0 and "cluster from-flag" in capsys.readouterr().out
    assert main(["config", "show", str(flag)]) == 0 and json.loads(capsys.readouterr().out)["name"] == "from-flag"


def test_config_check_takes_one_spec(three: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    flag, env, _ = three
    assert main(["config", "check", "-c", str(flag), str(env)]) == 2
    assert "two cluster specs given" in capsys.readouterr().err


def test_agent_reads_the_environment_and_vip_cleanup_reads_no_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # cleanup removes what the agent recorded (vip_record.py): no spec anywhere, or a broken one
    # named by the environment or an old unit's --config, changes nothing
    state = tmp_path / "state"
    monkeypatch.setenv("HACLUSTER_CONFIG", str(tmp_path / "gone.yml"))
    assert main(["vip", "cleanup", "--node", "relay1", "--state-dir", str(state)]) == 0
    assert main(["vip", "cleanup", "-c", str(tmp_path / "gone.yml"), "--node", "relay1", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out == f"relay1: no VIP recorded in {state / 'vips'}\n" * 2
    env = spec_file(tmp_path / "env.yml", "from-env")
    monkeypatch.setenv("HACLUSTER_CONFIG", str(env))
    # the agent loads the spec before anything else: an unknown node is reported against that file
    assert main(["agent", "--node", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no node named 'nosuch'" in err and "no cluster spec" not in err
    monkeypatch.setenv("HACLUSTER_CONFIG", str(tmp_path / "gone.yml"))
    assert main(["agent", "--node", "store1"]) == 2
    assert f"{tmp_path / 'gone.yml'} (from $HACLUSTER_CONFIG) does not exist" in capsys.readouterr().err


def test_spec_is_a_hidden_alias_of_config(three: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    flag, _, _ = three
    assert main(["mx", "zone", "--spec", str(flag)]) == 0
    assert "cluster from-flag" in capsys.readouterr().out
    for argv in (["mx", "zone"], ["mx", "lint"]):  # the lab's commands: tests/lab_unit/test_lab_config_path.py
        assert main([*argv, "--help"]) == 0
        out = capsys.readouterr().out
        assert "-c, --config FILE" in out and "--spec" not in out, argv


def test_installed_command_without_spec_is_one_line_exit_2(tmp_path: Path) -> None:
    """The real entry point with nothing at the default place (a Python that moves it there, so a
    host's own /etc/hacluster/cluster.yml cannot make this pass or skip)."""
    env = {k: v for k, v in os.environ.items() if k != "HACLUSTER_CONFIG"} | {"HACLUSTER_LAB_STATE": str(tmp_path / "no-lab")}
    code = ("import sys; from pathlib import Path; from hacluster import config_path, cli; "
            "config_path.DEFAULT_PATH = Path('/etc/hacluster/cluster.yml-absent-for-the-test'); "
            "sys.exit(cli.main(['status']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert all(p in res.stderr for p in PLACES)  # "/etc/hacluster/cluster.yml" is a prefix of the moved path
