"""The fault schedule: a pure, seeded generator (same seed + same parameters -> same schedule).

A schedule is a list of *faults*; each fault is one thing going wrong for a while (an agent
frozen for 3.2 s, a partition store1|zk2 for 6 s, a link flapping every 0.4 s) and expands into
timed *actions* (freeze at 10.1 s, thaw at 13.3 s). Faults are the unit of shrinking: a subset of
faults is again a valid schedule, because every fault reverts what it did.

Why the per-host exclusivity: two process faults on one host (freeze, then power-off) would make
the second one's revert meaningless (thaw of a powered-off agent). Network faults are nft tables
of their own, so they overlap freely with anything, like real partitions do.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Sequence

#: fault kinds and their default weights (how often each is drawn)
KINDS: dict[str, float] = {
    "kill-agent": 2.0,   # SIGKILL the node agent; restarted at the end of the fault
    "freeze": 2.0,       # SIGSTOP the node agent; SIGCONT at the end
    "power-off": 1.5,    # a mail node: links down, every process killed; power-on at the end
    "partition": 3.0,    # two hosts (any: mail nodes, ZooKeeper servers, client, dns) can't talk
    "isolate": 1.0,      # one host loses the network (ARP too)
    "flap": 1.0,         # one host's network goes down/up every `period` seconds
    "zk-loss": 1.0,      # one ZooKeeper server powered off
    "quorum-loss": 0.5,  # two of three ZooKeeper servers powered off
}

#: failsafe mode's schedule (`chaos --failsafe on`, issue 13): the same kinds plus whole-ZooKeeper
#: outages and one mail node cut from every ZooKeeper server, the two ways a holder runs on its
#: peers' promises (docs/safety.md "Failsafe mode"); zk-cut of a holder while its peer still sees
#: ZooKeeper must end in a demotion, a zk-outage plus a partition store1|store2 too
FAILSAFE_KINDS: dict[str, float] = {
    **KINDS,
    "zk-outage": 1.5,    # every ZooKeeper server powered off
    "zk-cut": 1.5,       # one mail node (stores drawn more often) cut from every ZooKeeper server
}
ALL_KINDS = FAILSAFE_KINDS

HOT_WEIGHT = 3.0

#: action ops the runner knows
OPS = ("kill-agent", "start-agent", "freeze", "thaw", "power-off", "power-on", "cut", "uncut")


@dataclass(frozen=True)
class Hosts:
    """The names the generator may pick from (pure input: no lab needed to plan)."""

    mail: tuple[str, ...]  # hosts with an agent (relays, stores, fallback)
    zk: tuple[str, ...]  # ZooKeeper servers
    other: tuple[str, ...] = ()  # other lab hosts that may only be cut off (client, dns)
    hot: tuple[str, ...] = ()  # drawn HOT_WEIGHT times as often for host faults (the stores: the VIP)

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.mail, *self.zk, *self.other)

    @classmethod
    def default(cls) -> "Hosts":
        """The embedded lab spec's hosts."""
        return cls(("relay1", "relay2", "fallback", "store1", "store2"), ("zk1", "zk2", "zk3"), ("client", "dns"),
                   ("store1", "store2"))

    def pick(self, rng: random.Random, names: Sequence[str]) -> str:
        return rng.choices(list(names), weights=[HOT_WEIGHT if n in self.hot else 1.0 for n in names])[0]


@dataclass(frozen=True)
class Action:
    at: float  # seconds after the schedule's start
    op: str
    node: str
    peer: str | None = None  # cut: the other side of a partition (None = cut from everyone)
    table: str | None = None  # cut/uncut: the nft table that carries this fault
    fault: int = 0  # id of the fault this action belongs to


@dataclass(frozen=True)
class Fault:
    id: int
    kind: str
    start: float
    end: float
    nodes: tuple[str, ...]
    actions: tuple[Action, ...]
    period: float | None = None  # flap half-period
    to_heal: bool = False  # still in force when the schedule ends: the final heal reverts it

    def describe(self) -> str:
        who = "|".join(self.nodes) if self.kind == "partition" else ",".join(self.nodes)
        extra = f" every {self.period:.2f}s" if self.period else ""
        end = "final heal" if self.to_heal else f"{self.end:.2f}s"
        return f"#{self.id} {self.kind} {who} {self.start:.2f}s..{end}{extra}"


