"""A role's placement in the spec: who may hold it, whom it prefers, which roles it avoids, and
whether it fails back (Pacemaker's location/colocation constraints and stickiness, keepalived's
`nopreempt` / `preempt_delay`).

    roles:
      store:
        nodes: [store1, store2]          # who may hold it (default: every node of its tier)
        prefer: {store1: 50}             # added to the node's priority when ranking (ha.py rule 31)
        avoid_with: [store-b]            # rank nodes holding these roles last (rule 32)
        failback: {delay_s: 300}         # move back to the preferred node once it has been healthy
                                         # that long (rule 33); absent: sticky, nothing moves back
        exercise: {every: 7d, at: "03:00"}   # switch over and back routinely, with a report mail

Reading is here (`read_placement`), the checks between roles (`placement_problems`) too; ha.py
rules 30-34 use the result. Everything is plain, immutable data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from ruamel.yaml.comments import CommentedMap

from .units import parse_duration
from .yamlread import Reader, kind

KEYS = frozenset({"nodes", "prefer", "avoid_with", "failback", "exercise"})
MAX_WEIGHT = 1000


@dataclass(frozen=True)
class Exercise:
    """Switch the role over to the other node and back every `every_s`, starting at `at` (HH:MM local)."""

    every_s: float
    at: str  # "HH:MM"
    hold_s: float = 60.0  # how long the other node keeps the role before it comes back

    def next_after(self, wall: float) -> float:
        """The next exercise time strictly after `wall`. Whole days: at `at` local time on the
        days whose count since Monday 1970-01-05 is a multiple of them (every agent computes the
        same series, no state; 7d is always the same weekday). Shorter: `at` today, then every
        `every_s` either way."""
        from datetime import date, datetime, time as dtime, timedelta

        hh, mm = (int(x) for x in self.at.split(":"))
        if self.every_s % 86400 == 0:
            n = int(self.every_s // 86400)
            day = datetime.fromtimestamp(wall).date()
            for i in range(2 * n + 2):
                d = day + timedelta(days=i)
                t = datetime.combine(d, dtime(hh, mm)).timestamp()
                if (d - date(1970, 1, 5)).days % n == 0 and t > wall:
                    return t
        first = datetime.fromtimestamp(wall).replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        return first + (math.floor((wall - first) / self.every_s) + 1) * self.every_s


@dataclass(frozen=True)
class Placement:
    nodes: tuple[str, ...] | None = None  # None: every node of the tier
    prefer: Mapping[str, int] = field(default_factory=dict)
    avoid_with: tuple[str, ...] = ()
    failback_s: float | None = None  # None: sticky
    exercise: Exercise | None = None

    def allows(self, node: str) -> bool:
        return self.nodes is None or node in self.nodes

    def weight(self, node: str) -> int:
        return int(self.prefer.get(node, 0))

    def canonical(self) -> dict[str, Any]:
        """For the roles digest: only what is set, so a spec without placement keeps its digest."""
        out: dict[str, Any] = {}
        if self.nodes is not None:
            out["nodes"] = sorted(self.nodes)
        if self.prefer:
            out["prefer"] = dict(sorted(self.prefer.items()))
        if self.avoid_with:
            out["avoid_with"] = sorted(self.avoid_with)
        if self.failback_s is not None:
            out["failback_s"] = self.failback_s
        if self.exercise is not None:
            out["exercise"] = [self.exercise.every_s, self.exercise.at, self.exercise.hold_s]
        return out


def _names(r: Reader, m: CommentedMap, key: str, path: str) -> tuple[str, ...] | None:
    node = m.get(key)
    if not isinstance(node, list) or not all(isinstance(x, str) for x in node):
        r.problem(r.line_of(m, key), f"{path}.{key}", f"must be a list of names, got {kind(node)}")
        return None
    if len(set(node)) != len(node):
        r.problem(r.line_of(m, key), f"{path}.{key}", "lists a name twice")
    return tuple(str(x) for x in node)


def _duration(r: Reader, m: CommentedMap, key: str, path: str, *, positive: bool = True) -> float | None:
    if key not in m:
        r.problem(r.line_of(m), f"{path}.{key}", "is required")
        return None
    try:
        v = parse_duration(m[key])
    except ValueError as err:
        r.problem(r.line_of(m, key), f"{path}.{key}", str(err))
        return None
    if positive and v <= 0:
        r.problem(r.line_of(m, key), f"{path}.{key}", "must be > 0")
        return None
    return v


def read_placement(r: Reader, m: CommentedMap, path: str) -> Placement:
    """The placement keys of one role mapping (syntax only; placement_problems checks the names)."""
    nodes = _names(r, m, "nodes", path) if "nodes" in m else None
    if nodes is not None and not nodes:
        r.problem(r.line_of(m, "nodes"), f"{path}.nodes", "must list at least one node (omit it for every node of the tier)")
    prefer: dict[str, int] = {}
    if "prefer" in m:
        pm = m.get("prefer")
        if not isinstance(pm, CommentedMap):
            r.problem(r.line_of(m, "prefer"), f"{path}.prefer", f"must be a mapping of node to weight, got {kind(pm)}")
        else:
            for node, w in pm.items():
                if isinstance(w, bool) or not isinstance(w, int) or not -MAX_WEIGHT <= w <= MAX_WEIGHT:
                    r.problem(r.line_of(pm, node), f"{path}.prefer.{node}",
                              f"must be a whole number -{MAX_WEIGHT}..{MAX_WEIGHT}, got {w!r}")
                else:
                    prefer[str(node)] = w
    avoid = (_names(r, m, "avoid_with", path) or ()) if "avoid_with" in m else ()
    failback = None
    if "failback" in m:
        fm = r.mapping(m.get("failback"), f"{path}.failback", {"delay_s"}, r.line_of(m, "failback"))
        if fm is not None:
            failback = _duration(r, fm, "delay_s", f"{path}.failback", positive=False)
    exercise = None
    if "exercise" in m:
        em = r.mapping(m.get("exercise"), f"{path}.exercise", {"every", "at", "hold"}, r.line_of(m, "exercise"))
        if em is not None:
            every = _duration(r, em, "every", f"{path}.exercise")
            at = r.get(em, "at", f"{path}.exercise", str, required=True, check=_hhmm)
            hold = _duration(r, em, "hold", f"{path}.exercise") if "hold" in em else 60.0
            if every is not None and at is not None and hold is not None:
                if hold * 2 >= every:
                    r.problem(r.line_of(em, "hold" if "hold" in em else "every"), f"{path}.exercise.hold",
                              f"{hold:g}s leaves no time between exercises every {every:g}s")
                else:
                    exercise = Exercise(every, at, hold)
    return Placement(nodes, prefer, avoid, failback, exercise)


def _hhmm(v: str) -> str | None:
    parts = v.split(":")
    if len(parts) == 2 and all(p.isdigit() for p in parts) and int(parts[0]) < 24 and int(parts[1]) < 60:
        return None
    return f"must be a time of day HH:MM, got {v!r}"


# What placement_problems reads of the spec, as protocols: spec.py calls it while it reads a file,
# so importing its classes here would make an import circle.
class NodeSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def priority(self) -> int: ...


class RoleSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def placement(self) -> Placement: ...


def placement_problems(r: Reader, roles_node: Any, roles: Mapping[str, RoleSpec],
                       nodes: Mapping[str, NodeSpec]) -> None:
    """Names that do not exist or are of another tier, and contradictions: a preferred node that
    may not hold the role, a role avoiding itself, failback with nothing preferred, two roles that
    must share their only node yet avoid each other, an exercise with no second node."""
    for role in roles.values():
        p = role.placement
        body = roles_node.get(role.name) if isinstance(roles_node, CommentedMap) else None
        body = body if isinstance(body, CommentedMap) else CommentedMap()
        path = f"roles.{role.name}"

        def line(key: str, body: CommentedMap = body, name: str = role.name) -> int:
            return r.line_of(body, key) if key in body else r.line_of(roles_node, name)

        tier_nodes = [n for n in nodes.values() if n.tier == role.tier]
        for n in p.nodes or ():
            if n not in nodes:
                r.problem(line("nodes"), f"{path}.nodes", f"no node named {n!r} (nodes: {', '.join(nodes)})")
            elif nodes[n].tier != role.tier:
                r.problem(line("nodes"), f"{path}.nodes", f"{n} is in tier {nodes[n].tier}; {role.name} runs on tier {role.tier}")
        allowed = [n.name for n in tier_nodes if p.allows(n.name)]
        for n in p.prefer:
            if n not in nodes:
                r.problem(line("prefer"), f"{path}.prefer.{n}", f"no node named {n!r} (nodes: {', '.join(nodes)})")
            elif nodes[n].tier != role.tier:
                r.problem(line("prefer"), f"{path}.prefer.{n}", f"{n} is in tier {nodes[n].tier}; {role.name} runs on tier {role.tier}")
            elif not p.allows(n):
                r.problem(line("prefer"), f"{path}.prefer.{n}",
                          f"{n} is preferred but not in {path}.nodes ({', '.join(p.nodes or ())}): it may never hold {role.name}")
        for other in p.avoid_with:
            if other == role.name:
                r.problem(line("avoid_with"), f"{path}.avoid_with", f"{role.name} cannot avoid itself")
            elif other not in roles:
                r.problem(line("avoid_with"), f"{path}.avoid_with", f"no role named {other!r} (roles: {', '.join(roles)})")
            elif roles[other].tier != role.tier:
                r.problem(line("avoid_with"), f"{path}.avoid_with",
                          f"{other} runs on tier {roles[other].tier}, {role.name} on {role.tier}: they never share a node")
            else:
                theirs = [n.name for n in tier_nodes if roles[other].placement.allows(n.name)]
                if len(allowed) == 1 and theirs == allowed:
                    r.problem(line("avoid_with"), f"{path}.avoid_with",
                              f"{role.name} and {other} may both only run on {allowed[0]}: they can never be apart")
        if p.failback_s is not None:
            weights = {p.weight(n) + nodes[n].priority for n in allowed if n in nodes}
            if len(weights) < 2:
                r.problem(line("failback"), f"{path}.failback",
                          "no node is preferred over another (set prefer: or different priorities): nothing to fail back to")
        if p.exercise is not None and len(allowed) < 2:
            r.problem(line("exercise"), f"{path}.exercise",
                      f"needs two nodes that may hold {role.name} (has {', '.join(allowed) or 'none'})")


__all__ = ["Exercise", "KEYS", "Placement", "placement_problems", "read_placement"]
