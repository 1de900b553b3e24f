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
    """A click group whose subcommands are `module:attribute` strings, imported on use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name and module.startswith(err.name):
                    return None  # that subcommand is not part of this build
                raise
            return getattr(mod, attr, None)
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
        "agent": "hacluster.agent:agent_cmd",
        "status": "hacluster.operator:status_cmd",
        "switchover": "hacluster.operator:switchover_cmd",
        "failover": "hacluster.operator:failover_cmd",
        "maintenance": "hacluster.operator:maintenance_cmd",
        "history": "hacluster.operator:history_cmd",
        "node": "hacluster.placement_cli:node",
        "role": "hacluster.placement_cli:role",
        "demo": "hacluster.demo:demo_cmd",
        "bench": "hacluster.bench:bench",
        "raid": "hacluster.health.raid_cli:raid",
        "mx": "hacluster.mx.cli:mx",
        "lab": "hacluster.lab.cli:lab",
        "drill": "hacluster.drill:drill",
        "chaos": "hacluster.chaos:chaos_cmd",
        "deploy": "hacluster.deploy:deploy_cmd",
        "vip": "hacluster.resources.vip_cli:vip",
        "web": "hacluster.web:web_cmd",
        "resource": "hacluster.resources.ocf_cli:resource",
    },
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
