"""Spec variants for the lab toolkit: the same spec text with one cluster-level switch changed.

Benches, chaos and drills run the embedded lab spec; failsafe mode (docs/safety.md "Failsafe
mode") is off there by default, so the tools that exercise it derive a variant instead of
shipping a second spec that would drift from the first. Comments and key order survive (ruamel
round trip), so FILE:LINE errors still point at sensible lines.
"""

from __future__ import annotations

from io import StringIO
from typing import Any


def spec_change(overrides: dict[str, Any]) -> str:
    """How a drill report names the spec the agents were moved to: `failsafe: true`, or `own`."""
    return ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(overrides.items())) or "own"


def with_failsafe(spec_text: str, on: bool) -> str:
    """`spec_text` with the top-level `failsafe:` set to `on` (added when absent)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    root = yaml.load(spec_text)
    if not hasattr(root, "get"):
        raise ValueError("the spec is not a YAML mapping")
    root["failsafe"] = bool(on)
    out = StringIO()
    yaml.dump(root, out)
    return out.getvalue()


def with_overrides(spec_text: str, overrides: dict[str, Any]) -> str:
    """`spec_text` with a drill's `spec:` overrides applied (playbook.py admits `failsafe` only)."""
    if "failsafe" in overrides:
        return with_failsafe(spec_text, bool(overrides["failsafe"]))
    return spec_text


def with_placement(spec_text: str, role: str, keys: dict[str, Any], source: str) -> str:
    """`spec_text` with these keys set under `roles.ROLE` (a drill's `placement` step), checked as
    a whole spec: a bad patch fails here, naming `source`, before any agent restarts on it."""
    from ruamel.yaml import YAML

    from hacluster.spec import parse_spec
    from hacluster.yamlread import load_yaml

    root = load_yaml(spec_text, source)
    roles: Any = root.get("roles") if hasattr(root, "get") else None
    body: Any = roles.get(role) if hasattr(roles, "get") else None
    if not hasattr(body, "__setitem__"):
        raise ValueError(f"{source}: no role {role!r} under roles: to place")
    for key, value in keys.items():
        body[key] = value
    out = StringIO()
    YAML(typ="rt").dump(root, out)
    parse_spec(out.getvalue(), f"{source} with roles.{role} placement")
    return out.getvalue()
