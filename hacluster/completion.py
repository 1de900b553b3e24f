"""Shell completion of role and node names from the cluster spec (`hacluster switchover <TAB>`).

click calls these while completing; they read the spec the command would read (-c given so
far on the line, else $HACLUSTER_CONFIG, else /etc/hacluster/cluster.yml, else the spec of a lab
that is up here) and never connect anywhere. Any problem means no suggestions, never an error
in the middle of the operator's typing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click
from click.shell_completion import CompletionItem


def _spec(ctx: click.Context) -> Any:
    from .config_path import resolve_config
    from .spec import load_spec

    flag = ctx.params.get("config") or ctx.params.get("config_alias")
    try:
        path = resolve_config(flag, required=False)
        if path is None:
            from .lab_access import find_lab

            access = find_lab()
            path = access.config if access is not None else None
        return load_spec(Path(path)) if path is not None else None
    except Exception:  # noqa: BLE001 -- completion must never fail the shell
        return None


def _complete(names: Callable[[Any, click.Context], list[tuple[str, str]]]) -> Callable[..., list[CompletionItem]]:
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        spec = _spec(ctx)
        if spec is None:
            return []
        return [CompletionItem(n, help=h) for n, h in names(spec, ctx) if n.startswith(incomplete)]
    return complete


def _roles(spec: Any, ctx: click.Context) -> list[tuple[str, str]]:
    return [(r.name, f"tier {r.tier}") for r in spec.roles.values()]


def _nodes(spec: Any, ctx: click.Context) -> list[tuple[str, str]]:
    """Nodes; once a role is on the line, only the nodes of its tier (the ones that may hold it)."""
    role = spec.roles.get(ctx.params.get("role") or "")
    return [(n.name, f"tier {n.tier}") for n in spec.nodes.values() if role is None or n.tier == role.tier]


complete_roles = _complete(_roles)
complete_nodes = _complete(_nodes)

__all__ = ["complete_nodes", "complete_roles"]
