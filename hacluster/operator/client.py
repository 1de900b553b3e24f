"""The operator's commands: status, switchover, failover, maintenance, history (placement
constraints: placement_cli.py).

They talk to ZooKeeper directly (any host with ZooKeeper access, no agent needed) and change the
cluster only by writing requests the agents act on; the safety rules stay in the agents.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import click

from hacluster import clock
from hacluster.config_digest import describe, digest_of, majority, mismatches
from hacluster.drift import cluster_drift
from hacluster.coord.model import Cluster
from hacluster.coord.session import Coordinator
from hacluster.completion import complete_nodes, complete_roles
from hacluster.config_path import config_option
from hacluster.confirm import ask, needs_asking, yes_option
from hacluster.errors import UserError
from hacluster.health.queue import format_age, format_shape, queue_view
from hacluster.spec import ClusterSpec, load_spec


def zk_hint(spec: ClusterSpec) -> str:
    """What to check when ZooKeeper does not answer: which hosts, which config key, which file."""
    where = spec.source if spec.source != "<memory>" else "the cluster spec"
    return (f"tried {spec.zookeeper.connect_string} (zookeeper.hosts in {where}; -c/--config or $HACLUSTER_CONFIG "
            "choose the file); check that the servers run (`echo ruok | nc HOST PORT` answers imok) "
            "and that this host can reach them")


def _open(config: str | os.PathLike[str], *, roles: Iterable[str] = (),
          nodes: Iterable[str | None] = (),
          before_connect: Callable[[], None] | None = None) -> tuple[ClusterSpec, Coordinator]:
    """The spec and a connected coordinator; role and node names are checked against the spec
    first, so a typo is a usage error at once, not after a ZooKeeper connect. `before_connect`
    runs after the names are checked (the --yes check: a script fails at once, too)."""
    spec = load_spec(config)
    for r in roles:
        check_role(spec, r)
    for n in nodes:
        if n is not None:
            check_node(spec, n)
    if before_connect is not None:
        before_connect()
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        # kazoo warns on every reconnect attempt; the operator gets our one-line error instead (-v shows them)
        logging.getLogger("kazoo").setLevel(logging.ERROR)
    coord = Coordinator(spec, f"cli@{os.uname().nodename}", request_timeout=5.0)
    try:
        coord.start(timeout=5.0)
    except UserError as err:
        if "cannot reach ZooKeeper" not in str(err):
            raise
        raise UserError(f"cannot reach ZooKeeper within 5s: {zk_hint(spec)}", err.exit_code) from None
    return spec, coord


def _mta_order(spec: ClusterSpec, name: str) -> tuple[int, int, str]:
    """FallbackMX hosts first (their queue is the one that matters), then relays in MX order, then stores."""
    n = spec.nodes[name]
    tier_rank = {"fallback": 0, "relay": 1, "store": 2}.get(n.tier, 3)
    return (tier_rank, n.mx_preference if n.mx_preference is not None else 1 << 17, name)


def queues_of(spec: ClusterSpec, members: dict[str, Any]) -> dict[str, Any]:
    """Each MTA's live queue (from its queue check in the heartbeat), FallbackMX hosts first, and
    the FallbackMX total: mail waits there only while the normal path fails."""
    queues: dict[str, Any] = {}
    for name in sorted(spec.nodes, key=lambda n: _mta_order(spec, n)):
        m = members.get(name)
        q = queue_view(m["health"]) if m else None
        if q is not None:
            queues[name] = {"tier": spec.nodes[name].tier, **q}
    fb = [n for n, q in queues.items() if q["tier"] == "fallback"]
    silent = [n for n in spec.nodes if spec.nodes[n].tier == "fallback" and n not in queues]
    fb_total = sum(int(queues[n]["total"] or 0) for n in fb)
    fb_oldest = max((queues[n]["oldest_age_s"] for n in fb if queues[n]["oldest_age_s"] is not None), default=None)
    return {"queues": queues, "fallback_queue": {"nodes": fb, "total": fb_total, "oldest_age_s": fb_oldest,
                                                 "reporting": bool(fb), "silent": silent}}


def storage_of(spec: ClusterSpec, members: dict[str, Any]) -> dict[str, Any]:
    """Each node's RAID and spool check as last published: {storage: {node: {raid, spool}}} for
    the nodes that report either (severity, detail, path; raid also `simulated`: the lab's file
    standing in for /proc/mdstat)."""
    out: dict[str, Any] = {}
    for name in spec.nodes:
        m = members.get(name)
        health = m["health"] if m else {}
        row: dict[str, Any] = {}
        for check in ("raid", "spool"):
            res = health.get(check)
            if not isinstance(res, dict):
                continue
            raw = res.get("data")
            data: dict[str, Any] = raw if isinstance(raw, dict) else {}
            row[check] = {"severity": res.get("severity"), "ok": res.get("ok"), "detail": res.get("detail"),
                          "path": data.get("path"), **({"simulated": bool(data.get("simulated"))} if check == "raid" else {})}
        if row:
            out[name] = {"raid": row.get("raid"), "spool": row.get("spool")}
    return {"storage": out}


def cluster_status(spec: ClusterSpec, coord: Coordinator) -> dict[str, Any]:
    c = coord.snapshot(spec.roles, timeout=5.0)
    if not c.connected:
        raise UserError(f"ZooKeeper did not answer in time; status unknown: {zk_hint(spec)}", 1)
    now_ms = time.time() * 1000
    members = {}
    for name in spec.nodes:
        m = c.members.get(name)
        members[name] = None if m is None else {
            "tier": m.tier, "priority": m.priority, "healthy": m.healthy, "demote": m.demote,
            "penalty": m.penalty, "reasons": list(m.reasons), "heartbeat_age_s": round(m.heartbeat_age_s or 0, 3),
            "health": dict(m.health), "config": m.config.to_json() if m.config else None,
        }
    roles = {}
    for name in spec.roles:
        lease = c.leases.get(name)
        req = c.requests.get(name)
        roles[name] = {
            "holder": lease.holder if lease else None,
            "term": lease.term if lease else 0,
            "lease_age_s": round((now_ms - lease.mtime_ms) / 1000, 3) if lease and lease.mtime_ms else None,
            "handoff_to": lease.handoff_to if lease else None,
            "request": None if req is None else {"kind": req.kind, "to": req.to, "by": req.by, "age_s": round(time.time() - req.at, 1),
                                                 "not_before": req.not_before},
            "vips": [str(v.address) for v in spec.roles[name].vips],
        }
    wall = time.time()
    constraints = [{"name": k.name, "node": k.node, "role": k.role, "by": k.by, "at": k.at, "until": k.until,
                    "active": k.active(wall), "text": k.describe()} for k in c.constraints]
    return {"cluster": spec.name, "maintenance": c.maintenance, "members": members, "roles": roles,
            "constraints": constraints, "config": config_view(spec, c), "drift": drift_view(spec, c),
            **queues_of(spec, members), **storage_of(spec, members)}


def drift_view(spec: ClusterSpec, c: Cluster) -> dict[str, Any]:
    """node -> {against, items, text}: mail configuration differing within a tier (drift.py)."""
    return cluster_drift({n: m.tier for n, m in c.members.items()}, {n: m.health for n, m in c.members.items()},
                         {r: lease.holder for r, lease in c.leases.items()}, {r: spec.roles[r].tier for r in spec.roles})


def config_view(spec: ClusterSpec, c: Cluster) -> dict[str, Any]:
    """Whose timing/roles digest differs from the majority of agents or from our own spec file:
    {own, majority, mismatched: {node: {majority: [parts], own: [parts], text: [lines]}}}."""
    published = {n: m.config for n, m in c.members.items()}
    own, most = digest_of(spec), majority(published)
    by_most, by_own = mismatches(published, most), mismatches(published, own)
    out: dict[str, Any] = {}
    for n in sorted(set(by_most) | set(by_own)):
        got = published[n]
        text = [describe(n, parts, got, ref, what) for parts, ref, what in
                ((by_most.get(n), most, "the majority"), (by_own.get(n), own, f"this spec ({spec.source})"))
                if parts and ref is not None]  # parts only come with a reference: mismatches() says so
        out[n] = {"majority": by_most.get(n, []), "own": by_own.get(n, []), "text": text[:1] if "unknown" in
                  by_own.get(n, []) else text}
    return {"own": own.to_json(), "majority": most.to_json() if most else None, "mismatched": out}


def _print_status(st: dict[str, Any]) -> None:
    click.echo(f"cluster {st['cluster']}" + ("   ** MAINTENANCE: automatic placement paused **" if st["maintenance"] else ""))
    click.echo("\nROLE        HOLDER      TERM  LEASE-AGE  VIPS")
    for name, r in st["roles"].items():
        age = f"{r['lease_age_s']:.2f}s" if r["lease_age_s"] is not None else "-"
        holder = r["holder"] or ("(free" + (f", to {r['handoff_to']})" if r["handoff_to"] else ")"))
        click.echo(f"{name:<11} {holder:<11} {r['term']:>4}  {age:>9}  {' '.join(r['vips']) or '-'}")
        if r["request"]:
            q = r["request"]
            when = (f", scheduled at {time.strftime('%Y-%m-%d %H:%M', time.localtime(q['not_before']))}"
                    if q.get("not_before") else "")
            click.echo(f"{'':<11} pending {q['kind']} to {q['to'] or '(any)'} by {q['by']} {q['age_s']}s ago{when}")
    click.echo("\nNODE        TIER      PRIO  STATE      HEARTBEAT  NOTES")
    for name, m in st["members"].items():
        if m is None:
            click.echo(f"{name:<11} {'':<9} {'':>4}  {'DOWN':<9}  {'-':>9}  no agent in the cluster")
            continue
        state = "healthy" if m["healthy"] and not m["demote"] else ("demote" if m["demote"] else "unhealthy")
        differs = (st.get("config") or {}).get("mismatched", {}).get(name)
        drifted = (st.get("drift") or {}).get(name)
        notes = list(m["reasons"]) + ([f"CONFIG DIFFERS ({', '.join(sorted(set(differs['majority'] + differs['own'])))})"]
                                      if differs else []) + ([f"DRIFT ({', '.join(drifted['items'][:3])})"] if drifted else [])
        click.echo(f"{name:<11} {m['tier']:<9} {m['priority']:>4}  {state:<9}  {m['heartbeat_age_s']:>8.2f}s  {', '.join(notes)}")
    cons = [k for k in st.get("constraints") or [] if k["active"]]
    if cons:
        click.echo("\nCONSTRAINTS (ha.py rule 12; lift with `hacluster node unstandby NODE` / `role clear ROLE`)")
        for k in cons:
            click.echo(f"  {k['text']}")
    _print_config(st)
    _print_drift(st)
    _print_queues(st)
    _print_storage(st)


def _print_drift(st: dict[str, Any]) -> None:
    drift = st.get("drift") or {}
    if drift:
        click.echo("\n** MAIL CONFIG DRIFT (check: config_digest; a switchover or failover to these needs --force) **")
        for d in drift.values():
            click.echo(f"  {d['text']}")


def _print_config(st: dict[str, Any]) -> None:
    cfg = st.get("config") or {}
    bad = cfg.get("mismatched") or {}
    up = [n for n, m in st["members"].items() if m is not None]
    if not bad:
        if up:
            own = cfg["own"]
            click.echo(f"\nconfig: all {len(up)} agents run this spec's timing (lease_s {own['lease_s']:g}, "
                       f"margin_s {own['margin_s']:g}), roles and failsafe {'on' if own.get('failsafe') else 'off'}")
        return
    click.echo("\n** CONFIG DIFFERS between agents (candidates wait the longest promised lease: docs/safety.md) **")
    for d in bad.values():
        for line in d["text"]:
            click.echo(f"  {line}")
    if cfg.get("majority") is None and up:
        click.echo("  (no majority: as many agents run one config as another)")


def _print_queues(st: dict[str, Any]) -> None:
    fb = st.get("fallback_queue") or {}
    queues = st.get("queues") or {}
    if fb.get("reporting"):
        names = ", ".join(fb["nodes"])
        if fb["total"]:
            click.echo(f"\n** FallbackMX queue ({names}): {fb['total']} message(s) waiting, oldest "
                       f"{format_age(fb['oldest_age_s'])}: the normal mail path is failing **")
        else:
            click.echo(f"\nFallbackMX queue ({names}): empty")
    if fb.get("silent"):
        click.echo(f"\nFallbackMX queue of {', '.join(fb['silent'])}: unknown (no heartbeat, or no queue check "
                   "under health: fallback in the spec)")
    if not queues:
        click.echo("\nMTA queues: not reported (add `- {check: queue, config_dir: ...}` under health: TIER in the spec)")
        return
    qnames = ("active", "incoming", "deferred", "hold")
    click.echo("\nMTA QUEUE   TIER      TOTAL ACTIVE INCOMING DEFERRED HOLD  OLDEST  TOP DEFERRAL REASON")
    for name, q in queues.items():
        c = q["counts"]
        total = "?" if q["total"] is None else str(int(q["total"]))
        mark = "*" if q["tier"] == "fallback" else " "
        reason = f"{q['top_deferral_reasons'][0][0]} ({q['top_deferral_reasons'][0][1]})" if q["top_deferral_reasons"] else ""
        if not q["ok"]:
            reason = q["detail"] or "queue not readable"
        cells = "".join(f"{int(c.get(k, 0)):>{w}}" for k, w in zip(qnames, (7, 9, 9, 5), strict=True))
        extra = " growing" if q["growing"] else ""
        click.echo(f"{name + mark:<11} {q['tier']:<9} {total:>5}{cells}  {format_age(q['oldest_age_s']):>6}  "
                   f"{reason[:70]}{extra}")


def _print_storage(st: dict[str, Any]) -> None:
    storage = st.get("storage") or {}
    if not storage:
        click.echo("\nRAID and spool: not reported (add `- {check: raid}` / `- {check: spool, path: ...}` under "
                   "health: TIER in the spec)")
        return
    simulated = any((s.get("raid") or {}).get("simulated") for s in storage.values())
    click.echo("\nSTORAGE     CHECK  STATE  DETAIL" + ("   (RAID: simulated mdstat files; this lab has no md driver)"
                                                      if simulated else ""))
    for name, s in storage.items():
        first = True
        for check in ("raid", "spool"):
            res = s.get(check)
            if res is None:
                continue
            sev = res["severity"] or "?"
            mark = " [simulated]" if res.get("simulated") else ""
            click.echo(f"{name if first else '':<11} {check.upper() if check == 'raid' else check:<6} {sev:<5}  "
                       f"{res['detail'] or ''}{mark}")
            first = False


def _print_qshape(st: dict[str, Any]) -> None:
    queues = st.get("queues") or {}
    if not queues:
        click.echo("no MTA reports its queue (add `- {check: queue, config_dir: ...}` under health: TIER in the spec)")
        return
    for i, (name, q) in enumerate(queues.items()):
        role = " (FallbackMX)" if q["tier"] == "fallback" else ""
        click.echo(("\n" if i else "") + f"{name}{role}: messages by recipient domain and age in minutes, all queues")
        if q["shape"] is None:
            click.echo(f"  no shape reported ({q['detail'] or 'queue not readable'})")
            continue
        for line in format_shape(q["shape"]):
            click.echo(line)


def heartbeat_stale_s(spec: ClusterSpec) -> float:
    """A member whose heartbeat (refreshed every timing.heartbeat_s) is older than this has no live
    agent, even though its ephemeral znode lingers until ZooKeeper expires the session."""
    return spec.timing.heartbeat_stale_s


def _alive(spec: ClusterSpec, c: Cluster, name: str | None) -> tuple[bool, str]:
    """(agent alive?, why not) from the member znode and its heartbeat age."""
    m = c.members.get(name) if name else None
    if m is None:
        return False, "no heartbeat in ZooKeeper"
    age = m.heartbeat_age_s
    if age is not None and age > heartbeat_stale_s(spec):
        return False, f"last heartbeat {age:.1f}s ago"
    return True, ""


def check_role(spec: ClusterSpec, role: str) -> None:
    if role not in spec.roles:
        raise UserError(f"unknown role {role!r} (roles: {', '.join(spec.roles)})")


def check_node(spec: ClusterSpec, node: str) -> None:
    if node not in spec.nodes:
        raise UserError(f"unknown node {node!r} (nodes: {', '.join(spec.nodes)})")


def check_drift(spec: ClusterSpec, c: Cluster, role: str, to: str | None, kind: str) -> None:
    """A move to a node whose mail configuration differs (drift.py) needs --force: after it, mail
    for an account its maps lack bounces with 5.1.1. Without --to: any drifted candidate counts."""
    drift = drift_view(spec, c)
    tier = spec.roles[role].tier
    lease = c.leases.get(role)
    names = [to] if to is not None else [n for n in drift if spec.nodes.get(n) is not None
                                         and spec.nodes[n].tier == tier and n != (lease.holder if lease else None)]
    bad = [drift[n]["text"] for n in names if n in drift]
    if bad:
        raise UserError("; ".join(bad) + f": mail may bounce after the move; make the configuration equal "
                        f"(`hacluster status` shows it), or add --force to {kind} anyway", 1)


def check_target(spec: ClusterSpec, c: Cluster, role: str, to: str | None, *, forced: bool) -> None:
    """Refuse a request the agents would not carry out, saying why and what to do instead."""
    check_role(spec, role)
    lease = c.leases.get(role)
    if to is not None:
        check_node(spec, to)
        if spec.nodes[to].tier != spec.roles[role].tier:
            raise UserError(f"{to} is in tier {spec.nodes[to].tier}; role {role} runs on tier {spec.roles[role].tier}")
        if not spec.roles[role].placement.allows(to):
            raise UserError(f"{to} may not hold {role} (roles.{role}.nodes: "
                            f"{', '.join(spec.roles[role].placement.nodes or ())} in {spec.source})")
        alive, why = _alive(spec, c, to)
        if not alive:
            raise UserError(f"{to} has no running agent ({why}); start it first", 1)
        m = c.members[to]
        if not m.healthy or m.demote:
            raise UserError(f"{to} is not healthy ({', '.join(m.reasons) or 'unhealthy'}); fix it or choose another node", 1)
        if lease is not None and lease.holder == to:
            raise UserError(f"{to} already holds {role}", 1)
    holder_name = lease.holder if lease and lease.holder and lease.holder != "?" else None
    holder_alive, why = _alive(spec, c, holder_name)
    holder = c.members.get(holder_name) if holder_alive and holder_name else None
    if forced:
        if to is None:
            raise UserError("failover needs --to NODE")
        if holder is not None and holder.healthy and not holder.demote:
            raise UserError(f"{holder_name} holds {role} and is healthy; use `hacluster switchover {role} --to {to}` "
                            "(failover is for when no holder is healthy)", 1)
    else:
        if holder_name is None:
            raise UserError(f"nobody holds {role}; nothing to switch over (use failover to steer the next holder)", 1)
        if holder is None:
            raise UserError(f"the holder {holder_name} has no running agent ({why}); "
                            f"use `hacluster failover {role} --to NODE`", 1)
        if to is None and not any(m.healthy and not m.demote and m.tier == spec.roles[role].tier and m.name != holder_name
                                  and _alive(spec, c, m.name)[0] for m in c.members.values()):
            raise UserError(f"no other healthy node can take {role}", 1)
        if c.maintenance:
            raise UserError("the cluster is in maintenance mode: automatic placement and switchover are paused; "
                            f"`hacluster maintenance off` first (or `hacluster failover {role} --to NODE` if the holder is dead)", 1)


def request(spec: ClusterSpec, coord: Coordinator, role: str, to: str | None, kind: str, by: str,
            not_before: float | None = None, force: bool = False) -> None:
    c = coord.snapshot(spec.roles, timeout=5.0)
    if not c.connected:
        raise UserError(f"ZooKeeper did not answer in time; nothing changed: {zk_hint(spec)}", 1)
    check_target(spec, c, role, to, forced=(kind == "failover"))
    if not force:
        check_drift(spec, c, role, to, kind)
    coord.put_request(role, kind, to, by, not_before)
    coord.record(f"{kind}-requested", role, to=to, by=by, not_before=not_before)


def parse_at(text: str, now: float | None = None) -> float:
    """A switchover time: "HH:MM" (the next such local time) or an ISO 8601 date and time
    ("2026-12-05T03:00", local time unless it names its offset). Must lie ahead, within a year."""
    from datetime import datetime, timedelta

    now = time.time() if now is None else now
    try:
        if text.startswith("+"):  # relative: +30m, +2h, +90s (from when the command runs)
            from hacluster.units import parse_duration

            t = now + parse_duration(text[1:])
        elif len(text) <= 5 and ":" in text:
            hh, mm = (int(x) for x in text.split(":"))
            base = datetime.fromtimestamp(now)
            at = base.replace(hour=hh, minute=mm, second=0, microsecond=0)
            if at.timestamp() <= now:
                at += timedelta(days=1)
            t = at.timestamp()
        else:
            t = datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UserError(f"--at {text!r}: give HH:MM (the next such time), an ISO date and time "
                        "like 2026-12-05T03:00, or +DURATION (+2h)") from None
    if t <= now:
        raise UserError(f"--at {text}: that time has passed")
    if t - now > 366 * 86400:
        raise UserError(f"--at {text}: more than a year ahead")
    return t


def wait_holder(spec: ClusterSpec, coord: Coordinator, role: str, to: str | None, old: str | None, timeout: float) -> str | None:
    end = clock.now() + timeout
    while clock.now() < end:
        c = coord.snapshot([role], timeout=2.0)
        lease = c.leases.get(role)
        if lease and lease.holder and lease.holder != old and (to is None or lease.holder == to):
            return lease.holder
        time.sleep(0.05)
    return None


force_option = click.option("--force", is_flag=True,
                            help="Move even to a node whose mail configuration differs (check: config_digest).")
_config = config_option(lab_fallback=True)  # no spec here, but the embedded lab is up: use it


@click.command("status")
@_config
@click.option("--qshape", is_flag=True, help="Print each MTA's queue shape (destination x age, like Postfix's qshape).")
@click.option("--watch", is_flag=True, help="Show it again every --interval seconds until interrupted "
                                            "(like crm_mon or patronictl list -W); --json: one line per view.")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True)
@click.option("--count", type=click.IntRange(1, None), default=None, help="With --watch: stop after this many views.")
@click.option("--json", "as_json", is_flag=True)
def status_cmd(config: Path, qshape: bool, watch: bool, interval: float, count: int | None, as_json: bool) -> None:
    """Members with health and heartbeat age, role holders with term and lease age, MTA queues
    (the FallbackMX queue first)."""
    spec = load_spec(config)
    try:
        spec, coord = _open(config)
    except UserError as err:
        if err.exit_code != 1:
            raise
        _agents_instead(spec, err, as_json)
    shown = 0
    try:
        while True:
            try:
                st = cluster_status(spec, coord)
            except UserError as err:
                if err.exit_code != 1:
                    raise
                _agents_instead(spec, err, as_json)
            if as_json and qshape:  # only the queues, like the text form
                st = {"cluster": st["cluster"], "queues": st["queues"], "fallback_queue": st["fallback_queue"]}
            if watch and not as_json and sys.stdout.isatty():
                click.echo("\033[H\033[2J", nl=False)  # redraw in place, as crm_mon does
            if watch and not as_json:
                click.echo(f"-- {time.strftime('%Y-%m-%d %H:%M:%S')} (every {interval:g}s; ^C ends)")
            if as_json:
                click.echo(json.dumps(st, indent=None if watch else 2))
            elif qshape:
                _print_qshape(st)
            else:
                _print_status(st)
            shown += 1
            if not watch or (count is not None and shown >= count):
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return  # the way out of --watch: not an error
    finally:
        coord.stop()


def _agents_instead(spec: ClusterSpec, err: UserError, as_json: bool) -> NoReturn:
    """ZooKeeper did not answer: show what the agents themselves say (agents_view), then fail
    with ZooKeeper's error all the same (exit 1: the cluster status is unknown)."""
    from hacluster.agents_view import fetch, print_summary, summary

    view = summary(fetch(spec))
    if any(v is not None for v in view.values()):
        if as_json:
            click.echo(json.dumps({"cluster": spec.name, "zookeeper": "unreachable", "agents": view}, indent=2))
        else:
            print_summary(spec.name, view)
    raise err


