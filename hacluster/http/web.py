"""`hacluster web`: a live status page for operators, read straight from ZooKeeper.

One stdlib HTTP server (like the agent API: a page, two JSON endpoints and one write don't justify
a framework) serving

    GET  /                 the page (HTML, CSS and JS from hacluster/web_static; no CDN, no network)
    GET  /api/status       the cluster as the page draws it (`view_model`), refreshed every --interval
    GET  /api/auth         200 if the bearer token is right (the page checks a token once, then keeps
                           it in sessionStorage), 401 if wrong, 403 if writes are disabled
    POST /api/switchover   {"role": R, "to": NODE|null} with `Authorization: Bearer TOKEN`

With `failsafe: true` the same thread also asks every agent's API for its own view (GET /status,
hacluster/agents_view.py, as `hacluster status` does when ZooKeeper is down): which roles a holder
keeps on its peers' confirmations alone, and which promises the peers gave -- ZooKeeper is not
asked for that, so it is shown in an outage too (`failsafe_view`).

ZooKeeper is read by one background thread while somebody is looking (a page polls every second),
so any number of browsers cost one snapshot per interval and a slow ZooKeeper never stalls a
request: the page is told how old its data is instead. Writes go through `operator.request`, so the
page refuses exactly what `hacluster switchover` refuses, with the same words.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
import time
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from hacluster.coord.session import ZK_ERRORS, Coordinator
from hacluster.config_path import config_option
from hacluster.errors import UserError
from .handler import JsonHandler, Server, read_token
from .switchover_body import switchover_fields
from hacluster.health.queue import queue_view
from hacluster.spec import TIERS, ClusterSpec

log = logging.getLogger(__name__)

TIER_TITLES = {"relay": "Relay MX", "fallback": "FallbackMX", "store": "Store"}
#: the mail path, top to bottom: MX hosts take mail in, the fallback catches what they cannot
#: deliver, the store pair holds the mailboxes
TIER_ORDER = ("relay", "fallback", "store")
HISTORY_SHOWN = 25
DEMAND_S = 15.0  # keep polling ZooKeeper this long after the last page request
AGENTS_TIMEOUT_S = 1.0  # failsafe view: one agent's GET /status (a frozen agent delays the refresh this long)
STATIC = {  # URL path -> (file in web_static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    # everything comes from this server; nothing inline, nothing from elsewhere
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# --------------------------------------------------------------------------- the view (pure)


def _check(health: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    res = health.get(name)
    return res if isinstance(res, dict) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _num(v: Any) -> float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def raid_view(health: Mapping[str, Any]) -> dict[str, Any] | None:
    res = _check(health, "raid")
    if res is None:
        return None
    data = _dict(res.get("data"))
    arrays = [{"name": a.get("name"), "state": a.get("state"), "level": a.get("level"),
               "progress_pct": _num(a.get("progress_pct"))}
              for a in data.get("arrays") or [] if isinstance(a, dict)]
    return {"severity": res.get("severity"), "detail": res.get("detail"), "arrays": arrays,
            "degraded": list(data.get("degraded") or []), "failed": list(data.get("failed") or []),
            "missing": list(data.get("missing") or []), "simulated": data.get("simulated") is True}


def spool_view(health: Mapping[str, Any]) -> dict[str, Any] | None:
    res = _check(health, "spool")
    if res is None:
        return None
    data = _dict(res.get("data"))
    return {"severity": res.get("severity"), "detail": res.get("detail"), "path": data.get("path"),
            "free_pct": _num(data.get("free_pct")), "free_inodes_pct": _num(data.get("free_inodes_pct")),
            "writable": data.get("writable"), "read_only": data.get("read_only"),
            "nearly_full": bool(data.get("nearly_full")), "scope": res.get("scope")}


def node_state(member: Mapping[str, Any] | None, stale_s: float) -> str:
    """down (no member znode), stale (znode lingers but no heartbeat), demote, unhealthy, healthy."""
    if member is None:
        return "down"
    if (member.get("heartbeat_age_s") or 0) > stale_s:
        return "stale"
    if member.get("demote"):
        return "demote"
    return "healthy" if member.get("healthy") else "unhealthy"


def _mx_key(spec: ClusterSpec, name: str) -> tuple[int, int, str]:
    n = spec.nodes[name]
    return (n.mx_preference if n.mx_preference is not None else 1 << 17, -n.priority, name)


def held_since(history: list[dict[str, Any]], role: str, holder: str | None) -> float | None:
    """When the current holder last acquired the role (wall clock), from the history."""
    if not holder:
        return None
    for it in reversed(history):
        if it.get("role") == role and it.get("event") == "acquired":
            return it.get("at") if it.get("node") == holder else None
    return None


def view_model(spec: ClusterSpec, status: Mapping[str, Any], history: list[dict[str, Any]], *,
               stale_s: float, now: float, can_write: bool) -> dict[str, Any]:
    """Everything the page draws, from `operator.cluster_status` and the history: the page only
    lays it out (no judgement in JavaScript)."""
    holds: dict[str, list[str]] = {}
    for rname, r in status["roles"].items():
        if r.get("holder"):
            holds.setdefault(r["holder"], []).append(rname)
    active = [k for k in status.get("constraints") or [] if k.get("active")]
    nodes: dict[str, Any] = {}
    for name, ns in spec.nodes.items():
        m = status["members"].get(name)
        health = m.get("health", {}) if m else {}
        checks = [{"name": k, "severity": v.get("severity"), "ok": v.get("ok"), "detail": v.get("detail"),
                   "latency_s": _num(v.get("latency_s")), "scope": v.get("scope")}
                  for k, v in sorted(health.items()) if isinstance(v, dict)]
        nodes[name] = {
            "name": name, "tier": ns.tier, "address": ns.address, "priority": ns.priority,
            "mx_preference": ns.mx_preference, "state": node_state(m, stale_s),
            "heartbeat_age_s": m.get("heartbeat_age_s") if m else None,
            "reasons": list(m.get("reasons", [])) if m else [], "penalty": m.get("penalty", 0) if m else 0,
            "holds": holds.get(name, []), "checks": checks,
            "queue": queue_view(health), "raid": raid_view(health), "spool": spool_view(health),
            "standby": next((k["text"] for k in active if k["node"] == name and k["role"] is None), None),
            "drift": (status.get("drift") or {}).get(name, {}).get("text"),  # drift.py: "store2 differs from store1: ..."
        }
    roles: dict[str, Any] = {}
    for rname, r in status["roles"].items():
        rs = spec.roles[rname]
        since = held_since(history, rname, r.get("holder"))
        roles[rname] = {**r, "name": rname, "tier": rs.tier,
                        "candidates": [n for n in spec.nodes if spec.nodes[n].tier == rs.tier],
                        "held_for_s": round(now - since, 1) if since else None,
                        "bans": [k["text"] for k in active if k["role"] == rname]}
    tiers = []
    for tier in (*TIER_ORDER, *(t for t in TIERS if t not in TIER_ORDER)):
        names = [n for n in spec.nodes if spec.nodes[n].tier == tier]
        if not names:
            continue
        if tier == "relay":
            names.sort(key=lambda n: _mx_key(spec, n))
        tiers.append({"tier": tier, "title": TIER_TITLES.get(tier, tier), "nodes": names,
                      "roles": [r for r in spec.roles if spec.roles[r].tier == tier]})
    fallback_queue = sum(int(nodes[n]["queue"]["total"] or 0) for n in nodes
                         if nodes[n]["tier"] == "fallback" and nodes[n]["queue"])
    return {
        "cluster": status["cluster"], "maintenance": status["maintenance"], "generated_at": now,
        "tiers": tiers, "nodes": nodes, "roles": roles, "fallback_queue": fallback_queue,
        "history": [_history_item(it) for it in reversed(history[-HISTORY_SHOWN:])],
        "can_write": can_write, "mail_domain": spec.mail.domain,
    }


def failsafe_view(spec: ClusterSpec, agents: Mapping[str, Any] | None) -> dict[str, Any]:
    """Failsafe mode as the page draws it (docs/safety.md "Failsafe mode"): the spec's flag, and
    from each agent's own status (`agents_view.summary`; None: not asked -- failsafe off or the API
    off) its flag, the roles it holds on its peers' confirmations (ha.py rule 13) and the promises it
    gave (rule 14). `holding` lists every role held on failsafe now; `mismatch` the agents whose own
    flag differs from the spec's (each agent acts on its own)."""
    nodes: dict[str, Any] = {}
    holding: list[dict[str, Any]] = []
    for name in spec.nodes:
        a = agents.get(name) if agents is not None else None
        if not isinstance(a, dict):
            nodes[name] = {"answered": False, "enabled": None, "zookeeper": None, "on_failsafe": [], "promises": []}
            continue
        held = _dict(a.get("held"))
        on = sorted(r for r, h in held.items() if isinstance(h, dict) and h.get("on_failsafe"))
        holding += [{"node": name, "role": r, "term": held[r].get("term"), "remaining_s": _num(held[r].get("remaining_s"))}
                    for r in on]
        nodes[name] = {"answered": True, "enabled": bool(a.get("failsafe")), "zookeeper": a.get("zookeeper"),
                       "on_failsafe": on,
                       "promises": [{"role": r, "holder": p.get("holder"), "term": p.get("term"),
                                     "remaining_s": _num(p.get("remaining_s"))}
                                    for r, p in sorted(_dict(a.get("promises")).items()) if isinstance(p, dict)]}
    return {"enabled": spec.failsafe, "asked": agents is not None, "holding": holding, "nodes": nodes,
            "mismatch": sorted(n for n, v in nodes.items() if v["answered"] and v["enabled"] != spec.failsafe)}