@dataclass(frozen=True)
class Params:
    duration_s: float = 60.0
    warmup_s: float = 3.0  # no fault before this (the cluster settles, the load starts)
    gap_s: tuple[float, float] = (0.5, 3.0)  # between two fault starts
    fault_s: tuple[float, float] = (1.0, 8.0)  # how long a fault lasts
    flap_period_s: tuple[float, float] = (0.2, 1.0)  # flap: half-period (down or up)
    max_active: int = 3  # faults in force at once
    weights: dict[str, float] = field(default_factory=lambda: dict(KINDS))

    def check(self) -> None:
        if not 0 < self.duration_s <= 24 * 3600:
            raise ValueError("duration_s must be in (0, 86400]")
        for name in ("gap_s", "fault_s", "flap_period_s"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi")
        if self.max_active < 1:
            raise ValueError("max_active must be >= 1")
        unknown = set(self.weights) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))} (known: {', '.join(ALL_KINDS)})")
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError("no fault kind has a positive weight")


@dataclass(frozen=True)
class Schedule:
    seed: int
    duration_s: float
    faults: tuple[Fault, ...]

    def actions(self) -> list[Action]:
        """Every action, in time order (ties: fault id, then the fault's own order)."""
        acts = [(a.at, f.id, i, a) for f in self.faults for i, a in enumerate(f.actions)]
        return [a for *_, a in sorted(acts, key=lambda x: x[:3])]

    def ids(self) -> list[int]:
        return [f.id for f in self.faults]

    def subset(self, ids: Iterable[int], compact: bool = False, warmup_s: float = 3.0, tail_s: float = 2.0) -> "Schedule":
        """The faults with these ids (same times). compact: shift them so the first starts at
        warmup_s, and end the schedule tail_s after the last fault ends, or, if one of them was
        left to the final heal, at the same moment relative to them (shorter re-runs)."""
        keep = set(ids)
        faults = tuple(f for f in self.faults if f.id in keep)
        if not compact or not faults:
            return replace(self, faults=faults)
        shift = min(f.start for f in faults) - warmup_s
        moved = tuple(replace(f, start=f.start - shift, end=f.end - shift,
                              actions=tuple(replace(a, at=round(a.at - shift, 3)) for a in f.actions))
                      for f in faults)
        if not any(f.to_heal for f in faults):
            end = max(f.end for f in moved) + tail_s
        else:
            end = self.duration_s - shift
        return Schedule(self.seed, round(end, 3), moved)

    def left_to_heal(self) -> list[int]:
        """Ids of the faults still in force when the schedule ends (the final heal reverts them)."""
        return [f.id for f in self.faults if f.to_heal]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.faults:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schedule":
        faults = []
        for f in d["faults"]:
            acts = tuple(Action(**a) for a in f["actions"])
            faults.append(Fault(f["id"], f["kind"], f["start"], f["end"], tuple(f["nodes"]), acts, f.get("period"),
                                bool(f.get("to_heal", False))))
        return cls(int(d["seed"]), float(d["duration_s"]), tuple(faults))


def _r(x: float) -> float:
    return round(x, 3)


