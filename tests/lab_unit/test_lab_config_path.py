"""Which spec the lab toolkit's commands read: `-c` (with `--spec` a hidden alias), else the
embedded lab spec -- never $HACLUSTER_CONFIG, which names a production cluster."""

from __future__ import annotations

import pytest

from hacluster import config_path
from hacluster.cli import main


def test_spec_is_a_hidden_alias_of_config_for_lab_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["lab", "up"], ["drill", "run"], ["bench", "failover"]):
        assert main([*argv, "--help"]) == 0
        out = capsys.readouterr().out
        assert "-c, --config FILE" in out and "--spec" not in out, argv


def test_lab_commands_default_to_the_lab_spec_and_ignore_the_environment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HACLUSTER_CONFIG", "/nonexistent/env.yml")
    for argv in (["lab", "up"], ["drill", "run"], ["bench", "failover"], ["chaos"], ["demo"]):
        assert main([*argv, "--help"]) == 0
        assert "embedded lab spec" in " ".join(capsys.readouterr().out.split()), argv
    assert config_path.resolve_lab_config(None) is None
    assert main(["lab", "up", "-c", "/nonexistent/lab.yml"]) == 2  # fails before it needs root
    err = capsys.readouterr().err
    assert "/nonexistent/lab.yml (given on the command line) does not exist" in err and "embedded lab spec" in err
