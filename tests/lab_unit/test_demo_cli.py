"""`hacluster demo` without root says that `--loopback` needs none (exit 2, no traceback), and
`--keep` is refused where it means nothing."""

from __future__ import annotations

import pytest

from hacluster.cli import main


def test_lab_demo_without_root_points_at_loopback(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "needs root" in err and "hacluster demo --loopback" in err
    assert "Traceback" not in err


def test_keep_is_for_the_lab_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--loopback", "--keep"]) == 2
    assert "--keep applies to the lab demo" in capsys.readouterr().err
