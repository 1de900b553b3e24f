"""Shell completion through click's built-in protocol, driven the way a shell drives it: the
installed `hacluster` entry point prints the bash script, real bash sources it and calls the
completion function with COMP_WORDS, and COMPREPLY must hold our subcommands and options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from hacluster.cli import cli

# the entry point pip installed beside this interpreter (a venv's bin/ is on PATH only when the
# venv is activated; the test must not depend on that), else whatever PATH finds
BIN_DIR = str(Path(sys.executable).parent)
HACLUSTER = shutil.which("hacluster", path=BIN_DIR) or shutil.which("hacluster")
ENV = {**os.environ, "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
# the real CLI entry (cli.main) with `web` registered, as once cli.py carries that line
WITH_WEB = ("import sys; from hacluster import cli; cli.cli.lazy.setdefault('web', 'hacluster.http.web:web_cmd'); "
            "sys.exit(cli.main(sys.argv[1:]))")


def complete(words: str, cword: int, argv: list[str] | None = None) -> list[str]:
    """click's bash_complete answer for COMP_WORDS=words: the `plain` values."""
    env = {**ENV, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_HACLUSTER_COMPLETE": "bash_complete"}
    out = subprocess.run(argv or [HACLUSTER], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split(",", 1)[1] for line in out.stdout.splitlines() if line.startswith("plain,")]


def bash_complete(line: str) -> list[str]:
    """Source the generated script in a real bash and complete `line` as if TAB was pressed."""
    script = (
        'eval "$(_HACLUSTER_COMPLETE=bash_source hacluster)"\n'
        f"read -ra COMP_WORDS <<< {line!r}\n"
        + ('COMP_WORDS+=("")\n' if line.endswith(" ") else "")
        + "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "_hacluster_completion hacluster\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=ENV, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


def test_installed_entry_point_exists() -> None:
    assert HACLUSTER, f"no hacluster entry point beside {sys.executable} or on PATH (pip install -e .)"


def test_bash_completes_every_subcommand() -> None:
    words = bash_complete("hacluster ")
    ctx = click.Context(cli)
    built = {n for n in cli.list_commands(ctx) if cli.get_command(ctx, n) is not None}  # lab commands by entry point when installed; modules not in this build are left out
    assert {"status", "switchover", "failover", "maintenance", "history", "agent", "config"} <= built
    assert set(words) == built, f"missing: {built - set(words)}, extra: {set(words) - built}"
    assert bash_complete("hacluster sw") == ["switchover"]
    assert bash_complete("hacluster ma") == ["maintenance"]


def test_bash_completes_options_and_choices() -> None:
    opts = bash_complete("hacluster switchover --")
    assert {"--config", "--to", "--wait", "--json"} <= set(opts)
    assert bash_complete("hacluster maintenance ") == ["on", "off", "status"]
    assert {"up", "down", "status"} <= set(bash_complete("hacluster lab "))


def test_web_subcommand_completes_once_registered() -> None:
    argv = [sys.executable, "-c", WITH_WEB]
    assert "web" in complete("hacluster ", 1, argv)
    assert {"--config", "--bind", "--port", "--token-file", "--interval"} <= set(complete("hacluster web --", 2, argv))


@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o nosort -F _hacluster_completion hacluster"),
    ("zsh", "compdef _hacluster_completion hacluster"),
    ("fish", "complete --no-files --command hacluster"),
])
def test_source_scripts_for_each_shell(shell: str, marker: str) -> None:
    env = {**ENV, "_HACLUSTER_COMPLETE": f"{shell}_source"}
    out = subprocess.run([HACLUSTER], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and marker in out.stdout, out.stdout[:500] + out.stderr


def test_role_and_node_names_complete_from_the_spec(tmp_path: Path) -> None:
    """Names come from the spec the command would read ($HACLUSTER_CONFIG or -c on the line),
    without a ZooKeeper connect (the spec's ZooKeeper does not exist); a role on the line narrows
    the nodes to its tier."""
    from hacluster_lab.localcluster import spec_text

    cfg = tmp_path / "cluster.yml"
    cfg.write_text(spec_text("127.0.0.1:26995", n=3, cluster="hcompl"))
    env = {**ENV, "HACLUSTER_CONFIG": str(cfg)}

    def words(line: str, env: dict[str, str] = env) -> list[str]:
        script = ('eval "$(_HACLUSTER_COMPLETE=bash_source hacluster)"\n'
                  f"read -ra COMP_WORDS <<< {line!r}\n" + ('COMP_WORDS+=("")\n' if line.endswith(" ") else "")
                  + "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n_hacluster_completion hacluster\n"
                  'printf "%s\\n" "${COMPREPLY[@]}"\n')
        out = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [w for w in out.stdout.splitlines() if w]

    assert words("hacluster switchover ") == ["store"]
    assert words("hacluster switchover store --to ") == ["node1", "node2", "node3"]
    assert words("hacluster failover store --to node") == ["node1", "node2", "node3"]
    assert words("hacluster node standby n") == ["node1", "node2", "node3"]
    assert words("hacluster role ban st") == ["store"]
    assert words("hacluster role ban store ") == ["node1", "node2", "node3"]
    # -c on the line wins over the environment; no spec anywhere: no names, no error
    other = tmp_path / "other.yml"
    other.write_text(spec_text("127.0.0.1:26995", n=2, cluster="hcompl", role="mailstore"))
    assert words(f"hacluster switchover -c {other} ") == ["mailstore"]
    assert words(f"hacluster switchover -c {other} mailstore --to ") == ["node1", "node2"]
    from hacluster.config_path import DEFAULT_PATH

    if not DEFAULT_PATH.exists():
        bare = {k: v for k, v in ENV.items() if k != "HACLUSTER_CONFIG"}
        assert words("hacluster switchover ", {**bare, "HACLUSTER_LAB_STATE": str(tmp_path / "nolab")}) == []
