"""The body of a switchover POST, read and checked in one place for both HTTP servers (the agent
API and the status page), so both have the same limits and the same 400 answers naming the field."""

from __future__ import annotations

import json
from email.message import Message
from io import BufferedIOBase
from typing import Any, Iterable

FIELDS = frozenset({"role", "to"})
MAX_BYTES = 65536


class BadBody(ValueError):
    """A request the server answers with 400 and `reply()`; nothing was changed."""

    def __init__(self, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.field = field

    def reply(self) -> dict[str, Any]:
        return {"error": str(self)} | ({"field": self.field} if self.field else {})


def read_json(rfile: BufferedIOBase, headers: Message) -> Any:
    """The body as JSON. Raises BadBody; an OSError (the client stalled past the socket timeout)
    passes through: the caller closes the connection without an answer."""
    try:
        n = int(headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BYTES:
            raise ValueError(f"Content-Length {n} out of range (0..{MAX_BYTES})")
        return json.loads(rfile.read(n) or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise BadBody(f"body is not valid JSON: {err}") from None


def switchover_fields(body: Any, roles: Iterable[str], nodes: Iterable[str]) -> tuple[str, str | None]:
    """(role, to) from a parsed body: a JSON object with `role` (a known role) and optional `to`
    (a known node or null), nothing else."""
    if not isinstance(body, dict):
        raise BadBody('body must be a JSON object {"role": ..., "to": ...}')
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadBody(f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(sorted(FIELDS))})", unknown[0])
    role, to = body.get("role"), body.get("to")
    for fld, value, ok, want, kind, names in (
            ("role", role, isinstance(role, str), "a string (a role name)", "role", list(roles)),
            ("to", to, to is None or isinstance(to, str), "a string (a node name) or null", "node", list(nodes))):
        if not ok:
            raise BadBody(f"{fld} must be {want}, got {json.dumps(value)[:80]}", fld)
        if value is not None and value not in names:
            raise BadBody(f"{fld}: unknown {kind} {value[:80]!r} ({kind}s: {', '.join(names)})", fld)
    assert isinstance(role, str) and (to is None or isinstance(to, str))  # checked in the loop
    return role, to
