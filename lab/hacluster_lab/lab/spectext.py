"""Edits of a spec's text that keep its comments and layout (ruamel round-trip).

`merge_health` adds a `health:` fragment to a spec that may already have one (the embedded lab
spec does): per tier, a check of the same type replaces the spec's entry in place (a test or drill
that needs a faster or different probe), any other check is appended. A YAML file cannot hold two
`health:` keys, so appending the fragment to the text is not an option.
"""

from __future__ import annotations

from io import StringIO

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq


def merge_health(spec_text: str, fragment: str, replace: bool = False) -> str:
    """`spec_text` with the `health:` section of the YAML `fragment` merged in (see the module);
    `replace`: the fragment's section instead of the spec's (a test of one check alone)."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # one check per line, as written
    root = yaml.load(spec_text)
    add = YAML(typ="rt").load(fragment) or {}
    extra = add.get("health") or {}
    if not isinstance(root, CommentedMap) or not isinstance(extra, dict):
        raise ValueError("merge_health: the spec and the fragment must be mappings with a health: mapping")
    health = root.get("health")
    if replace and health is not None:
        del root["health"]
        health = None
    if health is None:
        health = root["health"] = CommentedMap()
    for tier, checks in extra.items():
        have = health.get(tier)
        if have is None:
            have = health[tier] = CommentedSeq()
        for chk in checks or []:
            same = [i for i, c in enumerate(have) if isinstance(c, dict) and c.get("check") == chk.get("check")]
            if same:
                have[same[0]] = chk
            else:
                have.append(chk)
    out = StringIO()
    yaml.dump(root, out)
    return out.getvalue()
