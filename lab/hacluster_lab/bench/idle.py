"""What an idle cluster costs: the agents' CPU and their ZooKeeper writes while nothing happens.

Both are measured, not estimated: CPU with psutil over the window, writes as the advance of the
ensemble's last zxid (`srvr`), which goes up by one for every committed write transaction (set,
create, delete, multi, session create/close) whoever sent it; pings and reads leave it alone.
During the window the agents are the only clients, so the advance divided by agents and seconds
is each agent's write rate on average (issue 14: targets <= 1 % CPU and <= 1 write/s per agent).

Per agent, the transactions themselves say who wrote: the leader's transaction log
(bench/txnlog.py) names the session of every write in the window, and an agent's session is the
ephemeral owner of its member znode. Each agent's writes are listed by kind and path
(`txns_by_agent`), so a write nobody expected cannot hide; a transaction of no agent's session
is counted as `unattributed`. The znodes' version deltas (a member's with each heartbeat, the
lease's with each renewal) are kept beside it as `znode_writes_per_s`: a multi moves two versions
in one transaction.
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

import psutil

from kazoo.exceptions import NoNodeError

from hacluster.coord.session import Coordinator
from ..localcluster import LocalCluster
from hacluster.zkserver import ZooKeeperEnsemble
from .txnlog import Txn, transactions

_ZXID = re.compile(r"^Zxid:\s*(0x[0-9a-fA-F]+)", re.M)
_RECEIVED = re.compile(r"^Received:\s*(\d+)", re.M)


def parse_zxid(srvr_answer: str) -> int | None:
    """The `Zxid:` of a `srvr` answer (epoch in the high 32 bits, counter in the low 32)."""
    m = _ZXID.search(srvr_answer)
    return int(m.group(1), 16) if m else None


def last_zxid(ens: ZooKeeperEnsemble, sid: int | None = None) -> int:
    """The leader's last zxid (a follower may lag a few transactions behind); `sid`: the leader,
    already looked up (then this is one `srvr` round trip, which the window is timed around)."""
    sid = sid if sid is not None else ens.leader_id()
    answer = ens.srvr(sid) if sid is not None else None
    zxid = parse_zxid(answer or "")
    if zxid is None:
        raise RuntimeError(f"no Zxid in the srvr answer of zk{sid}: {answer!r}")
    return zxid


def received(ens: ZooKeeperEnsemble) -> int:
    """Packets all servers received (`srvr` Received: requests, reads included, and pings): what
    the agents' every-loop snapshot reads cost, next to the writes."""
    total = 0
    for sid in ens.running_ids():
        m = _RECEIVED.search(ens.srvr(sid) or "")
        total += int(m.group(1)) if m else 0
    return total


def writes_between(before: int, after: int) -> int:
    """Transactions committed between two zxids of the same epoch (an election starts a new
    epoch and resets the counter: then the window is not comparable and we say so)."""
    if before >> 32 != after >> 32:
        raise RuntimeError("ZooKeeper elected a new leader during the idle window; measure again")
    return after - before


def znode_versions(coord: Coordinator, nodes: list[str], roles: list[str]) -> dict[str, tuple[int, str | None]]:
    """path -> (version, holder) of every member and lease znode (version -1: absent)."""
    out: dict[str, tuple[int, str | None]] = {}
    for n in nodes:
        try:
            out[coord.paths.member(n)] = (coord.zk.get(coord.paths.member(n))[1].version, n)
        except NoNodeError:
            out[coord.paths.member(n)] = (-1, n)
    leases = coord.snapshot(roles, timeout=5.0).leases
    for r in roles:
        lease = leases.get(r)
        out[coord.paths.lease(r)] = (lease.version, lease.holder) if lease else (-1, None)
    return out


def attribute(v0: dict[str, tuple[int, str | None]], v1: dict[str, tuple[int, str | None]]) -> dict[str, int]:
    """Writes per agent from the version deltas (a znode whose writer changed, or that was
    re-created, is left out: the zxid total still counts it, as unattributed)."""
    out: dict[str, int] = {}
    for path, (ver0, who0) in v0.items():
        ver1, who1 = v1.get(path, (-1, None))
        if who0 is not None and who0 == who1 and ver0 >= 0 and ver1 >= ver0:
            out[who0] = out.get(who0, 0) + ver1 - ver0
    return out