def _confirm_move(spec: ClusterSpec, coord: Coordinator, role: str, to: str | None, kind: str,
                  when: str = "now") -> None:
    """Ask on the terminal, naming the current holder and the target (confirm.py)."""
    lease = coord.snapshot([role], timeout=5.0).leases.get(role)
    holder = lease.holder if lease and lease.holder else "(nobody)"
    ask(f"{kind} {role} from {holder} to {to or '(best candidate)'} {when}?")


def _schedule(config: Path, role: str, to: str | None, at: str, yes: bool, force: bool, as_json: bool) -> None:
    """A switchover the holder carries out at `at` (ha.py rule 4), not now."""
    not_before = parse_at(at)
    asking: list[bool] = []
    spec, coord = _open(config, roles=[role], nodes=[to],
                        before_connect=lambda: asking.append(needs_asking(yes, f"switchover of {role} at {at}")))
    try:
        if asking[0]:
            _confirm_move(spec, coord, role, to, "switch over",
                          "at " + time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(not_before)))
        request(spec, coord, role, to, "switchover", f"cli@{os.uname().nodename}", not_before, force)
    finally:
        coord.stop()
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(not_before))
    if as_json:
        click.echo(json.dumps({"role": role, "kind": "switchover", "to": to, "scheduled_at": not_before, "done": False}))
    else:
        click.echo(f"switchover of {role} to {to or '(best candidate)'} scheduled at {when} "
                   f"(in {not_before - time.time():.0f}s); `hacluster switchover {role} --cancel` drops it")


