"""What the agent API (api.py) and the status page (web.py) share of serving HTTP: one request
handler base (JSON replies, the bearer-token check, reading a JSON body, logging to the server's
own logger, a bug answered 500 instead of a dropped connection) and one threading server with
optional TLS, so both servers answer alike and a fix to one is a fix to both."""

from __future__ import annotations

import hmac
import json
import logging
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, TypeVar

from hacluster.errors import UserError
from .switchover_body import BadBody, read_json

if TYPE_CHECKING:
    from hacluster.spec import ApiSpec

HANDSHAKE_TIMEOUT_S = 10.0
T = TypeVar("T")


def read_token(path: str | Path | None) -> str | None:
    """The bearer token in a file, re-read on every request (rotating it needs no restart); None
    when there is no file, it is unreadable or empty: writes are then disabled."""
    if not path:
        return None
    try:
        tok = Path(path).read_text().strip()
    except OSError:
        return None
    return tok or None


class JsonHandler(BaseHTTPRequestHandler):
    """The base of both servers' handlers; a subclass sets `logger` and `tag` (its log lines),
    `json_indent`, `extra_headers` (sent with every reply) and `bearer_challenge` (sent with 401)."""

    timeout = 10  # a client that sends less than its Content-Length must not pin a thread forever
    logger: ClassVar[logging.Logger] = logging.getLogger(__name__)
    tag: ClassVar[str] = "http"
    json_indent: ClassVar[int | None] = None
    extra_headers: ClassVar[Mapping[str, str]] = {}
    bearer_challenge: ClassVar[Mapping[str, str]] = {}

    def log_message(self, fmt: str, *args: Any) -> None:  # to our logger, not stderr
        self.logger.debug(f"{self.tag} %s " + fmt, self.client_address[0], *args)

    def request_path(self) -> str:
        """The path without the query string."""
        return self.path.split("?", 1)[0]

    def send_json(self, code: int, body: Any, ctype: str = "application/json",
                  headers: Mapping[str, str] | None = None) -> None:
        """`body` as JSON (bytes as they are) with its Content-Length; no body for HEAD."""
        data = body if isinstance(body, bytes) else (json.dumps(body, indent=self.json_indent) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in {**self.extra_headers, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def guarded(self, handler: Callable[[], None]) -> None:
        """A bug in one request is a 500 with a log line, never a dropped connection."""
        try:
            handler()
        except Exception:
            self.logger.exception("%s: %s %s failed", self.tag, self.command, self.path)
            try:
                self.send_json(500, {"error": "internal error; see the agent's log"})
            except OSError:
                pass

    def bearer_ok(self, token: str | None, disabled: str, wrong: str) -> bool:
        """Whether the request carries `Authorization: Bearer TOKEN`; if not, the refusal is sent
        here: 403 `disabled` when no token is configured, 401 `wrong` otherwise."""
        if token is None:
            self.send_json(403, {"error": disabled})
            return False
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            self.send_json(401, {"error": wrong}, headers=self.bearer_challenge)
            return False
        return True

    def read_body(self, parse: Callable[[Any], T]) -> T | None:
        """`parse` of the JSON body; None when the request is answered already: 400 naming what is
        wrong (BadBody), or a client that stalled past `timeout` (the connection is closed)."""
        try:
            return parse(read_json(self.rfile, self.headers))
        except BadBody as err:
            self.send_json(400, err.reply())
        except OSError as err:
            self.logger.info("%s: reading the request body failed: %s", self.tag, err)
            self.close_connection = True
        return None


def tls_context(api: ApiSpec) -> ssl.SSLContext | None:
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


class Server(ThreadingHTTPServer):
    """One thread a connection (daemon: never holds up exit); with `tls` set, HTTPS whose handshake
    runs in the connection's own thread with a timeout, so a client that connects and never speaks
    can't stall the accept loop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[JsonHandler], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, handler)
        self.tls = tls
        self.handler = handler

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:  # no/unknown client certificate, plain HTTP, timeout
            self.handler.logger.info("%s: TLS handshake with %s failed: %s", self.handler.tag, client_address[0], err)
            return
        try:
            super().finish_request(conn, client_address)  # the handler, on the TLS connection
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
