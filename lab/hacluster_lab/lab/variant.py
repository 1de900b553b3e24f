"""Spec variants for the lab toolkit: the same spec text with one cluster-level switch changed.

Benches, chaos and drills run the embedded lab spec; failsafe mode (docs/safety.md "Failsafe
mode") is off there by default, so the tools that exercise it derive a variant instead of
shipping a second spec that would drift from the first. Comments and key order survive (ruamel
round trip), so FILE:LINE errors still point at sensible lines.
"""

from __future__ import annotations

from io import StringIO


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
