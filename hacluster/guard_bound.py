"""Inequality (S) for every resource of a role: what the role's guard process must do after the
deadline, and how long each step may take (docs/safety.md, "Every resource of the role").

(S) reads `margin_s >= stop_timeout_s + 2*max_drift*lease_s`: the holder's resources are down
`stop_timeout_s` after its deadline. The agent's own stop path is not bounded (an MTA's graceful
stop, an unmount waiting for busy files; a frozen agent does nothing at all), so the bound is the
guard's: it wakes at the deadline and removes the VIPs, kills the holder-only MTA and detaches a
shared spool. `config check` requires, per role,

    stop_timeout_s >= GUARD_WAKE_S + sum of the role's step bounds

and names the resources that make up the sum when it does not hold. The bounds are measured worst
cases with a 2x margin (tests/integration/test_self_fence_guard.py, a real Postfix with its queue
on a loop-device spool, both cores busy: VIP 0.01 s, MTA kill 0.013-0.024 s, lazy unmount
0.02-0.06 s, wake-up 0.001-0.006 s after the deadline; total 0.065-0.074 s).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple, Protocol, Sequence

from .timing import Timing


# What this module reads of the spec, as protocols: spec.py calls bound_problems_of while it reads
# a file, so importing its classes here would make an import circle.
class ResourceLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...


class RoleSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def resources(self) -> Sequence[ResourceLike]: ...
    @property
    def run_on_standby(self) -> Any: ...
    @property
    def vips(self) -> Sequence[Any]: ...


GUARD_WAKE_S = 0.01  # the guard's select() returns at the deadline; scheduling on a busy host
STEP_BOUND_S = {"vip": 0.005, "kill": 0.04, "umount": 0.08}


class Step(NamedTuple):
    resource: str
    kind: str  # vip | kill | umount
    bound_s: float


def guard_steps(role: RoleSpec) -> list[Step]:
    """The steps the role's guard takes at the deadline, from the spec alone (no resource built)."""
    out: list[Step] = []
    for res in role.resources:
        if res.name in role.run_on_standby:
            continue  # runs on the standby too: not the holder's, nothing to stop
        if res.type == "vip":
            out += [Step(res.name, "vip", STEP_BOUND_S["vip"]) for _ in role.vips]
        elif res.type == "mta":
            out.append(Step(res.name, "kill", STEP_BOUND_S["kill"]))
        elif res.type == "spool" and res.params.get("mode") == "shared":
            out.append(Step(res.name, "umount", STEP_BOUND_S["umount"]))
    return out


def role_bound_s(role: RoleSpec) -> float:
    steps = guard_steps(role)
    return GUARD_WAKE_S + sum(s.bound_s for s in steps) if steps else 0.0


def bound_problems_of(roles: Iterable[RoleSpec], t: Timing) -> list[tuple[str, str]]:
    out = []
    for role in roles:
        steps = guard_steps(role)
        total = role_bound_s(role)
        if steps and total > t.stop_timeout_s + 1e-9:
            parts = " + ".join(f"{s.resource} {s.kind} {s.bound_s:g}" for s in steps)
            out.append((role.name,
                        f"unsafe: stop_timeout_s ({t.stop_timeout_s:g}) is shorter than the guard's stop of role "
                        f"{role.name}: wake {GUARD_WAKE_S:g} + {parts} = {total:.3g} s; raise stop_timeout_s "
                        f"(and margin_s with it, inequality (S)) or use a slower timing profile"))
    return out
