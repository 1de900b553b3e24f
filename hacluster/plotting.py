"""matplotlib for the pictures (`mx simulate --plot`, drill timelines), imported only when one is
drawn: it is the `lab` extra, not a dependency of the agents a production host runs."""

from __future__ import annotations

from types import ModuleType

from .errors import UserError

HINT = "pictures need matplotlib: install hacluster[lab] (pip install 'hacluster[lab]')"


def require_matplotlib() -> ModuleType:
    """matplotlib with the Agg backend (no display), or a one-line error saying what to install."""
    try:
        import matplotlib
    except ModuleNotFoundError as err:
        if err.name != "matplotlib":
            raise
        raise UserError(HINT) from None
    matplotlib.use("Agg")  # must precede pyplot
    return matplotlib


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend."""
    require_matplotlib()
    import matplotlib.pyplot as plt

    return plt


__all__ = ["HINT", "pyplot", "require_matplotlib"]
