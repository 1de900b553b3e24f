"""The resource contract, modelled on Pacemaker's OCF resource agents.

Every resource the agent manages (a command, the VIP, the spool, the MTA instance, or any external
OCF script) answers start/stop/monitor/promote/demote with an OCF exit code. The agent starts a
role's resources in order on acquiring the role and stops them in reverse on losing it.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod


class OCF(enum.IntEnum):
    """OCF resource agent exit codes (same numbers as resource-agents' ocf-returncodes)."""

    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9

    @classmethod
    def of(cls, code: int) -> "OCF":
        try:
            return cls(code)
        except ValueError:
            return cls.ERR_GENERIC


class Resource(ABC):
    """One managed thing. Implementations must be idempotent: start on a running resource and
    stop on a stopped one return SUCCESS, as OCF requires."""

    #: name used in logs, metrics and `hacluster status`
    name: str
    #: runs on the standby too (the role's `run_on_standby`; the agent sets it): started when the
    #: agent starts, never stopped on losing the role, so a takeover only confirms it
    standby_running: bool = False

    @abstractmethod
    def start(self) -> OCF: ...

    @abstractmethod
    def stop(self) -> OCF: ...

    @abstractmethod
    def monitor(self) -> OCF:
        """SUCCESS when running, NOT_RUNNING when cleanly stopped, anything else is a failure."""

    def promote(self) -> OCF:
        return OCF.SUCCESS

    def demote(self) -> OCF:
        return OCF.SUCCESS

    def set_fencing_token(self, token: int) -> None:  # noqa: B027 - optional hook: a no-op where nothing is fenced
        """Called before start() with the lease's fencing token (the term); resources that can
        harm shared state (spool owner marker, replicator) record it and reject stale ones."""

    def lease_extended(self, until: float) -> None:  # noqa: B027 - optional hook: a no-op for most resources
        """Called after every acknowledged renewal with the holder's deadline (CLOCK_BOOTTIME
        seconds). Resources that must vanish with the lease (the VIP) hand it to a guard that
        outlives a frozen or killed agent."""

    def prepare(self) -> None:  # noqa: B027 - optional hook: a no-op for most resources
        """A takeover is near and the previous holder must be down by now (the verdict's probe_at,
        ha.py rule 10): run pre-start checks ahead (the VIP's duplicate-address probe, a warm
        smtpd). Must return at once and be idempotent; start() must not depend on it."""

    def unprepare(self) -> None:  # noqa: B027 - optional hook: a no-op for most resources
        """The lease moved after prepare() (a holder renewed, another took over): drop what the
        early checks found, which may be that holder, legitimately."""
