"""Which cluster spec a command reads: one rule for every command (issue 14).

`-c/--config FILE`, else `$HACLUSTER_CONFIG`, else `/etc/hacluster/cluster.yml`. A spec that is
not there is a one-line usage error (exit 2) naming all three places, never a silent fall back
to the embedded lab spec: an operator command must not talk to the lab's ZooKeeper addresses
because a file was mistyped. Only the commands that build the lab (`lab`, `demo`, `bench`,
`chaos`, `drill` on the lab) default to the embedded lab spec; they take `-c` too but not
`$HACLUSTER_CONFIG`, which names a real cluster.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import click

from .errors import UserError

ENV_VAR = "HACLUSTER_CONFIG"
DEFAULT_PATH = Path("/etc/hacluster/cluster.yml")
LAB_DEFAULT = "the embedded lab spec (hacluster/examples/lab.yml)"


def rule() -> str:
    """The rule in words, for help texts and errors."""
    return f"-c/--config FILE, else ${ENV_VAR}, else {DEFAULT_PATH}"


def resolve_config(flag: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None, *,
                   required: bool = True) -> Path | None:
    """The spec file by the rule. A named file (flag or environment) must exist; the default
    place may be absent only when `required` is False (then None: the command goes without)."""
    env = os.environ if environ is None else environ
    if flag:
        path, source = Path(flag), "given on the command line"
    elif env.get(ENV_VAR):
        path, source = Path(env[ENV_VAR]), f"from ${ENV_VAR}"
    else:
        path, source = DEFAULT_PATH, "the default"
        if not required and not path.exists():
            return None
    if not path.exists():
        raise UserError(f"no cluster spec: {path} ({source}) does not exist; "
                        f"the spec is {rule()}")
    return path


def resolve_lab_config(flag: str | os.PathLike[str] | None) -> Path | None:
    """A lab command's spec: the given file (which must exist), else None for the embedded lab spec."""
    if not flag:
        return None
    path = Path(flag)
    if not path.exists():
        raise UserError(f"no cluster spec: {path} (given on the command line) does not exist; "
                        f"without -c this command uses {LAB_DEFAULT}")
    return path


Alias = Literal["--spec", "FILE"] | None


def resolve_or_lab(flag: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Path:
    """The rule; when it finds nothing and the embedded lab is up on this host, the lab: this
    process joins the lab's router namespace (its ZooKeeper is only reachable there) and uses the
    lab's spec, saying so in one line (hacluster.lab_access)."""
    env = os.environ if environ is None else environ
    if not flag and not env.get(ENV_VAR) and not DEFAULT_PATH.exists():
        from .lab_access import enter, find_lab

        access = find_lab()
        if access is not None:
            try:
                enter(access)
            except OSError as err:  # setns needs CAP_SYS_ADMIN
                raise UserError(f"no cluster spec here ({rule()}); the lab up at {access.state_dir} is reachable "
                                f"only from its {access.netns} namespace, and joining it failed ({err.strerror or err}): "
                                "run this as root") from None
            click.echo(f"hacluster: no cluster spec here ({rule()}); using the lab up at {access.state_dir} "
                       f"from its {access.netns} namespace", err=True)
            return access.config
    path = resolve_config(flag, env)
    assert path is not None  # required
    return path


def config_option(*, lab: bool = False, alias: Alias = None, required: bool = True,
                  lab_default: str = LAB_DEFAULT, lab_fallback: bool = False,
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add `-c/--config FILE` to a click command and hand it the resolved spec path as `config`.

    alias: "--spec" keeps that old option name working (hidden from help); "FILE" also accepts
    the file as an optional positional argument (`config check FILE`). lab: the default is the
    embedded lab spec (`config` is None then), not the rule. lab_fallback: an operator command
    that, finding no spec by the rule, talks to the embedded lab if one is up here."""
    if lab:
        help_text = f"Cluster spec (default: {lab_default}; ${ENV_VAR} is not read by lab commands)."
    else:
        help_text = f"Cluster spec (default: ${ENV_VAR}, else {DEFAULT_PATH})."

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def run(*args: Any, config: str | None = None, config_alias: str | None = None, **kwargs: Any) -> Any:
            if config and config_alias and config != config_alias:
                given = "--spec" if alias == "--spec" else "FILE"
                raise UserError(f"two cluster specs given: -c/--config {config} and {given} {config_alias}; give one")
            chosen = config or config_alias
            if lab:
                path = resolve_lab_config(chosen)
            elif lab_fallback:
                path = resolve_or_lab(chosen)
            else:
                path = resolve_config(chosen, required=required)
            return f(*args, config=path, **kwargs)

        cmd = click.option("-c", "--config", "config", type=click.Path(dir_okay=False), default=None,
                           metavar="FILE", help=help_text)(run)
        if alias == "--spec":
            cmd = click.option("--spec", "config_alias", type=click.Path(dir_okay=False), default=None,
                               hidden=True)(cmd)
        elif alias == "FILE":
            cmd = click.argument("config_alias", metavar="[FILE]", required=False,
                                 type=click.Path(dir_okay=False))(cmd)
        return cmd

    return decorate


__all__ = ["DEFAULT_PATH", "ENV_VAR", "LAB_DEFAULT", "config_option", "resolve_config", "resolve_lab_config", "resolve_or_lab",
           "rule"]
