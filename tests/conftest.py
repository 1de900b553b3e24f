"""Shared fixtures: real ZooKeeper servers (Debian's package) and kazoo clients.

The servers are started once per session (JVM start is the slow part) and handed to each test
through a function-scoped wrapper that first restarts any server an earlier test killed, so a
test that kills a leader can't break the next one. Ports: HACLUSTER_ZK_PORT_BASE (default 21800)
+10..12 for `zk_single`, +20..42 for `zk_ensemble`; set it to your own range when running tests
next to someone else's.
"""

from __future__ import annotations

import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar
from pathlib import Path

import pytest

from hacluster import config_path
from hacluster.zkserver import ZooKeeperEnsemble

ZK_PORT_BASE = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800"))
ZK_SINGLE_PORT = ZK_PORT_BASE + 10
ZK_ENSEMBLE_PORT = ZK_PORT_BASE + 20
ZK_START_TIMEOUT = 60.0  # generous: CI shares 2 cores; a healthy start takes ~0.4 s / ~1.2 s
ZK_CONNECT_TIMEOUT = 15.0


def pytest_configure(config: pytest.Config) -> None:
    """Under `make wheel-check` (tests/wheel_check.py: $HACLUSTER_TEST_INSTALLED, its venv) these
    tests must exercise the installed wheels: stop at once if either package comes from elsewhere."""
    venv = os.environ.get("HACLUSTER_TEST_INSTALLED")
    if venv:
        import hacluster
        import hacluster_lab

        for mod in (hacluster, hacluster_lab):
            if not Path(mod.__file__ or "").resolve().is_relative_to(Path(venv).resolve()):
                raise pytest.UsageError(f"{mod.__name__} is imported from {mod.__file__}, not from the installed {venv}")


@pytest.fixture(autouse=True)
def _no_ambient_cluster_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test names its cluster spec: neither the runner's $HACLUSTER_CONFIG nor this host's
    /etc/hacluster/cluster.yml may leak into a command run in-process."""
    monkeypatch.delenv(config_path.ENV_VAR, raising=False)
    monkeypatch.setattr(config_path, "DEFAULT_PATH", Path("/nonexistent/hacluster-tests/cluster.yml"))


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import matplotlib` fails as on a host without the lab extra."""
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


# every module of a package, then: was matplotlib imported? (__main__ would run the CLI)
_IMPORT_ALL = """
import importlib, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
names = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names), *sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))
"""


@pytest.fixture
def matplotlib_on_import() -> Callable[[str], tuple[int, list[str]]]:
    """f(package): (how many modules of it a fresh interpreter imported, the matplotlib modules
    that loaded meanwhile) -- matplotlib is the `lab` extra, so none may load at import time."""

    def imported(package: str) -> tuple[int, list[str]]:
        res = subprocess.run([sys.executable, "-c", _IMPORT_ALL, package], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        count, *loaded = res.stdout.split()
        return int(count), loaded

    return imported


_Srv = TypeVar("_Srv", bound=socketserver.BaseServer)


@pytest.fixture
def serve() -> Iterator[Callable[[_Srv], _Srv]]:
    """serve(server): the server's `serve_forever` on a thread of its own until the test ends,
    then shut down and closed (the loopback listeners the unit tests talk to)."""
    started: list[tuple[socketserver.BaseServer, threading.Thread]] = []

    def start(srv: _Srv) -> _Srv:
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        started.append((srv, t))
        return srv

    yield start
    for srv, t in started:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def _ensure_serving(ens: ZooKeeperEnsemble) -> ZooKeeperEnsemble:
    """Restart whatever a previous test stopped, then wait for one leader."""
    for spec in ens.servers:
        ens.start_server(spec.id)
    ens.wait_serving(ZK_START_TIMEOUT)
    return ens


@pytest.fixture(scope="session")
def _zk_single_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    ens = ZooKeeperEnsemble.local(tmp_path_factory.mktemp("zk_single"), n=1, base_port=ZK_SINGLE_PORT)
    try:
        ens.start(timeout=ZK_START_TIMEOUT)
        yield ens
    finally:
        ens.stop()


@pytest.fixture(scope="session")
def _zk_ensemble_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    ens = ZooKeeperEnsemble.local(tmp_path_factory.mktemp("zk_ensemble"), n=3, base_port=ZK_ENSEMBLE_PORT)
    try:
        ens.start(timeout=ZK_START_TIMEOUT)
        yield ens
    finally:
        ens.stop()


@pytest.fixture
def zk_single(_zk_single_session: ZooKeeperEnsemble) -> ZooKeeperEnsemble:
    """A standalone ZooKeeper server on 127.0.0.1 (shared by the session, serving on entry)."""
    return _ensure_serving(_zk_single_session)


@pytest.fixture
def zk_ensemble(_zk_ensemble_session: ZooKeeperEnsemble) -> ZooKeeperEnsemble:
    """A 3-server ZooKeeper ensemble on 127.0.0.1 (shared by the session, all serving on entry)."""
    return _ensure_serving(_zk_ensemble_session)


@pytest.fixture
def zk_client_factory() -> Iterator[Callable[..., object]]:
    """`make(target, **kazoo_kwargs)` -> a connected KazooClient; all stopped at teardown.

    `target` is a ZooKeeperEnsemble or a kazoo hosts string.
    """
    from kazoo.client import KazooClient

    clients: list[KazooClient] = []

    def make(target: ZooKeeperEnsemble | str, **kwargs: object) -> KazooClient:
        hosts = target.hosts if isinstance(target, ZooKeeperEnsemble) else target
        client = KazooClient(hosts=hosts, **kwargs)
        clients.append(client)
        client.start(timeout=ZK_CONNECT_TIMEOUT)
        return client

    try:
        yield make
    finally:
        for client in clients:
            try:
                client.stop()
            finally:
                client.close()

