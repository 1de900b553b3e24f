"""The HTTP handler base both servers share (hacluster/http/handler.py): JSON replies with their
length and the server's own headers, the bearer check (403 none configured, 401 wrong), a JSON
body read once with the same 400s for both, a stalled client dropped, a bug answered 500, request
lines to the server's logger, and the TLS handshake failing alone -- on a real loopback server."""

from __future__ import annotations

import datetime
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hacluster.http import api, web
from hacluster.http.handler import JsonHandler, Server, read_token
from hacluster.http.switchover_body import switchover_fields

log = logging.getLogger("test.http.handler")
TOKEN = "s3cret"


class _Handler(JsonHandler):
    logger = log
    tag = "t"
    json_indent = 1
    extra_headers = {"X-Content-Type-Options": "nosniff"}
    bearer_challenge = {"WWW-Authenticate": "Bearer"}
    token: str | None = TOKEN

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.request_path() == "/boom":
            self.guarded(lambda: 1 / 0)  # type: ignore[func-returns-value]
        else:
            self.send_json(200, {"path": self.request_path()})

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if not self.bearer_ok(self.token, "writes disabled", "wrong token"):
            return
        fields = self.read_body(lambda body: switchover_fields(body, ["store"], ["n1", "n2"]))
        if fields is not None:
            self.send_json(202, {"role": fields[0], "to": fields[1]})


@pytest.fixture
def server(serve: Callable[[Server], Server]) -> Server:
    return serve(Server(("127.0.0.1", 0), _Handler))


def call(srv: Server, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_json_reply_with_length_and_the_servers_headers_no_body_for_head(server: Server) -> None:
    code, headers, data = call(server, "GET", "/x?y=1")
    assert code == 200 and data == b'{\n "path": "/x"\n}\n'
    assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == str(len(data))
    assert headers["X-Content-Type-Options"] == "nosniff"
    code, headers, empty = call(server, "HEAD", "/x")
    assert code == 200 and empty == b"" and headers["Content-Length"] == str(len(data))


def test_bearer_token_none_configured_wrong_and_right(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps({"role": "store", "to": "n2"}).encode()
    monkeypatch.setattr(_Handler, "token", None)
    code, _, data = call(server, "POST", "/w", body, {"Authorization": f"Bearer {TOKEN}"})
    monkeypatch.undo()
    assert code == 403 and json.loads(data) == {"error": "writes disabled"}
    code, headers, data = call(server, "POST", "/w", body, {"Authorization": "Bearer nope"})
    assert code == 401 and json.loads(data) == {"error": "wrong token"} and headers["WWW-Authenticate"] == "Bearer"
    code, _, data = call(server, "POST", "/w", body, {"Authorization": f"Bearer {TOKEN}"})
    assert code == 202 and json.loads(data) == {"role": "store", "to": "n2"}


@pytest.mark.parametrize("body, error, field", [
    (b"{", "body is not valid JSON", None),
    (b'{"role": "mail"}', "role: unknown role 'mail'", "role"),
    (b'{"role": "store", "x": 1}', "unknown field(s): x", "x"),
])
def test_a_bad_body_is_400_naming_the_field(server: Server, body: bytes, error: str, field: str | None) -> None:
    code, _, data = call(server, "POST", "/w", body, {"Authorization": f"Bearer {TOKEN}"})
    reply = json.loads(data)
    assert code == 400 and reply["error"].startswith(error) and reply.get("field") == field


def test_a_client_that_stalls_mid_body_is_dropped_and_logged(monkeypatch: pytest.MonkeyPatch, server: Server,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_Handler, "timeout", 0.3)
    caplog.set_level(logging.INFO, log.name)
    with socket.create_connection(server.server_address, timeout=5) as s:
        s.sendall(f"POST /w HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 50\r\n\r\n{{".encode())
        assert s.recv(100) == b""  # closed without an answer
    assert any(r.name == log.name and r.getMessage().startswith("t: reading the request body failed")
               for r in caplog.records)


def test_a_bug_is_a_500_with_a_log_line_and_requests_go_to_our_logger(
        server: Server, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG, log.name)
    code, _, data = call(server, "GET", "/boom")
    assert code == 500 and json.loads(data) == {"error": "internal error; see the agent's log"}
    assert [r.exc_info[0] for r in caplog.records if r.levelno == logging.ERROR] == [ZeroDivisionError]  # type: ignore[index]
    assert any(r.getMessage().startswith('t 127.0.0.1 "GET /boom HTTP/1.1" 500') for r in caplog.records)
    assert "GET /boom" not in capsys.readouterr().err  # not http.server's stderr line


def _self_signed(d: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (d / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "c.pem", d / "k.pem")
    return ctx


def test_tls_a_failed_handshake_is_logged_and_the_next_client_served(
        tmp_path: Path, serve: Callable[[Server], Server], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, log.name)
    srv = serve(Server(("127.0.0.1", 0), _Handler, _self_signed(tmp_path)))
    with socket.create_connection(srv.server_address, timeout=5) as s:  # plain HTTP to the TLS port
        s.sendall(b"GET /plain HTTP/1.1\r\n\r\n")
        try:
            assert b"HTTP/" not in s.recv(100)  # refused in the handshake: no handler ran
        except ConnectionResetError:
            pass  # or reset: either way no HTTP answer
    # the server thread logs after the client already saw the refusal: wait for it (bounded)
    deadline = time.monotonic() + 5
    while not any(r.getMessage().startswith("t: TLS handshake with 127.0.0.1 failed") for r in caplog.records):
        assert time.monotonic() < deadline, "no log line for the failed handshake"
        time.sleep(0.02)
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", srv.server_address[1], timeout=5, context=client)
    try:
        conn.request("GET", "/tls")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"path": "/tls"}
    finally:
        conn.close()


def test_both_servers_use_it_and_read_the_token_alike(tmp_path: Path) -> None:
    assert issubclass(api._Handler, JsonHandler) and issubclass(web._Handler, JsonHandler)
    assert (api._Handler.tag, web._Handler.tag) == ("api", "web")
    assert api._Handler.logger.name == "hacluster.http.api" and web._Handler.logger.name == "hacluster.http.web"
    f = tmp_path / "token"
    assert read_token(f) is None and read_token(None) is None
    f.write_text("\n")
    assert read_token(f) is None
    f.write_text(" tok \n")
    assert read_token(f) == read_token(str(f)) == "tok"