def _history_item(it: Mapping[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in it.items() if k not in ("at", "node", "event", "role", "seq") and v is not None}
    return {"at": it.get("at"), "node": it.get("node"), "event": it.get("event"), "role": it.get("role"),
            "extra": " ".join(f"{k}={v}" for k, v in extra.items())}


# --------------------------------------------------------------------------- ZooKeeper side


class StatusSource:
    """Reads ZooKeeper on one thread while pages are open; hands out the last view at once."""

    def __init__(self, spec: ClusterSpec, coord: Coordinator, interval_s: float = 0.5,
                 can_write: Callable[[], bool] = lambda: False) -> None:
        from hacluster.operator.client import heartbeat_stale_s

        self.spec = spec
        self.coord = coord
        self.interval_s = interval_s
        self.can_write = can_write
        self.stale_s = heartbeat_stale_s(spec)
        self._view: dict[str, Any] | None = None
        self._agents: dict[str, Any] | None = None  # agents_view.summary, failsafe on only
        self._ok_at = 0.0  # wall clock of the last good read
        self._error: str | None = None
        self._demand_at = time.monotonic()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="web-status", daemon=True)

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def refresh(self) -> None:
        from hacluster.operator.client import cluster_status

        if self.spec.failsafe and self.spec.api.port != 0:
            from hacluster.agents_view import fetch, summary

            agents = summary(fetch(self.spec, AGENTS_TIMEOUT_S))  # not ZooKeeper: in an outage too
            with self._lock:
                self._agents = agents
        try:
            st = cluster_status(self.spec, self.coord)
            hist = self.coord.history(HISTORY_SHOWN * 4)  # acquisitions further back give "held for"
            view = view_model(self.spec, st, hist, stale_s=self.stale_s, now=time.time(), can_write=self.can_write())
        except UserError as err:
            with self._lock:
                self._error = str(err)
            return
        except ZK_ERRORS as err:
            with self._lock:
                self._error = f"ZooKeeper read failed: {err or type(err).__name__}"
            return
        with self._lock:
            self._view, self._ok_at, self._error = view, time.time(), None

    def current(self) -> dict[str, Any]:
        """The last view plus how fresh it is; wakes the reader if it was idle."""
        now = time.monotonic()
        idle = now - self._demand_at > DEMAND_S
        self._demand_at = now
        if idle:
            self._wake.set()
        with self._lock:
            view, ok_at, error, agents = self._view, self._ok_at, self._error, self._agents
        out: dict[str, Any] = dict(view) if view else {"cluster": self.spec.name, "tiers": [], "nodes": {}, "roles": {}, "history": []}
        out["failsafe"] = failsafe_view(self.spec, agents)
        out["can_write"] = self.can_write()
        out["error"] = error
        out["age_s"] = round(time.time() - ok_at, 2) if ok_at else None
        out["served_at"] = time.time()
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() - self._demand_at > DEMAND_S:
                self._wake.wait(5.0)  # nobody looking: idle until a page asks again
                self._wake.clear()
                continue
            t0 = time.monotonic()
            self.refresh()
            self._stop.wait(max(0.05, self.interval_s - (time.monotonic() - t0)))


