"""`hacluster --help` in sections (operator / diagnosis / lab), and the --yes rule of confirm.py."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from hacluster.cli import SECTIONS, cli
from hacluster.confirm import needs_asking
from hacluster.errors import UserError


def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
            out[current] = []
        elif current and line.startswith("  ") and line.strip():
            out[current].append(line.split()[0])
    return out


def test_help_is_grouped() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    got = sections(res.output)
    assert got["Operator commands"][:3] == ["status", "switchover", "failover"]
    assert {"node", "role", "maintenance", "history", "config", "agent"} <= set(got["Operator commands"])
    assert {"raid", "mx"} <= set(got["Diagnosis"])
    lab = next(v for k, v in got.items() if k.startswith("Lab"))
    assert {"lab", "drill", "chaos", "bench", "demo"} <= set(lab)
    assert "lab" not in got["Operator commands"] and "status" not in lab
    listed = [n for _, names in SECTIONS for n in names]
    assert len(listed) == len(set(listed)), "a command in two sections"


def test_a_command_in_no_section_is_still_listed() -> None:
    cli.lazy["zz-new"] = "hacluster.operator.client:history_cmd"
    try:
        res = CliRunner().invoke(cli, ["--help"])
    finally:
        del cli.lazy["zz-new"]
    assert sections(res.output)["Other commands"] == ["zz-new"]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("yes, stdin, expect", [
    (True, io.StringIO(), False),  # --yes: never asks
    (True, Tty(), False),
    (False, Tty(), True),  # a terminal: ask
    (False, io.StringIO(), "error"),  # no terminal, no --yes: exit 2
])
def test_needs_asking(yes: bool, stdin: io.StringIO, expect: object) -> None:
    if expect == "error":
        with pytest.raises(UserError) as err:
            needs_asking(yes, "switchover of store", stdin)
        assert err.value.exit_code == 2 and "add --yes" in str(err.value) and "switchover of store" in str(err.value)
    else:
        assert needs_asking(yes, "switchover of store", stdin) is expect
