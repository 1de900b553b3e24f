"""The replicator's server side: runs on every store node for the agent's whole life. On the
standby it stores the holder's messages Maildir-safely; on any node it serves `list`/`get` so a
newly promoted holder can catch up from the old one.

Fencing: every request carries (token, node). The highest token seen is the spool's owner marker
(so it survives restarts); a request with a lower token -- or the same token from another node --
is refused with `stale` before anything is read or written. A higher token is recorded first.
Announcements (`announce`) name messages the holder has and is about to send; the ones that never
arrived are exactly what a promotion without the old holder cannot copy (`missing()`).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

from . import metrics
from .maildir import BadPath, MaildirStore, Meta, MsgPath
from .marker import MarkerCache, claim, verdict
from .protocol import ProtocolError, recv_frame, send_frame

log = logging.getLogger(__name__)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], receiver: "Receiver") -> None:
        self.receiver = receiver
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        rx: Receiver = self.server.receiver  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(rx.idle_timeout_s)
        rx._conns.add(sock)
        try:
            while True:
                try:
                    req, body = recv_frame(sock)
                except (ProtocolError, OSError):
                    return
                answer, data = rx.handle(req, body)
                send_frame(sock, answer, data)
        except OSError:
            return
        finally:
            rx._conns.discard(sock)


class Receiver:
    def __init__(self, root: Path, node: str, bind: str = "127.0.0.1", port: int = 0, name: str = "spool",
                 idle_timeout_s: float = 300.0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.name = name
        self.bind, self.req_port = bind, port
        self.idle_timeout_s = idle_timeout_s
        self.store = MaildirStore(self.root)
        self.marker = MarkerCache(self.root)
        self.lock = threading.Lock()  # token decisions and the announcement book
        self.announced: dict[str, tuple[str, str, int, float]] = {}  # key -> (rel, node, token, when)
        self.stats = {"stored": 0, "exists": 0, "moved": 0, "deleted": 0, "stale": 0, "bytes": 0}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    # ------------------------------------------------------------------ life

    def start(self) -> "Receiver":
        self._server = _Server((self.bind, self.req_port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"replicator-rx-{self.name}", daemon=True)
        self._thread.start()
        log.info("replicator %s: receiving on %s:%d into %s", self.name, self.bind, self.port, self.root)
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.req_port

    def close(self) -> None:
        """Stop serving and cut every open connection (what a dead node looks like to peers)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for s in list(self._conns):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    # ------------------------------------------------------------------ fencing

    def raise_token(self, token: int, node: str) -> None:
        """Our own promotion: from now on older holders are refused (raises StaleToken)."""
        with self.lock:
            claim(self.root, token, node)

    def _admit(self, req: dict[str, Any]) -> dict[str, Any] | None:
        token, node = req.get("token"), req.get("node")
        if not isinstance(token, int) or not isinstance(node, str) or not node:
            return {"ok": False, "error": "bad-request", "detail": "token (int) and node are required"}
        with self.lock:
            current = self.marker.current()
            v = verdict(current, token, node)
            if v == "stale":
                assert current is not None
                self.stats["stale"] += 1
                metrics.REJECTED.labels(self.name).inc()
                log.warning("replicator %s: refused %s from %s: token %d is stale (highest %d, %s)",
                            self.name, req.get("op"), node, token, current.token, current.node)
                return {"ok": False, "error": "stale", "highest": current.token, "owner": current.node,
                        "detail": f"token {token} from {node} is older than {current.token} ({current.node})"}
            if v == "claim":
                claim(self.root, token, node)
        return None

    # ------------------------------------------------------------------ requests

    def handle(self, req: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        refused = self._admit(req)
        if refused is not None:
            return refused, b""
        op = req.get("op")
        try:
            if op == "hello":
                cur = self.marker.current()
                return {"ok": True, "node": self.node, "highest": cur.token if cur else 0}, b""
            if op == "list":
                return {"ok": True, "paths": [m.rel for m in self.store.messages().values()]}, b""
            if op == "missing":  # a promotion run outside this process (OCF agent) asks for the report
                return {"ok": True, "paths": self.missing()}, b""
            m = MsgPath.parse(req.get("path", "")) if op != "announce" else None
            if op == "announce":
                return self._announce(req), b""
            assert m is not None
            if op == "push":
                return self._push(req, m, body), b""
            if op == "move":
                cur_m = self.store.find(m)
                if cur_m is None:
                    return {"ok": False, "error": "not-found", "detail": m.rel}, b""
                res = self.store.move(cur_m, m)
                self.stats[res] += 1
                return {"ok": True, "result": res}, b""
            if op == "delete":
                gone = self.store.remove(m)
                with self.lock:
                    self.announced.pop(m.key, None)
                self.stats["deleted"] += int(gone)
                return {"ok": True, "result": "deleted" if gone else "absent"}, b""
            if op == "get":
                cur_m = self.store.find(m)
                if cur_m is None:
                    return {"ok": False, "error": "not-found", "detail": m.rel}, b""
                meta, data = self.store.read(cur_m)
                return {"ok": True, "path": cur_m.rel, "mtime": meta.mtime, "uid": meta.uid, "gid": meta.gid,
                        "mode": meta.mode}, data
            return {"ok": False, "error": "bad-request", "detail": f"unknown op {op!r}"}, b""
        except BadPath as err:
            return {"ok": False, "error": "bad-request", "detail": str(err)}, b""
        except FileNotFoundError as err:
            return {"ok": False, "error": "not-found", "detail": str(err)}, b""
        except OSError as err:
            log.error("replicator %s: %s %s: %s", self.name, op, req.get("path"), err)
            return {"ok": False, "error": "io", "detail": f"{err.strerror or err}"}, b""

    def _announce(self, req: dict[str, Any]) -> dict[str, Any]:
        paths = req.get("paths")
        if not isinstance(paths, list):
            return {"ok": False, "error": "bad-request", "detail": "paths must be a list"}
        now = time.time()
        parsed = [MsgPath.parse(p) for p in paths]
        with self.lock:
            for m in parsed:
                self.announced[m.key] = (m.rel, req["node"], req["token"], now)
        return {"ok": True, "count": len(parsed)}

    def _push(self, req: dict[str, Any], m: MsgPath, body: bytes) -> dict[str, Any]:
        try:
            meta = Meta(len(body), float(req.get("mtime", time.time())), int(req.get("uid", 0)),
                        int(req.get("gid", 0)), int(req.get("mode", 0o600)))
        except (TypeError, ValueError):
            return {"ok": False, "error": "bad-request", "detail": "bad mtime/uid/gid/mode"}
        res = self.store.deliver(m, body, meta)
        with self.lock:
            self.announced.pop(m.key, None)
            self.stats[res] += 1
            if res == "stored":
                self.stats["bytes"] += len(body)
        return {"ok": True, "result": res}

    # ------------------------------------------------------------------ promotion report

    def missing(self) -> list[str]:
        """Messages announced by a holder that never arrived and are not here (file names)."""
        with self.lock:
            items = list(self.announced.items())
        out = []
        for key, (rel, _node, _token, _t) in items:
            m = MsgPath.parse(rel)
            if self.store.find(m) is None:
                out.append(rel)
            else:
                with self.lock:
                    self.announced.pop(key, None)
        return sorted(out)
