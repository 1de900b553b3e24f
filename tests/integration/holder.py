"""Start integration tests from a known holder: the first election goes to whichever agent is up
first, and on a loaded machine node1 (the highest priority) can start after node2 took the role
(there is no automatic failback). Tests that assume node1 holds call `ensure_holder` first."""

from __future__ import annotations

import time
from typing import Any

from hacluster.errors import UserError
from hacluster_lab.localcluster import LocalCluster
from hacluster.operator.client import request


def ensure_holder(lc: LocalCluster, coord: Any, node: str = "node1", role: str = "store", timeout: float = 30.0) -> None:
    """Switch `role` over to `node` unless it holds it already (bounded by `timeout`)."""
    end = time.monotonic() + timeout
    asked = False
    while time.monotonic() < end:
        lease = coord.snapshot([role]).leases.get(role)
        holder = lease.holder if lease else None
        if holder == node:
            return
        if holder and not asked:
            try:  # refused while `node` has no heartbeat yet: try again
                request(lc.spec, coord, role, node, "switchover", "test-setup")
                asked = True
            except UserError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"{node} never took {role}\n" + lc.agent_log_tail(node))
