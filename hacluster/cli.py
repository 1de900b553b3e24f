"""The one `hacluster` command. Subcommands live in the module that does the work and are
loaded lazily, so `hacluster raid status` doesn't import kazoo or pyroute2.

Exit codes everywhere: 0 ok, 1 failed expectation, 2 usage or input error.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from .errors import UserError


class LazyGroup(click.Group):
    """A click group whose subcommands are `module:attribute` strings, imported on use.

    `plugins` names an entry-point group whose entries add subcommands the same way: the lab
    toolkit (a distribution of its own) plugs its commands in so, and the product never names a
    lab module. `optional` are the plugin commands this group knows of: without their plugin they
    say what to install and exit 2, instead of click's "no such command"."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, plugins: str | None = None,
                 optional: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.plugins = plugins
        self.optional = optional
        self._found: dict[str, str] | None = None

    def plugin_commands(self) -> dict[str, str]:
        """name -> `module:attribute` from the installed distributions' entry points (read once)."""
        if self._found is None:
            self._found = {}
            if self.plugins:
                from importlib.metadata import entry_points

                self._found = {ep.name: ep.value for ep in entry_points(group=self.plugins)}
        return self._found

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy) | set(self.plugin_commands())
                      | set(self.optional))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = self.lazy.get(name) or self.plugin_commands().get(name)
        if target is not None:
            module, attr = target.split(":")
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name and module.startswith(err.name):
                    # that subcommand is not part of this build (or its distribution left behind
                    # only its metadata)
                    return missing_lab_command(name) if name in self.optional else None
                raise
            return getattr(mod, attr, None)
        if name in self.optional:
            return missing_lab_command(name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """--help lists the subcommands in SECTIONS (operator / diagnosis / lab), not one list."""
        rows: dict[str, list[tuple[str, str]]] = {}
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            section = next((title for title, names in SECTIONS if name in names), "Other commands")
            rows.setdefault(section, []).append((name, cmd.get_short_help_str(limit)))
        for title in [t for t, _ in SECTIONS] + ["Other commands"]:
            if rows.get(title):
                order = dict(SECTIONS).get(title, ())
                with formatter.section(title):  # in SECTIONS' order: status first, not agent
                    formatter.write_dl(sorted(rows[title], key=lambda r: (order.index(r[0]) if r[0] in order else 99, r[0])))


class MissingLabCommand(click.Command):
    """A stand-in for a lab-toolkit command when the toolkit is not installed: hidden from --help,
    and run (with any arguments) it says what to install: exit 2, nothing done."""

    def __init__(self, name: str) -> None:
        super().__init__(name, callback=self.refuse, hidden=True, add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)])

    def refuse(self, args: tuple[str, ...]) -> None:
        raise UserError(f"`{self.name}` is part of the lab toolkit, which is not installed: "
                        "pip install 'hacluster[lab]' (from a checkout: make deps)")


def missing_lab_command(name: str) -> click.Command:
    return MissingLabCommand(name)


#: the lab toolkit's commands (entry points of the `hacluster-lab` distribution)
LAB_COMMANDS = ("lab", "demo", "drill", "chaos", "bench")

#: --help's sections: what an operator runs on a live cluster, what inspects a host or a zone,
#: and the lab toolkit (never needed on a mail node)
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Operator commands", ("status", "switchover", "failover", "maintenance", "node", "role", "history", "config",
                           "agent", "web", "deploy")),
    ("Diagnosis", ("raid", "mx", "vip", "resource")),
    ("Lab (namespace lab, drills, chaos, benchmarks)", ("lab", "demo", "drill", "chaos", "bench")),
)


@click.group(
    cls=LazyGroup,
    lazy={
        "config": "hacluster.spec_cli:config",
        "agent": "hacluster.agent.loop:agent_cmd",
        "status": "hacluster.operator.client:status_cmd",
        "switchover": "hacluster.operator.client:switchover_cmd",
        "failover": "hacluster.operator.client:failover_cmd",
        "maintenance": "hacluster.operator.client:maintenance_cmd",
        "history": "hacluster.operator.client:history_cmd",
        "node": "hacluster.placement_cli:node",
        "role": "hacluster.placement_cli:role",
        "raid": "hacluster.health.raid_cli:raid",
        "mx": "hacluster.mx.cli:mx",
        "deploy": "hacluster.deploy:deploy_cmd",
        "vip": "hacluster.resources.vip_cli:vip",
        "web": "hacluster.http.web:web_cmd",
        "resource": "hacluster.resources.ocf_cli:resource",
    },
    plugins="hacluster.commands",
    optional=LAB_COMMANDS,
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="hacluster")
def cli(verbose: int) -> None:
    """High availability for mail clusters: relay, store and FallbackMX tiers."""
    level = logging.WARNING - 10 * verbose
    from .logsetup import configure_logging

    configure_logging(max(level, logging.DEBUG), "%(asctime)s %(levelname)s %(name)s: %(message)s",
                      "%(name)s: %(message)s", force=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning expected errors into one line and an exit code."""
    try:
        # with standalone_mode=False click returns a raised Exit's code instead of exiting
        rc = cli.main(args=argv, prog_name="hacluster", standalone_mode=False)
    except UserError as err:
        click.echo(f"{err.prefix}{err}", err=True)
        return err.exit_code
    except click.exceptions.Exit as ex:
        return ex.exit_code
    except click.ClickException as err:
        err.show()
        return 2
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
