"""What a drill drives: the namespace lab here, the VM lab over SSH (hacluster_lab.drill.vagrant).

A `Target` is the small set of verbs a playbook needs; the runner knows nothing else about the
lab. Times are CLOCK_MONOTONIC seconds (`time.monotonic()`), the clock of the invariant monitor
and of the lab's fault log, so one timeline holds steps, faults, VIP changes and mail.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from hacluster.errors import UserError

#: the file a spool-full step writes to fill the spool's filesystem (restore removes it)
FILL_NAME = ".hacluster-drill-fill"


@dataclass(frozen=True)
class RoleInfo:
    name: str
    tier: str
    vip: str  # the VIP the invariant monitor follows (the role's first address)
    candidates: tuple[str, ...]  # the tier's nodes, highest priority first


@dataclass
class MonitorData:
    """What the runner needs from an invariant monitor, whatever samples it."""

    transitions: list[dict[str, Any]] = field(default_factory=list)  # {t, vip, holders}
    dual_holder_samples: int = 0
    dual_holder_intervals: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    max_gap_s: float = 0.0
    t_end: float = 0.0
    errors: list[str] = field(default_factory=list)


def monitor_data(rep: Any | None) -> MonitorData:
    """A stopped invariant monitor's report (lab/monitor.py) as the runner reads it; None: no
    monitor was running."""
    if rep is None:
        return MonitorData(t_end=time.monotonic())
    return MonitorData(rep.transitions, rep.dual_holder_samples, rep.dual_holder_intervals, rep.samples,
                       rep.max_gap_s, time.monotonic(), rep.errors)


def vip_holders(info: RoleInfo, mon: Any | None, ask: Callable[[RoleInfo], list[str]]) -> list[str]:
    """Who holds the role's VIP: the running invariant monitor's last sample, else `ask` now."""
    if not info.vip:
        return []
    if mon is not None:
        return list(mon.holders(info.vip))
    return ask(info)


class Target(abc.ABC):
    """The verbs of a drill. Implementations raise hacluster.errors.UserError with a clear message."""

    name = "target"

    # -- lifecycle
    @abc.abstractmethod
    def open(self) -> None:
        """Make the target usable (bring the lab up, or check the VMs answer). Idempotent."""

    @abc.abstractmethod
    def close(self) -> None:
        """Undo open() (tear down what open() built)."""

    @abc.abstractmethod
    def restore(self) -> dict[str, Any]:
        """Undo every fault now (heal, power on, thaw, healthy RAID sample, free spool, maintenance
        off, start missing agents), without waiting for the cluster to settle."""

    def cannot_run(self, pb: Any) -> str | None:
        """Why this target cannot run the playbook at all (it needs a lab set-up, a spec variant or
        a step the target does not have), or None. The drill is then reported as not applicable,
        with this reason, and run nowhere -- not judged as passed or failed."""
        return None

    def use_spec(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Run the agents on the target's spec with these cluster-level keys changed (a playbook's
        `spec:`), or on the target's own spec when empty. Returns what it changed for the drill
        report ({} when the agents already ran that spec: `spec`, and the seconds it took to roll
        out). Targets that cannot change their agents' spec refuse any override."""
        if overrides:
            raise UserError(f"the {self.name} target cannot run a drill with spec overrides "
                            f"({', '.join(sorted(overrides))}): set them in its cluster spec instead")
        return {}

    @abc.abstractmethod
    def baseline(self, timeout_s: float) -> dict[str, Any]:
        """Undo any leftover fault and wait until the cluster is whole: every host on, agents up,
        ZooKeeper serving, one holder per role, queues empty. Returns what it had to fix."""

    # -- shape
    @abc.abstractmethod
    def hosts(self) -> set[str]: ...

    @abc.abstractmethod
    def roles(self) -> dict[str, RoleInfo]: ...

    @abc.abstractmethod
    def zk_hosts(self) -> list[str]: ...

    # -- observation
    @abc.abstractmethod
    def start_monitor(self, duration_s: float) -> None: ...

    @abc.abstractmethod
    def stop_monitor(self) -> MonitorData: ...

    @abc.abstractmethod
    def holders(self, role: str) -> list[str]:
        """Who holds the role's VIP now."""

    @abc.abstractmethod
    def powered_off(self) -> set[str]: ...

    @abc.abstractmethod
    def zk_modes(self) -> dict[str, str | None]: ...

    @abc.abstractmethod
    def member(self, node: str) -> dict[str, Any] | None:
        """The node's membership record as the cluster sees it (healthy, demote, reasons)."""

    @abc.abstractmethod
    def queue_lengths(self, nodes: list[str] | None) -> dict[str, int | None]:
        """Queued messages per MTA host (None: cannot tell, e.g. powered off)."""

    @abc.abstractmethod
    def mta_hosts(self) -> list[str]: ...

    # -- actions (each returns a record with t_mono)
    @abc.abstractmethod
    def fault(self, kind: str, node: str | None, peer: list[str] | None) -> dict[str, Any]: ...

    @abc.abstractmethod
    def switchover(self, role: str, to: str | None, wait_s: float) -> dict[str, Any]: ...

    @abc.abstractmethod
    def maintenance(self, on: bool) -> dict[str, Any]: ...

    def imap_read(self, user: str, token: str | None = None) -> dict[str, Any]:
        """Log in over IMAP (TLS) through the store VIP as `user` and count its INBOX:
        {"messages": N, "found": bool (the message carrying `token`), "server", "t_mono"} or {"error": why}."""
        return {"error": "this target has no IMAP step"}

    def set_placement(self, role: str, placement: dict[str, Any] | None) -> dict[str, Any]:
        """Run the role's tier agents with these `roles.ROLE` placement keys (None: the spec as
        it was), restarted one at a time, the holder last (it hands the role off)."""
        raise NotImplementedError("this target cannot change the placement of its spec")

    def send_probe(self, user: str) -> str:
        """Send `user` a message by MX from the client; returns the token it carries."""
        raise NotImplementedError("this target cannot send a probe message")

    @abc.abstractmethod
    def operator(self, args: list[str], timeout: float = 30.0) -> dict[str, Any]:
        """`hacluster ARGS --json` as an operator runs it: its JSON answer plus `rc` (and `error`)."""

    @abc.abstractmethod
    def raid_sample(self, node: str, sample: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def spool_fill(self, node: str, fill: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def flush_queues(self) -> None:
        """Ask every running MTA to retry deferred mail now."""

    # -- mail
    @abc.abstractmethod
    def start_traffic(self, rate_per_s: float, connections: int) -> None: ...

    @abc.abstractmethod
    def stop_traffic(self) -> list[Any]:
        """Stop the sender; its submissions (objects with msgid, accepted, t)."""

    @abc.abstractmethod
    def audit(self, submissions: list[Any], wait_s: float) -> dict[str, Any]:
        """The mail ledger: accepted, delivered_once, lost, duplicates, ... (hacluster_lab.lab.mailload)."""

    def fence_report(self) -> dict[str, Any] | None:
        """Host fencing seen during the run: {"fences": [{node, target, ok, seconds, t}], "writes":
        [{t, host}]} (times CLOCK_MONOTONIC); None where the target cannot tell."""
        return None

def json_answer(stdout: str, stderr: str, rc: int) -> dict[str, Any]:
    """A CLI's `--json` answer (its last line) with `rc`; `error` with the tail of its output when
    it failed or printed no JSON."""
    import json

    try:
        out = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
        out = out if isinstance(out, dict) else {"answer": out}
    except ValueError:
        out = {}
    out["rc"] = rc
    if rc != 0 or not out:
        out["error"] = (stderr or stdout).strip()[-300:]
    return out
