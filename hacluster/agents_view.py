"""`hacluster status` when ZooKeeper does not answer: each agent's own view over its API.

The cluster status comes from ZooKeeper; in an outage there is none, and that is exactly when an
operator running failsafe mode needs to see who holds a role on its peers' confirmations and who
promised not to acquire (docs/safety.md "Failsafe mode"). Every node of the spec is asked
GET /status in parallel (bounded); the answers are summarised per node. Read-only, no token.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from .spec import ClusterSpec

TIMEOUT_S = 2.0


def _url(spec: ClusterSpec, name: str, tls: bool) -> str:
    node = spec.nodes[name]
    host = node.api_address or node.address
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{spec.api.port}/status"


def fetch(spec: ClusterSpec, timeout_s: float = TIMEOUT_S) -> dict[str, dict[str, Any] | None]:
    """node -> its GET /status (None: no answer). Nothing is asked when the API is off."""
    if spec.api.port == 0:
        return {n: None for n in spec.nodes}
    from .failsafe import client_tls

    try:
        ctx = client_tls(spec)
    except (OSError, ValueError):
        ctx = None  # the operator cannot read the client certificate: HTTPS without one

    def one(name: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(_url(spec, name, spec.api.tls_cert is not None and spec.api.tls_cert != ""),
                                        timeout=timeout_s, context=ctx) as r:
                data = json.loads(r.read(1 << 20))
            return data if isinstance(data, dict) else None
        except (OSError, ValueError, urllib.error.URLError):
            return None

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(spec.nodes)))) as pool:
        return dict(zip(spec.nodes, pool.map(one, spec.nodes), strict=True))


def summary(views: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Per node: ZooKeeper as it sees it, roles held (and whether on failsafe), promises; pure."""
    out: dict[str, Any] = {}
    for name, st in views.items():
        if st is None:
            out[name] = None
            continue
        fs: dict[str, Any] = st["failsafe"] if isinstance(st.get("failsafe"), dict) else {}
        roles: dict[str, Any] = st["roles"] if isinstance(st.get("roles"), dict) else {}
        out[name] = {
            "zookeeper": st.get("zookeeper"),
            "healthy": st.get("healthy"),
            "failsafe": bool(fs.get("enabled")),
            "held": {r: {"term": v.get("term"), "remaining_s": v.get("lease_remaining_s"),
                         "on_failsafe": r in (fs.get("extended") or {})}
                     for r, v in roles.items() if isinstance(v, dict) and v.get("held")},
            "promises": dict(fs.get("promises") or {}),
        }
    return out


def print_summary(cluster: str, view: dict[str, Any]) -> None:
    click.echo(f"cluster {cluster}   ** ZooKeeper unreachable: each agent's own view (GET /status) **")
    click.echo("\nNODE        ZOOKEEPER     FAILSAFE  HOLDS                         PROMISED")
    for name, v in view.items():
        if v is None:
            click.echo(f"{name:<11} {'-':<13} {'-':<8}  no answer from its API")
            continue
        holds = ", ".join(f"{r} term {h['term']}" + (" ON FAILSAFE" if h["on_failsafe"] else "")
                          for r, h in v["held"].items()) or "-"
        promised = ", ".join(f"{r} to {p.get('holder')} ({p.get('remaining_s')}s left)"
                             for r, p in v["promises"].items()) or "-"
        click.echo(f"{name:<11} {str(v['zookeeper']):<13} {'on' if v['failsafe'] else 'off':<8}  {holds:<29} {promised}")
