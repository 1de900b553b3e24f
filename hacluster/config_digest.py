"""Digests of what every agent of a cluster must agree on, published in each heartbeat.

The timing: inequality (S) is the holder's; ha.py rule 11 keeps a rolling change of timing safe
(candidates wait the longer promised lease), but a cluster should never run mixed timing without
anybody noticing. The role definitions: which resources a takeover starts and where the VIPs go.
`hacluster status` names a node whose digest differs from the majority or from the operator's own
spec file; `hacluster config check FILE --against-cluster` compares a file before deploying it.
Pure functions over immutable values; the I/O is in the agent, operator and spec_cli.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, TypeGuard

from .timing import DEFAULT_HEARTBEAT_S

if TYPE_CHECKING:  # the znode decoders import this module; keep it free of the spec reader
    from .spec import ClusterSpec

#: parts of a digest, in report order; "unknown": the agent publishes none (an older version)
PARTS = ("timing", "roles", "failsafe")
HEX_PARTS = ("timing", "roles")


class ConfigDigest(NamedTuple):
    timing: str  # hex digest of the resolved timing (profile values filled in)
    roles: str  # hex digest of the role definitions
    lease_s: float  # shown next to a differing timing digest, so the operator sees *what* differs
    margin_s: float
    # the spec's failsafe flag (docs/safety.md "Failsafe mode"): a holder counts on its peers'
    # confirmation, which a peer with failsafe off refuses -- half a cluster on, half off loses the
    # mode silently; a record without the field (an agent from before failsafe) reads as off
    failsafe: bool = False

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    def text(self) -> str:
        return (f"timing {self.timing} (lease_s {self.lease_s:g}, margin_s {self.margin_s:g}), roles {self.roles}"
                + (", failsafe on" if self.failsafe else ""))


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def roles_canonical(spec: ClusterSpec) -> list[dict[str, Any]]:
    """The role definitions as plain, ordered data (a set's order must not change the digest)."""
    return [{"name": r.name, "tier": r.tier, "vips": [[str(v.address), v.interface] for v in r.vips],
             "resources": [[res.type, res.name, dict(res.params)] for res in r.resources],
             "run_on_standby": sorted(r.run_on_standby),
             **({"placement": r.placement.canonical()} if r.placement.canonical() else {})}
            for r in sorted(spec.roles.values(), key=lambda r: r.name)]


def timing_canonical(spec: ClusterSpec) -> dict[str, Any]:
    """The resolved timing; heartbeat_s only when it is not the default, so a spec that does not
    set it keeps the digest agents published before the setting existed (a rolling upgrade must
    not look like a timing change)."""
    t = asdict(spec.timing)
    if t["heartbeat_s"] == DEFAULT_HEARTBEAT_S:
        del t["heartbeat_s"]
    return t


def digest_of(spec: ClusterSpec) -> ConfigDigest:
    t = spec.timing
    return ConfigDigest(_hash(timing_canonical(spec)), _hash(roles_canonical(spec)), t.lease_s, t.margin_s,
                        spec.failsafe)


def differences(got: ConfigDigest | None, ref: ConfigDigest) -> list[str]:
    """The parts in which `got` differs from `ref` (["unknown"] when nothing was published)."""
    if got is None:
        return ["unknown"]
    return [p for p in PARTS if getattr(got, p) != getattr(ref, p)]


def majority(published: Mapping[str, ConfigDigest | None]) -> ConfigDigest | None:
    """The digest more than half of the publishing agents share; None when there is none (a tie,
    or nobody publishes)."""
    known = [d for d in published.values() if d is not None]
    if not known:
        return None
    best, n = Counter(known).most_common(1)[0]
    return best if 2 * n > len(known) else None


def mismatches(published: Mapping[str, ConfigDigest | None], ref: ConfigDigest | None) -> dict[str, list[str]]:
    """node -> differing parts, for every node that differs from `ref` (nothing if ref is None)."""
    if ref is None:
        return {}
    out = {n: differences(d, ref) for n, d in published.items()}
    return {n: parts for n, parts in out.items() if parts}


def describe(node: str, parts: list[str], got: ConfigDigest | None, ref: ConfigDigest, against: str) -> str:
    """One line for an operator: what differs, and the values behind a timing difference."""
    if "unknown" in parts:
        return f"{node}: publishes no config digest (an agent older than this check); cannot compare with {against}"
    what = []
    if "timing" in parts and got is not None:
        what.append(f"timing differs from {against} (lease_s {got.lease_s:g}, margin_s {got.margin_s:g} "
                    f"vs {ref.lease_s:g}, {ref.margin_s:g}; digest {got.timing} vs {ref.timing})")
    if "roles" in parts and got is not None:
        what.append(f"role definitions differ from {against} (digest {got.roles} vs {ref.roles})")
    if "failsafe" in parts and got is not None:
        what.append(f"failsafe {'on' if got.failsafe else 'off'}, {against} has it {'on' if ref.failsafe else 'off'}")
    return f"{node}: " + "; ".join(what)


def decode(data: Any) -> ConfigDigest | None:
    """A heartbeat's `config` object, or None if absent or not exactly what agents write."""
    if not isinstance(data, dict):
        return None
    ok_hex = all(isinstance(data.get(p), str) and 0 < len(data[p]) <= 64 for p in HEX_PARTS)
    lease_s, margin_s = data.get("lease_s"), data.get("margin_s")
    failsafe = data.get("failsafe", False)
    if not ok_hex or not (_seconds(lease_s) and _seconds(margin_s)) or not isinstance(failsafe, bool):
        return None
    return ConfigDigest(data["timing"], data["roles"], float(lease_s), float(margin_s), failsafe)


def _seconds(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e6
