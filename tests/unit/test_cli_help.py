"""`hacluster --help` in sections (operator / diagnosis / lab), and the --yes rule of confirm.py."""

from __future__ import annotations

import importlib.util
import io

import pytest
from click.testing import CliRunner

from hacluster.cli import LAB_COMMANDS, SECTIONS, LazyGroup, cli, main

#: the product's tests also run without the lab toolkit (`make product-check`)
LAB = importlib.util.find_spec("hacluster_lab") is not None
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
    lab = next((v for k, v in got.items() if k.startswith("Lab")), [])
    # the lab toolkit's commands come from its entry points: listed when it is installed, else not at all
    assert set(lab) == (set(LAB_COMMANDS) if LAB else set()), lab
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


def test_a_plugin_command_without_its_distribution_says_what_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    """A known lab command whose toolkit is missing (here: an entry-point group nobody provides):
    hidden from --help, and run it names the extra to install and exits 2, whatever its arguments."""
    group = LazyGroup("t", plugins="hacluster.test-no-such-group", optional=("zz",))
    assert "zz" not in CliRunner().invoke(group, ["--help"]).output
    res = CliRunner().invoke(group, ["zz", "up", "--spec", "x.yml"])
    err = res.exception  # main() turns it into one line and exit 2
    assert isinstance(err, UserError) and err.exit_code == 2 and "install 'hacluster[lab]'" in str(err)
    if not LAB:  # the real command line, as an operator on a mail node sees it
        assert main(["drill", "run", "--all"]) == 2
        assert "part of the lab toolkit" in capsys.readouterr().err


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
