"""Reading a resource's `params:` the same way in every factory builder: bad values are a
UserError naming the file, the resource and the field, at agent start rather than at failover."""

from __future__ import annotations

from typing import Any

from ..errors import UserError


def seconds(params: dict[str, Any], where: str, default: float, key: str = "timeout_s") -> float:
    """A positive number of seconds (`params[key]`, else `default`)."""
    try:
        value = float(params.get(key, default))
    except (TypeError, ValueError):
        raise UserError(f"{where}.{key}: must be a number of seconds, got {params.get(key)!r}") from None
    if value <= 0:
        raise UserError(f"{where}.{key}: must be > 0")
    return value
