"""The agent's REST API (stdlib HTTP server: four read endpoints and one write don't justify a
framework).

    GET  /status            this agent's view: health, roles held, last verdicts
    GET  /health            200 if this node may hold roles, else 503 (for load balancers)
    GET  /leader[/ROLE]     200 if this node holds ROLE (or any role), else 503 (like Patroni's /leader)
    GET  /metrics           Prometheus text format
    GET  /openapi.json      the OpenAPI 3.1 description of all of this (hacluster/http/openapi.py)
    POST /switchover        {"role": R, "to": NODE?} with `Authorization: Bearer TOKEN`
    POST /failsafe          {"role", "holder", "term", "lease_s"}, same token: a holder cut off
                            from ZooKeeper asks its tier peers (hacluster/failsafe.py)

Optional HTTPS (spec api.tls_cert/tls_key), with client certificates required when
api.tls_client_ca is set. The TLS handshake runs in the connection's own thread with a timeout,
so a client that connects and never speaks can't stall the accept loop.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from hacluster.errors import UserError
from .handler import JsonHandler, Server, read_token, tls_context
from .switchover_body import switchover_fields

if TYPE_CHECKING:
    from hacluster.coord.session import Coordinator
    from hacluster.failsafe import Question
    from hacluster.metrics import AgentMetrics
    from hacluster.spec import ClusterSpec, NodeSpec

log = logging.getLogger(__name__)

GET_PATHS = ("/status", "/health", "/leader", "/metrics", "/openapi.json")  # and /leader/ROLE


class AgentView(Protocol):
    """What the API serves from (hacluster.agent.loop.Agent is one): a protocol, so the API does not
    import the agent that starts it."""

    spec: ClusterSpec
    state_dir: Path
    node: NodeSpec
    coord: Coordinator
    metrics: AgentMetrics

    def status(self) -> dict[str, Any]: ...
    def failsafe_answer(self, q: Question) -> dict[str, Any]: ...


def load_token(agent: AgentView) -> str | None:
    f = agent.spec.api.token_file
    return read_token(Path(f) if f else agent.state_dir / "api.token")


class _Handler(JsonHandler):
    server_version = "hacluster"
    agent: AgentView
    logger = log
    tag = "api"
    json_indent = 1
    bearer_challenge = {"WWW-Authenticate": "Bearer"}

    def _path(self) -> str:
        return unquote(self.request_path()).rstrip("/") or "/"

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.guarded(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        self.guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self.guarded(self._post)

    def __getattr__(self, name: str) -> Any:
        # any other method (PUT, DELETE, PATCH, OPTIONS, made-up ones): 405/404, not http.server's 501
        if name.startswith("do_"):
            return lambda: self.guarded(self._not_allowed)
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        path = self._path()
        if path in ("/switchover", "/failsafe"):
            allow = "POST"
        elif path in GET_PATHS or path.startswith("/leader/"):
            allow = "GET, HEAD"
        else:
            self.send_json(404, {"error": f"no such endpoint {path}"})
            return
        self.send_json(405, {"error": f"method {self.command} not allowed on {path} (allowed: {allow})"}, headers={"Allow": allow})

    def _get(self) -> None:
        a = self.agent
        path = self._path()
        if path == "/status":
            self.send_json(200, a.status())
        elif path == "/health":
            st = a.status()
            self.send_json(200 if st["healthy"] else 503, {"healthy": st["healthy"], "reasons": st["reasons"]})
        elif path == "/leader" or path.startswith("/leader/"):
            role = path[len("/leader/"):] if path.startswith("/leader/") else None
            roles = a.status()["roles"]
            if role is not None and role not in roles:
                self.send_json(404, {"error": f"this node serves no role {role!r}", "roles": list(roles)})
                return
            held = [r for r, v in roles.items() if v["held"] and (role is None or r == role)]
            self.send_json(200 if held else 503, {"node": a.node.name, "holds": held})
        elif path == "/metrics":
            self.send_json(200, a.metrics.render(), "text/plain; version=0.0.4")
        elif path == "/openapi.json":
            from .openapi import document

            self.send_json(200, document(a.spec, a.node.name))
        elif path in ("/switchover", "/failsafe"):
            self._not_allowed()
        else:
            self.send_json(404, {"error": f"no such endpoint {path}",
                             "endpoints": [*GET_PATHS, "POST /switchover", "POST /failsafe"]})

    def _authorized_json(self) -> bool:
        """The checks every POST passes first: a token configured and given, a JSON body; else answered."""
        if not self.bearer_ok(load_token(self.agent),
                              "write endpoints are disabled: no API token configured (api.token_file)",
                              "missing or wrong bearer token"):
            return False
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ctype != "application/json":
            self.send_json(415, {"error": f"body must be application/json, got Content-Type {ctype!r}"})
            return False
        return True

    def _post(self) -> None:
        a = self.agent
        path = self._path()
        if path not in ("/switchover", "/failsafe"):
            self._not_allowed()
            return
        if not self._authorized_json():
            return
        if path == "/failsafe":
            self._failsafe()
            return
        fields = self.read_body(lambda body: switchover_fields(body, a.spec.roles, a.spec.nodes))
        if fields is None:
            return
        role, to = fields
        from hacluster.coord.session import ZK_ERRORS
        from hacluster.operator.client import request

        try:
            request(a.spec, a.coord, role, to, "switchover", f"api@{self.client_address[0]}")
        except UserError as err:
            self.send_json(409 if err.exit_code == 1 else 400, {"error": str(err)})
            return
        except ZK_ERRORS as err:
            self.send_json(503, {"error": f"ZooKeeper unavailable ({type(err).__name__}); the request may not have been recorded"})
            return
        self.send_json(202, {"accepted": True, "role": role, "to": to})

    def _failsafe(self) -> None:
        """A holder cut off from ZooKeeper asks whether it may go on: 200 with our answer (and our
        promise recorded before it leaves), 400 for a question that is not one of this cluster."""
        from hacluster.failsafe import parse_question

        a = self.agent
        q = self.read_body(lambda body: parse_question(body, a.spec))
        if q is None:
            return
        self.send_json(200, a.failsafe_answer(q))


class AgentApi:
    def __init__(self, agent: AgentView, bind: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"agent": agent})
        tls = tls_context(agent.spec.api)
        try:
            self.httpd = Server((bind, port), handler, tls)
        except OSError as err:
            raise UserError(f"api: cannot listen on {bind}:{port}: {err.strerror or err}") from None
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="api", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