# --------------------------------------------------------------------------- HTTP


def static_text(name: str) -> bytes:
    return importlib_resources.files("hacluster").joinpath("web_static", name).read_bytes()


class _Handler(JsonHandler):
    server_version = "hacluster-web"
    web: "WebServer"
    logger = log
    tag = "web"
    extra_headers = SECURITY_HEADERS

    def _authorized(self) -> bool:
        """Sends the refusal itself (403 no token configured, 401 wrong) and returns False."""
        return self.bearer_ok(self.web.token(),
                              "switchover from the page is disabled: start `hacluster web` with --token-file",
                              "missing or wrong token")

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        path = self.request_path()
        if path in STATIC:
            fname, ctype = STATIC[path]
            self.send_json(200, self.web.asset(fname), ctype)
        elif path == "/api/status":
            self.send_json(200, self.web.source.current())
        elif path == "/api/auth":
            if self._authorized():
                self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": f"no such page {path}", "pages": ["/", "/api/status", "/api/auth", "POST /api/switchover"]})

    def do_POST(self) -> None:  # noqa: N802
        path = self.request_path()
        if path != "/api/switchover":
            self.send_json(404, {"error": f"no such endpoint POST {path}"})
            return
        if not self._authorized():
            return
        spec = self.web.spec
        fields = self.read_body(lambda body: switchover_fields(body, spec.roles, spec.nodes))
        if fields is None:
            return
        role, to = fields
        code, reply = self.web.switchover(role, to or None, f"web@{self.client_address[0]}")
        self.send_json(code, reply)