def _cancel(config: Path, role: str, as_json: bool) -> None:
    spec, coord = _open(config, roles=[role])
    try:
        c = coord.snapshot([role], timeout=5.0)
        req = c.requests.get(role)
        if req is not None:
            coord.clear_request(role, req.version)
            coord.record("switchover-cancelled", role, by=f"cli@{os.uname().nodename}")
    finally:
        coord.stop()
    if as_json:
        click.echo(json.dumps({"role": role, "cancelled": req is not None}))
    else:
        click.echo(f"{role}: request cancelled" if req is not None else f"{role}: no pending request")


def _switch(config: Path, role: str, to: str | None, kind: str, wait: float, yes: bool, force: bool,
            as_json: bool) -> None:
    asking: list[bool] = []  # decided before the connect: a script without --yes fails at once
    spec, coord = _open(config, roles=[role], nodes=[to],
                        before_connect=lambda: asking.append(needs_asking(yes, f"{kind} of {role}")))
    try:
        if asking[0]:
            _confirm_move(spec, coord, role, to, "switch over" if kind == "switchover" else "fail over")
        before = coord.snapshot([role], timeout=5.0).leases.get(role)
        old = before.holder if before else None
        t0 = clock.now()
        request(spec, coord, role, to, kind, f"cli@{os.uname().nodename}", force=force)
        new = wait_holder(spec, coord, role, to, old, wait) if wait > 0 else None
        took = clock.now() - t0
    finally:
        coord.stop()
    if as_json:
        click.echo(json.dumps({"role": role, "kind": kind, "from": old, "to": new, "seconds": round(took, 3), "done": new is not None}))
    elif wait > 0:
        if new is None:
            raise UserError(f"{kind} of {role} requested, but no new holder after {wait:g}s; see `hacluster status`", 1)
        click.echo(f"{role}: {old or '(none)'} -> {new} in {took:.3f}s")
    else:
        click.echo(f"{kind} of {role} to {to or '(best candidate)'} requested")
    if wait > 0 and new is None:
        raise click.exceptions.Exit(1)


