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

import hmac
import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from hacluster.errors import UserError
from .switchover_body import BadBody, read_json, switchover_fields

if TYPE_CHECKING:
    from hacluster.coord.session import Coordinator
    from hacluster.failsafe import Question
    from hacluster.metrics import AgentMetrics
    from hacluster.spec import ApiSpec, ClusterSpec, NodeSpec

log = logging.getLogger(__name__)

GET_PATHS = ("/status", "/health", "/leader", "/metrics", "/openapi.json")  # and /leader/ROLE
HANDSHAKE_TIMEOUT_S = 10.0


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
    path = Path(f) if f else agent.state_dir / "api.token"
    try:
        tok = path.read_text().strip()
    except OSError:
        return None
    return tok or None


class _Handler(BaseHTTPRequestHandler):
    server_version = "hacluster"
    agent: AgentView
    timeout = 10  # a client that sends less than its Content-Length must not pin a thread forever

    def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
        log.debug("api %s " + fmt, self.client_address[0], *args)

    def _send(self, code: int, body: Any, ctype: str = "application/json", headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else (json.dumps(body, indent=1) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _path(self) -> str:
        return unquote(self.path.split("?", 1)[0]).rstrip("/") or "/"

    def _guarded(self, handler: Any) -> None:
        """A bug in one request is a 500 with a log line, never a dropped connection."""
        try:
            handler()
        except Exception:
            log.exception("api: %s %s failed", self.command, self.path)
            try:
                self._send(500, {"error": "internal error; see the agent's log"})
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._guarded(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guarded(self._post)

    def __getattr__(self, name: str) -> Any:
        # any other method (PUT, DELETE, PATCH, OPTIONS, made-up ones): 405/404, not http.server's 501
        if name.startswith("do_"):
            return lambda: self._guarded(self._not_allowed)
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        path = self._path()
        if path in ("/switchover", "/failsafe"):
            allow = "POST"
        elif path in GET_PATHS or path.startswith("/leader/"):
            allow = "GET, HEAD"
        else:
            self._send(404, {"error": f"no such endpoint {path}"})
            return
        self._send(405, {"error": f"method {self.command} not allowed on {path} (allowed: {allow})"}, headers={"Allow": allow})

    def _get(self) -> None:
        a = self.agent
        path = self._path()
        if path == "/status":
            self._send(200, a.status())
        elif path == "/health":
            st = a.status()
            self._send(200 if st["healthy"] else 503, {"healthy": st["healthy"], "reasons": st["reasons"]})
        elif path == "/leader" or path.startswith("/leader/"):
            role = path[len("/leader/"):] if path.startswith("/leader/") else None
            roles = a.status()["roles"]
            if role is not None and role not in roles:
                self._send(404, {"error": f"this node serves no role {role!r}", "roles": list(roles)})
                return
            held = [r for r, v in roles.items() if v["held"] and (role is None or r == role)]
            self._send(200 if held else 503, {"node": a.node.name, "holds": held})
        elif path == "/metrics":
            self._send(200, a.metrics.render(), "text/plain; version=0.0.4")
        elif path == "/openapi.json":
            from .openapi import document

            self._send(200, document(a.spec, a.node.name))
        elif path in ("/switchover", "/failsafe"):
            self._not_allowed()
        else:
            self._send(404, {"error": f"no such endpoint {path}",
                             "endpoints": [*GET_PATHS, "POST /switchover", "POST /failsafe"]})

    def _authorized_json(self) -> bool:
        """The checks every POST passes first: a token configured and given, a JSON body; else answered."""
        token = load_token(self.agent)
        if token is None:
            self._send(403, {"error": "write endpoints are disabled: no API token configured (api.token_file)"})
            return False
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            self._send(401, {"error": "missing or wrong bearer token"}, headers={"WWW-Authenticate": "Bearer"})
            return False
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._send(415, {"error": f"body must be application/json, got Content-Type {ctype!r}"})
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
        try:
            role, to = switchover_fields(read_json(self.rfile, self.headers), a.spec.roles, a.spec.nodes)
        except BadBody as err:
            self._send(400, err.reply())
            return
        except OSError as err:  # the client stalled past `timeout`
            log.info("api: reading the request body failed: %s", err)
            self.close_connection = True
            return
        from hacluster.coord.session import ZK_ERRORS
        from hacluster.operator.client import request

        try:
            request(a.spec, a.coord, role, to, "switchover", f"api@{self.client_address[0]}")
        except UserError as err:
            self._send(409 if err.exit_code == 1 else 400, {"error": str(err)})
            return
        except ZK_ERRORS as err:
            self._send(503, {"error": f"ZooKeeper unavailable ({type(err).__name__}); the request may not have been recorded"})
            return
        self._send(202, {"accepted": True, "role": role, "to": to})

    def _failsafe(self) -> None:
        """A holder cut off from ZooKeeper asks whether it may go on: 200 with our answer (and our
        promise recorded before it leaves), 400 for a question that is not one of this cluster."""
        from hacluster.failsafe import parse_question

        a = self.agent
        try:
            q = parse_question(read_json(self.rfile, self.headers), a.spec)
        except BadBody as err:
            self._send(400, err.reply())
            return
        except OSError as err:
            log.info("api: reading the request body failed: %s", err)
            self.close_connection = True
            return
        self._send(200, a.failsafe_answer(q))


def tls_context(api: "ApiSpec") -> ssl.SSLContext | None:
    """The server's TLS context from the spec, or None for plain HTTP; unreadable or mismatched
    files are a one-line error at start, not a failure on the first client."""
    if not api.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(api.tls_cert, api.tls_key)
    except (OSError, ssl.SSLError) as err:
        raise UserError(f"{api.tls_cert}: cannot load the API certificate with key {api.tls_key}: {err}") from None
    if api.tls_client_ca:
        try:
            ctx.load_verify_locations(cafile=api.tls_client_ca)
        except (OSError, ssl.SSLError) as err:
            raise UserError(f"{api.tls_client_ca}: cannot load the API client CA: {err}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's thread: the TLS handshake happens here, bounded in time."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:  # no/unknown client certificate, plain HTTP, timeout
            log.info("api: TLS handshake with %s failed: %s", client_address[0], err)
            return
        try:
            super().finish_request(conn, client_address)  # the handler, on the TLS connection
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


class AgentApi:
    def __init__(self, agent: AgentView, bind: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"agent": agent})
        tls = tls_context(agent.spec.api)
        try:
            self.httpd = _Server((bind, port), handler)
        except OSError as err:
            raise UserError(f"api: cannot listen on {bind}:{port}: {err.strerror or err}") from None
        self.httpd.tls = tls
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
