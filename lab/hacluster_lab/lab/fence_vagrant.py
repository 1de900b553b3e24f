"""`fence_hacluster_vagrant`: a fence agent for the Vagrant lab's machines on Vagrant's docker
provider (vagrant/README.md), as fence_virsh is for libvirt VMs and fence_vbox for VirtualBox ones
-- on the standard fence-agent interface, so the node agent (hacluster/fence.py) or Pacemaker
drives it like any agent of Debian's fence-agents package.

Interface: the same as fence_hacluster_lab (`key=value` lines on stdin or `-o ACTION -n PLUG
--docker-host=URL`); actions `off`, `on`, `reboot`, `status` (exit 0 = on, 2 = off), `list`,
`monitor`, `metadata`, `validate-all`. Exit 0 success, 1 failure.

It talks to the lab's own dockerd (vagrant/docker-host: socket /run/hacluster-vagrant/docker.sock)
through the Docker Engine API on that unix socket, no CLI. `off` is the drills' power cut: `kill`
(SIGKILL to the machine's init; the kernel kills every process of its PID namespace with it, frozen
ones included, and the container's network namespace with its addresses goes too); `status` says
off only when the engine reports the container not running *and* without a process (`State.Pid` 0)
-- a confirmation, not an echo of the kill. It only fences containers that carry the lab's label
(`hacluster-lab`): a plug that names some other container is refused, not killed.

Where it runs: on the host, beside the lab's dockerd (root: the socket is root's). A machine of the
lab cannot run it -- the engine's socket inside a container would make every lab machine root on
the host; docs/safety.md ("Fencing the Vagrant lab's machines") says how a spec would wire it.
Lab toolkit: a mail node never imports this.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
import urllib.parse
from typing import Any, Callable

from .fence_agent import EXIT_FAIL, EXIT_OFF, EXIT_OK, agent_main, answered_first, metadata_xml

AGENT = "fence_hacluster_vagrant"
ACTIONS = ("on", "off", "reboot", "status", "list", "monitor", "metadata", "validate-all")
DOCKER_HOST = "unix:///run/hacluster-vagrant/docker.sock"  # the lab's own dockerd (vagrant/docker-host)
PREFIX = "hacluster-"  # the Vagrantfile names the containers hacluster-NAME
LABEL = "hacluster-lab"  # ... and labels them (DOCKER_ARGS)
OFF_WAIT_S = 20.0  # how long `off` waits for the engine to see the container gone

PARAMETERS = (
    # name, getopt, type, default, required, shortdesc
    ("action", "-o, --action=[action]", "string", "reboot", "0", "Fencing action"),
    ("plug", "-n, --plug=[machine]", "string", None, "1", "Vagrant lab machine to fence (store1, or its container hacluster-store1)"),
    ("port", "-n, --plug=[machine]", "string", None, "0", "Vagrant lab machine to fence (old name of plug)"),
    ("docker_host", "--docker-host=[url]", "string", DOCKER_HOST, "0", "The lab's dockerd (unix:// socket)"),
    ("container_prefix", "--container-prefix=[prefix]", "string", PREFIX, "0", "Container name = prefix + machine"),
    ("verbose", "-v, --verbose", "boolean", None, "0", "Verbose mode"),
)


class EngineError(Exception):
    """The Docker engine refused or could not be reached (the message says which)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Engine:
    """The few Docker Engine API calls a power switch needs, on a unix socket."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        if not url.startswith("unix://"):
            raise EngineError(f"docker_host {url!r}: only unix:// sockets (the lab's dockerd does not listen on TCP)")
        self.path = url[len("unix://"):]
        self.timeout = timeout

    def call(self, method: str, path: str) -> tuple[int, Any]:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request(method, path, headers={"Content-Length": "0"} if method == "POST" else {})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
        except OSError as err:
            raise EngineError(f"{self.path}: {err.strerror or err}") from None
        finally:
            conn.close()
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            data = body.strip()
        return resp.status, data

    def ping(self) -> None:
        status, data = self.call("GET", "/_ping")
        if status != 200:
            raise EngineError(f"dockerd at {self.path} answered {status} {data!r}")

    def inspect(self, name: str) -> dict[str, Any] | None:
        status, data = self.call("GET", f"/containers/{urllib.parse.quote(name)}/json")
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise EngineError(f"inspect {name}: {status} {_message(data)}")
        return data

    def post(self, name: str, verb: str) -> None:
        status, data = self.call("POST", f"/containers/{urllib.parse.quote(name)}/{verb}")
        # 204 done; 304 start of a running container (already on); 409 kill of a stopped one (already off)
        if status not in (204, 304, 409):
            raise EngineError(f"{verb} {name}: {status} {_message(data)}")

    def lab_containers(self) -> list[str]:
        q = urllib.parse.quote(json.dumps({"label": [LABEL]}))
        status, data = self.call("GET", f"/containers/json?all=1&filters={q}")
        if status != 200 or not isinstance(data, list):
            raise EngineError(f"list: {status} {_message(data)}")
        return sorted(n.lstrip("/") for c in data for n in c.get("Names", [])[:1])


def _message(data: Any) -> str:
    return str(data.get("message", data)) if isinstance(data, dict) else str(data)


def container_name(plug: str, prefix: str) -> str:
    """store1 -> hacluster-store1; a full container name is taken as is."""
    return plug if plug.startswith(prefix) else prefix + plug


def powered_on(state: dict[str, Any]) -> bool:
    """On unless the engine says not running, not paused and no process (State.Pid 0)."""
    st = state.get("State") or {}
    return bool(st.get("Running") or st.get("Paused") or st.get("Restarting") or st.get("Pid"))


def metadata() -> str:
    return metadata_xml(
        AGENT, "Fence agent for the machines of hacluster's Vagrant lab (docker provider)",
        "fence_hacluster_vagrant powers a machine of the hacluster Vagrant lab off or on when Vagrant runs "
        "it with the docker provider, as fence_virsh does a libvirt VM: off kills the container (every "
        "process of the machine at once), status reports off only when the engine shows neither a running "
        "state nor a process. It acts only on containers labelled hacluster-lab.",
        PARAMETERS, ACTIONS)


def run(opts: dict[str, str], say: Callable[[str], None], engine: Engine | None = None) -> int:
    action = opts.get("action", "reboot")
    if (rc := answered_first(action, say, metadata, ACTIONS)) is not None:
        return rc
    try:
        eng = engine or Engine(opts.get("docker_host") or DOCKER_HOST)
        if action == "monitor":
            eng.ping()
            say("Success: the lab's dockerd answers")
            return EXIT_OK
        if action == "list":  # `plug,alias` lines, as the fencing library prints them
            prefix = opts.get("container_prefix") or PREFIX
            for name in eng.lab_containers():
                say(f"{name[len(prefix):] if name.startswith(prefix) else name},{name}")
            return EXIT_OK
        plug = opts.get("plug", "")
        if not plug:
            say("Failed: no plug (the machine to fence)")
            return EXIT_FAIL
        name = container_name(plug, opts.get("container_prefix") or PREFIX)
        state = eng.inspect(name)
        if state is None:
            say(f"Failed: plug {plug!r}: no container {name} (is the Vagrant lab up?)")
            return EXIT_FAIL
        labels = (state.get("Config") or {}).get("Labels") or {}
        if LABEL not in labels:
            say(f"Failed: container {name} is not a machine of the Vagrant lab (no {LABEL} label): not fencing it")
            return EXIT_FAIL
        if action == "validate-all":
            return EXIT_OK
        if action == "status":
            on = powered_on(state)
            say(f"Status: {'ON' if on else 'OFF'}")
            return EXIT_OK if on else EXIT_OFF
        if action in ("off", "reboot"):
            if powered_on(state):
                eng.post(name, "kill")
            deadline = time.monotonic() + OFF_WAIT_S
            while powered_on(eng.inspect(name) or {}):
                if time.monotonic() > deadline:
                    say(f"Failed: {name} still on {OFF_WAIT_S:g} s after kill")
                    return EXIT_FAIL
                time.sleep(0.1)
            if action == "off":
                say("Success: Powered OFF")
                return EXIT_OK
        eng.post(name, "start")
        say("Success: Powered ON")
        return EXIT_OK
    except EngineError as err:
        say(f"Failed: {err}")
        return EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return agent_main(argv, run, f"{AGENT} needs root (the lab's dockerd socket is root's)")


if __name__ == "__main__":
    sys.exit(main())
