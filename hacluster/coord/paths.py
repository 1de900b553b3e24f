"""Where everything lives in ZooKeeper (below the spec's chroot).

    /<cluster>/members/<node>      ephemeral; JSON health (the heartbeat): on change, else every heartbeat_s
    /<cluster>/roles/<role>/lease  {holder, term, seq, handoff_to, lease_s, margin_s}; CAS-renewed by the holder
    /<cluster>/requests/<role>     switchover/failover request {kind, to, by, at}
    /<cluster>/maintenance         present = paused
    /<cluster>/constraints/<name>  placement: `standby@NODE` (every role) or `ban@ROLE@NODE`, {by, at, until}
    /<cluster>/history/h-          sequential nodes, one per transition
"""

from __future__ import annotations


class Paths:
    def __init__(self, cluster: str) -> None:
        self.root = f"/{cluster}"
        self.members = f"{self.root}/members"
        self.roles = f"{self.root}/roles"
        self.requests = f"{self.root}/requests"
        self.maintenance = f"{self.root}/maintenance"
        self.history = f"{self.root}/history"
        self.constraints = f"{self.root}/constraints"

    def member(self, node: str) -> str:
        return f"{self.members}/{node}"

    def lease(self, role: str) -> str:
        return f"{self.roles}/{role}/lease"

    def request(self, role: str) -> str:
        return f"{self.requests}/{role}"

    def constraint(self, name: str) -> str:
        return f"{self.constraints}/{name}"

    def all_dirs(self) -> tuple[str, ...]:
        return (self.members, self.roles, self.requests, self.history, self.constraints)
