"""Config drift between the nodes of a tier, from the `config_digest` checks in their heartbeats.

Pure: members (and who holds what) in, a report out; `hacluster status`, the status page, the
agent's metric and the switchover check (a drifted target needs --force) all read this one view.

Whom does a node differ from? The node that serves the tier now: the holder of the tier's first
held role (its configuration is the one clients see); without a holder, the digest most nodes
share per item, ties to the first node by name. "store2 differs from store1: virtual_mailbox_maps".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping  # not typing's: isinstance() on its alias is ~3x slower (every loop)
from typing import Any

from .health.checks import CONFIG_DIGEST


def digests_of(health: Mapping[str, Any]) -> dict[str, str] | None:
    """The item -> digest map a member published, or None (no config_digest check)."""
    r = health.get(CONFIG_DIGEST) if isinstance(health, Mapping) else None
    data = r.get("data") if isinstance(r, Mapping) else None
    d = data.get("digests") if isinstance(data, Mapping) else None
    if not isinstance(d, Mapping):
        return None
    return {str(k): str(v) for k, v in d.items()}


def differing(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    """Items whose digest differs, or that only one side has; Postfix parameters first, then files."""
    keys = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
    return sorted(keys, key=lambda k: (k.startswith(("/", "{")), k))


def tier_drift(tier_digests: Mapping[str, Mapping[str, str]], reference: str | None) -> dict[str, dict[str, Any]]:
    """node -> {"against": who, "items": [...]} for every node of one tier that differs."""
    if len(tier_digests) < 2:
        return {}
    if reference not in tier_digests:
        reference = None
    if reference is not None:
        ref, against = tier_digests[reference], reference
    else:  # per item the value most nodes share; ties: the first node by name
        names = sorted(tier_digests)
        items = {k for d in tier_digests.values() for k in d}
        ref = {}
        for k in items:
            counts = Counter(tier_digests[n].get(k, "absent") for n in names)
            best = max(counts.values())
            ref[k] = next(tier_digests[n].get(k, "absent") for n in names if counts[tier_digests[n].get(k, "absent")] == best)
        ref = {k: v for k, v in ref.items() if v != "absent"}
        against = "the majority"
    out: dict[str, dict[str, Any]] = {}
    for n, d in sorted(tier_digests.items()):
        if n == reference:
            continue
        diff = differing(d, ref)
        if diff:
            out[n] = {"against": against, "items": diff}
    return out


def cluster_drift(tiers: Mapping[str, str], health: Mapping[str, Mapping[str, Any]],
                  holders: Mapping[str, str | None], role_tiers: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """node -> {"against", "items", "text"} over all tiers. tiers: node -> tier; health: node ->
    its published health; holders: role -> holder; role_tiers: role -> tier."""
    out: dict[str, dict[str, Any]] = {}
    for tier in sorted(set(tiers.values())):
        digests = {n: d for n in tiers if tiers[n] == tier and (d := digests_of(health.get(n) or {})) is not None}
        ref = next((holders.get(r) for r in sorted(role_tiers) if role_tiers[r] == tier and holders.get(r) in digests),
                   None)
        for n, v in tier_drift(digests, ref).items():
            out[n] = {**v, "text": f"{n} differs from {v['against']}: {', '.join(v['items'][:8])}"
                                   + (f" (+{len(v['items']) - 8} more)" if len(v["items"]) > 8 else "")}
    return out


def drift_between(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Items differing between two members' published health (both need the check), else []."""
    da, db = digests_of(a), digests_of(b)
    return differing(da, db) if da is not None and db is not None else []


__all__ = ["cluster_drift", "differing", "digests_of", "drift_between", "tier_drift"]