@click.command("switchover")
@_config
@click.argument("role", shell_complete=complete_roles)
@click.option("--to", "to", default=None, shell_complete=complete_nodes,
              help="Target node (default: the best healthy candidate).")
@click.option("--wait", type=float, default=10.0, show_default=True, help="Seconds to wait for the new holder (0: don't).")
@click.option("--at", "at", default=None, metavar="TIME",
              help="Schedule it: HH:MM (the next such local time), an ISO date and time (2026-12-05T03:00) "
                   "or +DURATION from now (+2h).")
@click.option("--cancel", is_flag=True, help="Drop the pending (scheduled) request of ROLE.")
@yes_option
@force_option
@click.option("--json", "as_json", is_flag=True)
def switchover_cmd(config: Path, role: str, to: str | None, wait: float, at: str | None, cancel: bool,
                   yes: bool, force: bool, as_json: bool) -> None:
    """Graceful move: the holder stops its resources, then hands the lease to the target.

    With --at the holder does it at that time (a store moved at 03:00); status shows it pending.
    Asks first on a terminal; without one, --yes is required."""
    if cancel:
        if at or to:
            raise UserError("--cancel takes no --to or --at")
        _cancel(config, role, as_json)
    elif at is not None:
        _schedule(config, role, to, at, yes, force, as_json)
    else:
        _switch(config, role, to, "switchover", wait, yes, force, as_json)