class WebServer:
    """The server object: `start()` serves on a thread, `stop()` ends it (tests use it directly)."""

    def __init__(self, spec: ClusterSpec, coord: Coordinator, bind: str = "127.0.0.1", port: int = 8750,
                 token_file: str | None = None, interval_s: float = 0.5) -> None:
        self.spec = spec
        self.coord = coord
        self.token_file = token_file
        self.source = StatusSource(spec, coord, interval_s, can_write=lambda: self.token() is not None)
        self._assets: dict[str, bytes] = {}
        handler = type("Handler", (_Handler,), {"web": self})
        try:
            self.httpd = Server((bind, port), handler)
        except OSError as err:
            raise UserError(f"cannot serve on {bind}:{port}: {err.strerror}"
                            + ("; choose another --port" if err.errno == 98 else ""), 1) from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="web", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = str(self.httpd.server_address[0])
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/"

    def token(self) -> str | None:
        """Re-read every time, so rotating the file needs no restart."""
        return read_token(self.token_file)

    def asset(self, name: str) -> bytes:
        if name not in self._assets:
            self._assets[name] = static_text(name)
        return self._assets[name]

    def switchover(self, role: str, to: str | None, by: str) -> tuple[int, dict[str, Any]]:
        from hacluster.operator.client import request

        if not self.coord.connected:
            return 503, {"error": "ZooKeeper is unreachable from the status server; nothing changed"}
        try:
            request(self.spec, self.coord, role, to, "switchover", by)
        except UserError as err:
            return (409 if err.exit_code == 1 else 400), {"error": str(err)}
        except ZK_ERRORS as err:
            return 503, {"error": f"ZooKeeper write failed: {err or type(err).__name__}; nothing changed"}
        log.info("switchover of %s to %s requested by %s", role, to or "(best candidate)", by)
        return 202, {"accepted": True, "role": role, "to": to}

    def start(self) -> None:
        self.source.start()
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.source.stop()


def _is_loopback(bind: str) -> bool:
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return bind == "localhost"


@click.command("web")
@config_option(lab_fallback=True)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8750, show_default=True, help="Port (0: any free one).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Bearer token that enables the switchover buttons (default: the spec's api.token_file; none: read-only).")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=0.5, show_default=True,
              help="Seconds between ZooKeeper reads while a page is open.")
def web_cmd(config: Path, bind: str, port: int, token_file: str | None, interval: float) -> None:
    """Live status page: tiers, holders, leases, queues, RAID, spool, transitions; switchover with a token."""
    from hacluster.operator.client import _open

    if token_file is not None:
        if read_token(token_file) is None:
            raise UserError(f"{token_file}: no token in it (unreadable or empty); write one line, mode 0600")
        if os.stat(token_file).st_mode & 0o077:
            raise UserError(f"{token_file}: the token must not be readable by group/others (chmod 600)")
    from hacluster.lab_access import host_netns

    spec, coord = _open(config)
    spec_token = token_file or spec.api.token_file
    try:
        with host_netns():  # the embedded lab's ZooKeeper is reached from its namespace,
            # but the page listens here, where the operator's browser is
            server = WebServer(spec, coord, bind, port, spec_token, interval)
    except UserError:
        coord.stop()
        raise
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    mode = "switchover enabled with the token" if server.token() else "read-only (no token)"
    click.echo(f"hacluster web: cluster {spec.name} at {server.url} ({mode})")
    if server.token() and not _is_loopback(bind):
        click.echo("hacluster web: warning: the token travels in clear text over HTTP; "
                   "put a TLS proxy in front (docs/operations.md)", err=True)
    try:
        while not done.wait(1.0):
            pass
    finally:
        server.stop()
        coord.stop()
