"""The deployable files of agents/ (systemd unit, OCF scripts, alert rules, dashboard).

They live inside the package (hacluster/agents/; the top-level agents/ is a link to it) so an
installed wheel carries them: `hacluster deploy` renders the unit from here whether it runs
from a source tree (`pip install -e`) or from site-packages.
"""

from __future__ import annotations

from importlib import resources as importlib_resources
from importlib.resources.abc import Traversable

from hacluster.errors import UserError


def agents_dir() -> Traversable:
    """hacluster/agents/ of the hacluster that is running."""
    return importlib_resources.files("hacluster").joinpath("agents")


def agent_file_text(relpath: str) -> str:
    """The text of agents/RELPATH, or a one-line error when this install lacks it."""
    f = agents_dir().joinpath(*relpath.split("/"))
    if not f.is_file():
        raise UserError(f"agents/{relpath} is missing from this hacluster install ({f}): "
                        "reinstall hacluster (the wheel ships agents/ as package data)")
    return f.read_text()


__all__ = ["agent_file_text", "agents_dir"]
