"""The replicator's wire format: one frame = 4-byte big-endian header length, a JSON header, then
`header["size"]` bytes of body (a message, or nothing). Every request header carries the sender's
fencing `token` and `node`; the answer is `{"ok": true, ...}` or `{"ok": false, "error": CODE,
"detail": ...}` with CODE one of: stale (token older than the highest the receiver has seen;
`highest` and `owner` say whose), bad-request, not-found, io.

Requests: hello; announce {paths}; push {path, size, mtime, uid, gid, mode} + body;
move {path}; delete {path}; list -> {paths}; get {path} -> header + body; missing -> {paths}
(announced by a holder, never received: asked by a promotion running outside the receiver's process).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

MAX_HEADER = 64 << 20  # a `list` answer of ~1M paths
MAX_BODY = 1 << 30
_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer broke the framing (or went away mid-frame)."""


class Rejected(Exception):
    """The peer answered ok=false."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.code = str(answer.get("error", "unknown"))
        super().__init__(f"{self.code}: {answer.get('detail', '')}".rstrip(": "))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ProtocolError("connection closed mid-frame" if got else "connection closed")
        got += k
    return bytes(buf)


def send_frame(sock: socket.socket, header: dict[str, Any], body: bytes = b"") -> None:
    header = {**header, "size": len(body)}
    raw = json.dumps(header, separators=(",", ":")).encode()
    sock.sendall(_LEN.pack(len(raw)) + raw + body if len(body) < 65536 else _LEN.pack(len(raw)) + raw)
    if len(body) >= 65536:
        sock.sendall(body)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    (n,) = _LEN.unpack(_recv_exact(sock, 4))
    if n > MAX_HEADER:
        raise ProtocolError(f"header of {n} bytes")
    try:
        header = json.loads(_recv_exact(sock, n))
    except ValueError:
        raise ProtocolError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not an object")
    size = header.get("size", 0)
    if not isinstance(size, int) or size < 0 or size > MAX_BODY:
        raise ProtocolError(f"bad body size {size!r}")
    return header, _recv_exact(sock, size) if size else b""


class Client:
    """One connection to a peer's receiver; call() raises Rejected on ok=false, OSError /
    ProtocolError when the connection is gone (the caller reconnects)."""

    def __init__(self, host: str, port: int, token: int, node: str, timeout_s: float = 5.0) -> None:
        self.addr = (host, port)
        self.token, self.node = token, node
        self.sock = socket.create_connection(self.addr, timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, op: str, body: bytes = b"", **fields: Any) -> tuple[dict[str, Any], bytes]:
        send_frame(self.sock, {"op": op, "token": self.token, "node": self.node, **fields}, body)
        answer, data = recv_frame(self.sock)
        if not answer.get("ok"):
            raise Rejected(answer)
        return answer, data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_peer(text: str, default_port: int, listen: bool = False) -> tuple[str, int]:
    """"host", "host:port", "[v6]:port" -> (host, port). ValueError on nonsense. A listen
    address may use port 0 (any free port: tests)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"peer {text!r}: no host")
    try:
        p = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"peer {text!r}: bad port {port!r}") from None
    if not (0 if listen else 1) <= p < 65536:
        raise ValueError(f"peer {text!r}: port {p} out of range")
    return host, p
