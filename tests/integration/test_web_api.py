"""`hacluster web` over HTTP, against a real ZooKeeper and real agents: the token rules, request
validation (the CLI's checks and words), the assets (no network), ZooKeeper loss, and the command."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from hacluster_lab.localcluster import LocalCluster
from hacluster.http.web import STATIC, WebServer

from .holder import ensure_holder

pytestmark = pytest.mark.zk

TOKEN = "api-token-42"
STATIC_DIR = Path(__file__).resolve().parents[2] / "hacluster" / "web_static"


def call(url: str, method: str = "GET", body: Any = None, token: str | None = None,
         raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            payload = resp.read()
            code, headers = resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        payload, code, headers = err.read(), err.code, dict(err.headers)
    try:
        return code, headers, json.loads(payload)
    except ValueError:
        return code, headers, payload


@pytest.fixture
def cluster(zk_single, tmp_path: Path) -> Iterator[tuple[LocalCluster, Any]]:
    lc = LocalCluster(zk_single.hosts, tmp_path / "cluster", n=3)
    coord = lc.coordinator("web-api-test")
    try:
        lc.start_all()
        assert lc.wait_holder("store", timeout=30) is not None, lc.agent_log_tail("node1")
        ensure_holder(lc, coord, "node1")
        yield lc, coord
    finally:
        coord.stop()
        lc.cleanup()


@pytest.fixture
def server(cluster, tmp_path: Path) -> Iterator[WebServer]:
    lc, coord = cluster
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    s = WebServer(lc.spec, coord, "127.0.0.1", 0, str(tok), interval_s=0.2)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def wait_status(url: str, pred, timeout: float = 15.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        _, _, st = call(url + "api/status")
        if pred(st):
            return st
        assert time.monotonic() < end, f"status never matched: {json.dumps(st)[:800]}"
        time.sleep(0.1)


def test_assets_are_local_and_locked_down(server: WebServer) -> None:
    for path, (_, ctype) in STATIC.items():
        code, headers, body = call(server.url.rstrip("/") + path)
        assert code == 200 and headers["Content-Type"] == ctype
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
    for f in STATIC_DIR.iterdir():  # nothing fetched from elsewhere: no URL with a scheme or //host
        text = f.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{f.name} refers to another host"
        assert "innerHTML" not in text and "eval(" not in text
    code, _, body = call(server.url + "nope")
    assert code == 404 and "/api/status" in body["pages"]


def test_status_json_names_holder_and_lease(server: WebServer, cluster) -> None:
    st = wait_status(server.url, lambda s: s["roles"].get("store", {}).get("holder") == "node1")
    r = st["roles"]["store"]
    assert r["term"] >= 1 and 0 <= r["lease_age_s"] < 2 and r["candidates"] == ["node1", "node2", "node3"]
    assert st["nodes"]["node1"]["holds"] == ["store"] and st["nodes"]["node2"]["state"] == "healthy"
    assert st["error"] is None and st["age_s"] < 2 and st["can_write"] is True
    assert any(h["event"] == "acquired" and h["node"] == "node1" for h in st["history"])


def test_token_rules(server: WebServer) -> None:
    assert call(server.url + "api/auth")[0] == 401
    assert call(server.url + "api/auth", token="wrong")[0] == 401
    assert call(server.url + "api/auth", token=TOKEN)[:3:2] == (200, {"ok": True})
    code, _, body = call(server.url + "api/switchover", "POST", {"role": "store", "to": "node2"})
    assert code == 401 and body["error"] == "missing or wrong token"
    code, _, _ = call(server.url + "api/switchover", "POST", {"role": "store", "to": "node2"}, token="wrong")
    assert code == 401
    Path(server.token_file).write_text("rotated\n")  # read per request: no restart needed
    assert call(server.url + "api/auth", token="rotated")[0] == 200
    assert call(server.url + "api/auth", token=TOKEN)[0] == 401


def test_without_token_file_the_server_is_read_only(cluster) -> None:
    lc, coord = cluster
    s = WebServer(lc.spec, coord, "127.0.0.1", 0, None)
    s.start()
    try:
        code, _, body = call(s.url + "api/switchover", "POST", {"role": "store", "to": "node2"}, token="anything")
        assert code == 403 and "--token-file" in body["error"]
        assert call(s.url + "api/auth", token="anything")[0] == 403
        assert call(s.url + "api/status")[2]["can_write"] is False
    finally:
        s.stop()


@pytest.mark.parametrize("raw, code, needle", [
    (b"{not json", 400, "body is not valid JSON"),
    (b"[1, 2]", 400, "body must be a JSON object"),
    (b'{"role": "store", "to": "node2", "force": true}', 400, "unknown field(s): force"),
    (b'{"role": 7}', 400, "role must be a string"),
    (b'{"role": "mailstore", "to": "node2"}', 400, "unknown role 'mailstore' (roles: store)"),
    (b'{"role": "store", "to": "node9"}', 400, "unknown node 'node9' (nodes: node1, node2, node3)"),
    (b'{"role": "store", "to": "node1"}', 409, "node1 already holds store"),
])
def test_switchover_validation_is_the_clis(server: WebServer, raw: bytes, code: int, needle: str) -> None:
    got, _, body = call(server.url + "api/switchover", "POST", raw=raw, token=TOKEN)
    assert got == code and needle in body["error"], body


def test_switchover_and_maintenance_refusal(server: WebServer, cluster) -> None:
    lc, coord = cluster
    coord.set_maintenance(True, "test")
    try:
        code, _, body = call(server.url + "api/switchover", "POST", {"role": "store", "to": "node2"}, token=TOKEN)
        assert code == 409 and "maintenance mode" in body["error"] and "hacluster maintenance off" in body["error"]
        wait_status(server.url, lambda s: s["maintenance"] is True)
    finally:
        coord.set_maintenance(False, "test")
    code, _, body = call(server.url + "api/switchover", "POST", {"role": "store", "to": "node3"}, token=TOKEN)
    assert (code, body) == (202, {"accepted": True, "role": "store", "to": "node3"})
    st = wait_status(server.url, lambda s: s["roles"]["store"]["holder"] == "node3", timeout=20)
    assert st["nodes"]["node3"]["holds"] == ["store"]
    assert any(h["event"] == "switchover-requested" and "by=web@127.0.0.1" in h["extra"] for h in st["history"])
    assert lc.believed_holders("store") == ["node3"]


def test_zookeeper_loss_is_shown_not_hidden(zk_single, server: WebServer) -> None:
    wait_status(server.url, lambda s: s["error"] is None and s["roles"]["store"]["holder"] == "node1")
    zk_single.stop_server(zk_single.servers[0].id)  # the fixture restarts it for the next test
    try:
        st = wait_status(server.url, lambda s: s["error"] is not None, timeout=20)
        assert "ZooKeeper" in st["error"]
        assert st["roles"]["store"]["holder"] == "node1"  # the last good view, with its age
        time.sleep(1.0)
        assert call(server.url + "api/status")[2]["age_s"] >= 1.0
        code, _, body = call(server.url + "api/switchover", "POST", {"role": "store", "to": "node2"}, token=TOKEN)
        assert code in (409, 503) and "nothing changed" in body["error"]
    finally:
        zk_single.start_server(zk_single.servers[0].id)
        zk_single.wait_serving(60)


def run_cli(args: list[str], **kw: Any) -> subprocess.Popen:
    """The real CLI entry (cli.main) with `web` registered, as after the cli.py line is added."""
    code = ("import sys; from hacluster import cli; cli.cli.lazy.setdefault('web', 'hacluster.http.web:web_cmd'); "
            "sys.exit(cli.main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_web_command_serves_and_stops_on_sigterm(cluster, tmp_path: Path) -> None:
    lc, _ = cluster
    tok = tmp_path / "cli.token"
    tok.write_text(TOKEN)
    tok.chmod(0o600)
    p = run_cli(["web", "--config", str(lc.spec_path), "--port", "0", "--token-file", str(tok)])
    try:
        line = p.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+/) \(switchover enabled with the token\)", line)
        assert m, line + p.stderr.read() if p.poll() is not None else line
        st = wait_status(m.group(1), lambda s: s["roles"]["store"]["holder"] == "node1")
        assert st["cluster"] == lc.spec.name
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)


@pytest.mark.parametrize("setup, needle", [
    ("missing", "no token in it (unreadable or empty)"),
    ("loose", "must not be readable by group/others (chmod 600)"),
])
def test_web_command_rejects_bad_token_files(cluster, tmp_path: Path, setup: str, needle: str) -> None:
    lc, _ = cluster
    tok = tmp_path / "t"
    if setup == "loose":
        tok.write_text("x")
        tok.chmod(0o644)
    p = run_cli(["web", "--config", str(lc.spec_path), "--port", "0", "--token-file", str(tok)])
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2 and needle in err and str(tok) in err and "Traceback" not in err


def test_web_command_port_in_use(cluster, tmp_path: Path) -> None:
    lc, coord = cluster
    s = WebServer(lc.spec, coord, "127.0.0.1", 0, None)
    try:
        p = run_cli(["web", "--config", str(lc.spec_path), "--port", str(s.port)])
        out, err = p.communicate(timeout=30)
        assert p.returncode == 1 and f"cannot serve on 127.0.0.1:{s.port}" in err and "choose another --port" in err
    finally:
        s.httpd.server_close()
