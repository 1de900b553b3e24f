"""The agent's REST API (stdlib HTTP server: four read endpoints and one write don't justify a
framework).

    GET  /status            this agent's view: health, roles held, last verdicts
    GET  /health            200 if this node may hold roles, else 503 (for load balancers)
    GET  /leader[/ROLE]     200 if this node holds ROLE (or any role), else 503 (like Patroni's /leader)
    GET  /metrics           Prometheus text format
    POST /switchover        {"role": R, "to": NODE?} with `Authorization: Bearer TOKEN`
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger(__name__)

SWITCHOVER_FIELDS = {"role", "to"}


def load_token(agent: "Agent") -> str | None:
    f = agent.spec.api.token_file
    path = Path(f) if f else agent.state_dir / "api.token"
    try:
        tok = path.read_text().strip()
    except OSError:
        return None
    return tok or None


class _Handler(BaseHTTPRequestHandler):
    server_version = "hacluster"
    agent: "Agent"
    timeout = 10  # a client that sends less than its Content-Length must not pin a thread forever

    def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
        log.debug("api %s " + fmt, self.client_address[0], *args)

    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else (json.dumps(body, indent=1) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        a = self.agent
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
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
        else:
            self._send(404, {"error": f"no such endpoint {path}", "endpoints": ["/status", "/health", "/leader", "/metrics", "POST /switchover"]})

    def do_POST(self) -> None:  # noqa: N802
        a = self.agent
        path = self.path.split("?", 1)[0].rstrip("/")
        if path != "/switchover":
            self._send(404, {"error": f"no such endpoint POST {path}"})
            return
        token = load_token(a)
        if token is None:
            self._send(403, {"error": "write endpoints are disabled: no API token configured (api.token_file)"})
            return
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            self._send(401, {"error": "missing or wrong bearer token"})
            return
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if n < 0 or n > 65536:
                raise ValueError(f"Content-Length {n} out of range (0..65536)")
            body = json.loads(self.rfile.read(n) or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            self._send(400, {"error": f"body is not valid JSON: {err}"})
            return
        except OSError as err:  # the client stalled past `timeout`
            log.info("api: reading the request body failed: %s", err)
            self.close_connection = True
            return
        if not isinstance(body, dict):
            self._send(400, {"error": "body must be a JSON object {\"role\": ..., \"to\": ...}"})
            return
        unknown = set(body) - SWITCHOVER_FIELDS
        if unknown:
            self._send(400, {"error": f"unknown field(s): {', '.join(sorted(unknown))}", "field": sorted(unknown)[0]})
            return
        role, to = body.get("role"), body.get("to")
        if not isinstance(role, str) or (to is not None and not isinstance(to, str)):
            self._send(400, {"error": "role must be a string and to a string or null", "field": "role" if not isinstance(role, str) else "to"})
            return
        from .operator import request

        try:
            request(a.spec, a.coord, role, to, "switchover", f"api@{self.client_address[0]}")
        except UserError as err:
            self._send(409 if err.exit_code == 1 else 400, {"error": str(err)})
            return
        self._send(202, {"accepted": True, "role": role, "to": to})


class AgentApi:
    def __init__(self, agent: "Agent", bind: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"agent": agent})
        self.httpd = ThreadingHTTPServer((bind, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="api", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