def generate(seed: int, hosts: Hosts | None = None, params: Params | None = None) -> Schedule:
    """The schedule for `seed`: fault starts every gap_s, at most max_active in force; a fault
    that would end after duration_s is left to the final heal. Deterministic: only
    `random.Random(seed)` decides."""
    hosts = hosts or Hosts.default()
    p = params or Params()
    p.check()
    rng = random.Random(seed)
    busy: dict[str, float] = {}  # host -> until when a process fault (agent/power) holds it
    faults: list[Fault] = []
    kinds = sorted(k for k, w in p.weights.items() if w > 0)
    t = p.warmup_s
    while len(faults) < 100_000:
        t = _r(t + rng.uniform(*p.gap_s))
        if t > p.duration_s - 0.5:
            break
        active = sum(1 for f in faults if f.start <= t < f.end)
        if active >= p.max_active:
            continue
        free_mail = [h for h in hosts.mail if busy.get(h, 0.0) <= t]
        free_zk = [h for h in hosts.zk if busy.get(h, 0.0) <= t]
        feasible = [k for k in kinds if _feasible(k, hosts, free_mail, free_zk)]
        if not feasible:
            continue
        kind = rng.choices(feasible, weights=[p.weights[k] for k in feasible])[0]
        dur = _r(rng.uniform(*p.fault_s))
        end = _r(t + dur)
        fid = len(faults) + 1
        table = f"hcx_f{fid}"
        period = None
        if kind in ("kill-agent", "freeze", "power-off"):
            node = hosts.pick(rng, free_mail)
            nodes: tuple[str, ...] = (node,)
            back = {"kill-agent": "start-agent", "freeze": "thaw", "power-off": "power-on"}[kind]
            acts = [Action(t, kind, node, fault=fid), Action(end, back, node, fault=fid)]
            busy[node] = end
        elif kind in ("zk-loss", "quorum-loss", "zk-outage"):
            k = {"zk-loss": 1, "quorum-loss": 2}.get(kind, len(hosts.zk))
            nodes = tuple(sorted(rng.sample(free_zk, k)))
            acts = [Action(t, "power-off", n, fault=fid) for n in nodes]
            acts += [Action(end, "power-on", n, fault=fid) for n in nodes]
            for n in nodes:
                busy[n] = end
        elif kind == "partition":
            a, b = rng.sample(list(hosts.all), 2)
            nodes = (a, b)
            acts = [Action(t, "cut", a, peer=b, table=table, fault=fid), Action(end, "uncut", a, peer=b, table=table, fault=fid)]
        elif kind == "zk-cut":
            node = hosts.pick(rng, hosts.mail)
            nodes = (node,)
            # one table per ZooKeeper server: a partition table is rewritten whole on each side
            acts = [Action(t, "cut", node, peer=z, table=f"{table}z{i}", fault=fid) for i, z in enumerate(hosts.zk)]
            acts += [Action(end, "uncut", node, peer=z, table=f"{table}z{i}", fault=fid) for i, z in enumerate(hosts.zk)]
        elif kind == "isolate":
            node = hosts.pick(rng, hosts.mail + hosts.zk)
            nodes = (node,)
            acts = [Action(t, "cut", node, table=table, fault=fid), Action(end, "uncut", node, table=table, fault=fid)]
        else:  # flap
            node = hosts.pick(rng, hosts.mail + hosts.zk)
            nodes = (node,)
            period = _r(rng.uniform(*p.flap_period_s))
            acts = []
            x, down = t, True
            while x < end:
                acts.append(Action(_r(x), "cut" if down else "uncut", node, table=table, fault=fid))
                x, down = x + period, not down
            if not down:  # the last action was a cut: end up
                acts.append(Action(end, "uncut", node, table=table, fault=fid))
        # what would happen after duration_s is the final heal's job (so recovery is measured
        # from faults still in force, not from a cluster that already healed itself)
        acts = [a for a in acts if a.at <= p.duration_s]
        faults.append(Fault(fid, kind, t, end, nodes, tuple(acts), period, end > p.duration_s))
    return Schedule(seed, p.duration_s, tuple(faults))


def _feasible(kind: str, hosts: Hosts, free_mail: Sequence[str], free_zk: Sequence[str]) -> bool:
    if kind in ("kill-agent", "freeze", "power-off"):
        return bool(free_mail)
    if kind == "zk-loss":
        return len(free_zk) >= 1
    if kind == "quorum-loss":
        return len(free_zk) >= 2 and len(hosts.zk) >= 3
    if kind == "zk-outage":
        return bool(hosts.zk) and len(free_zk) == len(hosts.zk)
    if kind == "zk-cut":
        return bool(hosts.mail and hosts.zk)
    if kind == "partition":
        return len(hosts.all) >= 2
    return bool(hosts.mail or hosts.zk)


def parse_kinds(text: str | None, failsafe: bool = False) -> dict[str, float]:
    """"kill-agent,partition" -> weights of those kinds only (default weights); None -> all of
    the schedule's kinds (failsafe: FAILSAFE_KINDS, whose zk-outage and zk-cut only make sense
    with failsafe mode on, but may be asked for by name either way)."""
    base = FAILSAFE_KINDS if failsafe else KINDS
    if not text:
        return dict(base)
    names = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in names if k not in ALL_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kinds: {', '.join(unknown)} (known: {', '.join(ALL_KINDS)})")
    return {k: ALL_KINDS[k] for k in names}