def sessions(coord: Coordinator, nodes: list[str]) -> dict[int, str]:
    """session id -> agent: the owner of each agent's ephemeral member znode."""
    out: dict[int, str] = {}
    for n in nodes:
        try:
            out[coord.zk.get(coord.paths.member(n))[1].ephemeralOwner] = n
        except NoNodeError:
            pass
    return out


def txn_kinds(txns: list[Txn], root: str) -> dict[str, int]:
    """'set /roles/x/lease' -> count ('multi set A + set B' for a multi), paths under the chroot."""
    out: dict[str, int] = {}
    for t in txns:
        # a refused write (a CAS on a moved version) is logged too, as an error transaction without a path
        parts = " + ".join(p.removeprefix(root) or "(refused)" for p in t.paths)
        key = f"{t.op} {parts}" if t.op != "multi" else f"multi({parts})"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def idle_window(lc: LocalCluster, ens: ZooKeeperEnsemble, seconds: float) -> dict[str, Any]:
    """CPU % of one core per agent and ZooKeeper writes/s per agent (p50/max over agents)."""
    procs = {n: psutil.Process(p.pid) for n, p in lc.procs.items()}
    roles = list(lc.spec.roles)
    coord = Coordinator(lc.spec, "bench-idle", request_timeout=5.0)
    coord.start()  # its session's create is a write too: before the window opens
    try:
        for p in procs.values():
            p.cpu_percent(None)
        # the window is timed right around the two zxid reads (the leader looked up before): the
        # other reads at either end take a while on a loaded machine, and writes made meanwhile
        # would count against a window that does not include them (a rate biased upwards)
        v0, r0, sid = znode_versions(coord, list(procs), roles), received(ens), ens.leader_id()
        z0, t0 = last_zxid(ens, sid), time.monotonic()
        time.sleep(seconds)
        cpu = {n: p.cpu_percent(None) for n, p in procs.items()}
        t1 = time.monotonic()
        z1 = last_zxid(ens, sid)
        r1, v1 = received(ens), znode_versions(coord, list(procs), roles)
        who = sessions(coord, list(procs))
        root = coord.paths.root  # the chroot and the cluster
    finally:
        coord.stop()
    window = t1 - t0
    writes = writes_between(z0, z1)
    leader = ens.leader_id()
    log = transactions(ens.server_dir(leader if leader is not None else ens.running_ids()[0]) / "data", z0, z1)
    mine: dict[str, list[Txn]] = {n: [] for n in procs}
    for t in log:
        if t.session in who:
            mine[who[t.session]].append(t)
    by_agent = {n: len(mine[n]) / window for n in sorted(procs)}
    versions = {n: attribute(v0, v1).get(n, 0) / window for n in sorted(procs)}
    return {
        "agent_cpu_pct_idle": {"p50": round(statistics.median(cpu.values()), 2), "max": round(max(cpu.values()), 2),
                               "by_agent": {n: round(v, 2) for n, v in sorted(cpu.items())}},
        "zk_writes_per_s_idle": {
            "p50": round(statistics.median(by_agent.values()), 3), "max": round(max(by_agent.values()), 3),
            "by_agent": {n: round(v, 3) for n, v in by_agent.items()},
            "mean_per_agent": round(writes / len(procs) / window, 3), "total": round(writes / window, 3),
            "unattributed": writes - sum(len(v) for v in mine.values()), "window_s": round(window, 2),
            "txns_in_log": len(log),
            "znode_writes_per_s": {n: round(v, 3) for n, v in versions.items()},
            # what the transaction log grows by on every server, per agent
            "log_bytes_per_s": {n: round(sum(t.size for t in mine[n]) / window) for n in sorted(procs)},
        },
        # every write of each agent in the window, by kind and path
        "txns_by_agent": {n: txn_kinds(mine[n], root) for n in sorted(procs)},
        # every request incl. reads and pings, per agent: the snapshot reads behind the idle CPU
        "zk_requests_per_s_idle": {"mean_per_agent": round((r1 - r0) / len(procs) / window, 1)},
    }