@click.command("failover")
@_config
@click.argument("role", shell_complete=complete_roles)
@click.option("--to", "to", required=True, shell_complete=complete_nodes, help="The node that should take the role.")
@click.option("--wait", type=float, default=10.0, show_default=True)
@yes_option
@force_option
@click.option("--json", "as_json", is_flag=True)
def failover_cmd(config: Path, role: str, to: str, wait: float, yes: bool, force: bool, as_json: bool) -> None:
    """Forced: when no holder is healthy, make NODE the next holder (after the old lease expires).

    Asks first on a terminal; without one, --yes is required."""
    _switch(config, role, to, "failover", wait, yes, force, as_json)


@click.command("maintenance")
@_config
@click.argument("state", type=click.Choice(["on", "off", "status"]))
@click.option("--json", "as_json", is_flag=True)
def maintenance_cmd(config: Path, state: str, as_json: bool) -> None:
    """Pause (on) or resume (off) automatic placement; holders keep their roles while paused."""
    spec, coord = _open(config)
    try:
        if state != "status":
            coord.set_maintenance(state == "on", f"cli@{os.uname().nodename}")
            coord.record(f"maintenance-{state}", None)
        on = coord.zk.exists(coord.paths.maintenance) is not None
    finally:
        coord.stop()
    if as_json:
        click.echo(json.dumps({"cluster": spec.name, "maintenance": on, "changed": state != "status"}))
    else:
        click.echo(f"maintenance {'on' if on else 'off'}")


@click.command("history")
@_config
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def history_cmd(config: Path, limit: int, as_json: bool) -> None:
    """The append-only record of transitions, oldest first."""
    spec, coord = _open(config)
    try:
        items = coord.history(limit)
    finally:
        coord.stop()
    if as_json:
        click.echo(json.dumps({"history": items}, indent=2))
        return
    for it in items:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(it.get("at", 0)))
        extra = " ".join(f"{k}={v}" for k, v in it.items() if k not in ("at", "node", "event", "role", "seq") and v is not None)
        click.echo(f"{stamp} {it.get('node', '?'):<12} {it.get('event', '?'):<22} {it.get('role') or '-':<9} {extra}")
