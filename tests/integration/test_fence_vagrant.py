"""fence_hacluster_vagrant, the Vagrant lab's fence agent (docker provider): its metadata against
the fence-agent interface's own RelaxNG schema, and its power logic against an engine on a real
unix socket speaking the Docker Engine API (a stand-in dockerd: the suite has no Docker). The agent
on the real lab's dockerd and containers runs in `make vagrant-lab` (vagrant/run-lab, "fence")."""

from __future__ import annotations

import json
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import pytest

from hacluster_lab.lab import fence_vagrant
from hacluster_lab.lab.fence_vagrant import metadata, run

pytestmark = pytest.mark.timeout(60)
RNG = "/usr/share/cluster/relaxng/metadata.rng"


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.kill_works = True
        super().__init__(path, Handler)

    def add(self, name: str, running: bool = True, lab: bool = True) -> None:
        self.containers[name] = {"running": running, "labels": {"hacluster-lab": ""} if lab else {}}


class Handler(BaseHTTPRequestHandler):
    server: FakeEngine

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.calls.append(f"GET {self.path}")
        if self.path == "/_ping":
            return self._answer(200, "OK")
        if self.path.startswith("/containers/json"):
            return self._answer(200, [{"Names": [f"/{n}"]} for n, c in self.server.containers.items() if c["labels"]])
        name = self.path.split("/")[2]
        c = self.server.containers.get(name)
        if c is None:
            return self._answer(404, {"message": f"No such container: {name}"})
        return self._answer(200, {"State": {"Running": c["running"], "Paused": False, "Pid": 4242 if c["running"] else 0},
                                  "Config": {"Labels": c["labels"]}})

    def do_POST(self) -> None:
        self.server.calls.append(f"POST {self.path}")
        _, _, name, verb = self.path.split("/")
        c = self.server.containers[name]
        if verb == "kill":
            if not c["running"]:
                return self._answer(409, {"message": f"Container {name} is not running"})
            c["running"] = not self.server.kill_works
        elif verb == "start":
            if c["running"]:
                return self._answer(304)
            c["running"] = True
        self._answer(204)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeEngine]:
    srv = FakeEngine(str(tmp_path / "docker.sock"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def act(engine: FakeEngine, **opts: str) -> tuple[int, list[str]]:
    out: list[str] = []
    rc = run({"docker_host": f"unix://{engine.server_address}", **opts}, out.append)
    return rc, out


def test_off_is_a_kill_then_status_confirms_off_and_on_starts_it(engine: FakeEngine) -> None:
    engine.add("hacluster-store1")
    assert act(engine, action="status", plug="store1") == (0, ["Status: ON"])
    assert act(engine, action="off", plug="store1") == (0, ["Success: Powered OFF"])
    assert "POST /containers/hacluster-store1/kill" in engine.calls
    assert act(engine, action="status", plug="hacluster-store1") == (2, ["Status: OFF"])
    assert act(engine, action="off", plug="store1")[0] == 0  # already off: still a success, nothing killed
    assert engine.calls.count("POST /containers/hacluster-store1/kill") == 1
    assert act(engine, action="on", plug="store1") == (0, ["Success: Powered ON"])
    assert act(engine, action="status", plug="store1")[0] == 0
    assert act(engine, action="reboot", plug="store1")[0] == 0 and engine.containers["hacluster-store1"]["running"]


def test_a_kill_that_does_not_take_is_a_failed_fence(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fence_vagrant, "OFF_WAIT_S", 0.5)
    engine.add("hacluster-store1")
    engine.kill_works = False  # the engine says 204 but the machine keeps running
    rc, out = act(engine, action="off", plug="store1")
    assert rc == 1 and "still on" in out[0], out


def test_only_the_labs_containers_are_fenced(engine: FakeEngine) -> None:
    engine.add("hacluster-db", lab=False)
    rc, out = act(engine, action="off", plug="db")
    assert rc == 1 and "not a machine of the Vagrant lab" in out[0], out
    assert not [c for c in engine.calls if c.startswith("POST")]
    rc, out = act(engine, action="status", plug="store9")
    assert rc == 1 and "no container hacluster-store9" in out[0], out
    assert act(engine, action="off")[0] == 1  # no plug


def test_list_monitor_and_an_unreachable_engine(engine: FakeEngine, tmp_path: Path) -> None:
    engine.add("hacluster-store1")
    engine.add("hacluster-store2", running=False)
    engine.add("other", lab=False)
    assert act(engine, action="list") == (0, ["store1,hacluster-store1", "store2,hacluster-store2"])
    assert act(engine, action="monitor")[0] == 0
    out: list[str] = []
    assert run({"action": "monitor", "docker_host": f"unix://{tmp_path / 'absent.sock'}"}, out.append) == 1
    assert out[0].startswith("Failed: ") and "absent.sock" in out[0]
    assert run({"action": "status", "plug": "s", "docker_host": "tcp://192.0.2.1:2375"}, out.append) == 1
    assert "only unix://" in out[-1]


def xmllint(xml: str, tmp_path: Path) -> int:
    f = tmp_path / "meta.xml"
    f.write_text(xml)
    return subprocess.run(["xmllint", "--noout", "--relaxng", RNG, str(f)], capture_output=True, timeout=60).returncode


def test_metadata_passes_the_interfaces_schema(tmp_path: Path) -> None:
    assert xmllint(metadata(), tmp_path) == 0
    assert xmllint(metadata().replace("<actions>", "<acts>", 1), tmp_path) != 0  # the schema is a real check
    cmd = [str(Path(sys.executable).parent / "fence_hacluster_vagrant")]  # the venv's console script
    by_argv = subprocess.run([*cmd, "-o", "metadata"], capture_output=True, text=True, timeout=60)
    by_stdin = subprocess.run(cmd, input="action=metadata\n", capture_output=True, text=True, timeout=60)
    assert by_argv.returncode == by_stdin.returncode == 0 and by_argv.stdout == by_stdin.stdout == metadata() + "\n"
