"""What a lease write came to, as a value the agent matches on once.

`Coordinator.acquire` and `Coordinator.renew` used to answer with a tuple, None or a string
("adopt:N", "lost", "error") that the agent decoded twice; these frozen types say the same with
nothing to parse:

- `Acquired(term, version, t_send)`: the lease is ours from this write (acquire only).
- `Renewed(version, t_send)`: our renewal landed and was acknowledged (renew only).
- `Adopted(version)`: the CAS failed, but the znode names us at our term: an earlier renewal of
  ours that timed out landed after all. Its send time is unknown, so it extends nothing.
- `Lost()`: someone else's write is there (renew: demote now; acquire: the lease changed under
  us or another node won the race).
- `Unreachable(reason)`: ZooKeeper did not answer (or we must not write now): nothing is known
  to have landed; try again next loop.

t_send is read (CLOCK_BOOTTIME) *before* the write is sent: the deadline counts from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Acquired:
    term: int
    version: int
    t_send: float


@dataclass(frozen=True)
class Renewed:
    version: int
    t_send: float


@dataclass(frozen=True)
class Adopted:
    version: int


@dataclass(frozen=True)
class Lost:
    pass


@dataclass(frozen=True)
class Unreachable:
    reason: str = ""


AcquireResult = Acquired | Lost | Unreachable
RenewResult = Renewed | Adopted | Lost | Unreachable

