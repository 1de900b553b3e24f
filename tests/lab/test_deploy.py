"""`hacluster deploy` against real sshd in network namespaces (root).

The lab: a router namespace with a bridge, one namespace per "host" (store1, store2, relay1),
each running its own sshd (key authentication only, host key checked against a known_hosts file
the test writes), and an operator namespace `ctl` that runs ZooKeeper (the real server, bound to
its address) and the `hacluster deploy` command itself. So every packet stays inside namespaces
we made, and the targets have no route anywhere else: the wheelhouse upload is all they get.

The hosts share this machine's filesystem, so each gets its own install prefix under the test's
temp dir, and `service: none` (no systemd in a namespace): the agent runs under the supervisor.

The tests run in file order on one lab: dry run (nothing written), first deploy (3 agents
healthy, one store holds the role), second run (no changes), a spec change (a rolling restart:
the standby store before the holder, never both down), a wrong key (stops before any change),
and a `zookeeper` group host that gets a configured, running ZooKeeper server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hacluster.examples import marker_role
from hacluster.zkserver import ZooKeeperEnsemble, ZkServerSpec

pytestmark = [pytest.mark.lab, pytest.mark.zk, pytest.mark.timeout(110)]

PREFIX = "hcd-"
NET = "198.51.100"
ZK_PORT = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "22600")) + 10
HOSTS = {"store1": 11, "store2": 12, "relay1": 21}  # agent hosts
ZK_HOSTS = {"zk1": 31}  # a host that gets a ZooKeeper server from the deploy
SSH_HOSTS = {**HOSTS, **ZK_HOSTS}
CTL = 2

SPEC = """\
# the deploy test's cluster: two stores and a relay, every node in one segment
cluster: hcd
mail: {{domain: deploy.example}}
zookeeper:
  hosts: [{net}.{ctl}:{zk_port}]
  chroot: /hacluster
  session_timeout_s: 4.0
roles:
{roles}nodes:
  - {{name: store1, tier: store, interface: eth0, addresses: [{net}.11/24], priority: 100}}
  - {{name: store2, tier: store, interface: eth0, addresses: [{net}.12/24], priority: 90}}
  - {{name: relay1, tier: relay, interface: eth0, addresses: [{net}.21/24], priority: 100, mx_preference: 10}}
api:
  port: 8740
"""


def run(*args: str, check: bool = True, timeout: float = 20.0, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, timeout=timeout, capture_output=True, text=True, **kw)


def kill_ns(ns: str) -> None:
    for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run("ip", "netns", "del", ns, check=False)


def remove_stale() -> None:
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = (line.split() or [""])[0]
        if name.startswith(PREFIX):
            kill_ns(name)


@dataclass
class Lab:
    tmp: Path
    tag: str
    router: str
    ctl: str
    ns: dict[str, str]
    key: Path
    wrong_key: Path
    known_hosts: Path
    wheel: Path
    zk: ZooKeeperEnsemble | None = None
    sshd: list[subprocess.Popen] | None = None

    def prefix(self, host: str) -> Path:
        return self.tmp / "hosts" / host

    def inventory(self, name: str = "inventory.yml", **host_vars: dict[str, Any]) -> Path:
        lines = [
            "all:",
            "  vars:",
            "    spec: cluster.yml",
            "    zk_credentials: zk.auth",
            f"    ssh_key: {self.key}",
            f"    known_hosts: {self.known_hosts}",
            "    python: /usr/bin/python3",
            "    service: none",
            "    verify_timeout: 40",
            f"    wheel: {self.wheel}",
            f"    wheelhouse: {self.tmp / 'wheelhouse'}",
            "  children:",
        ]
        for group, hosts in (("store", ["store1", "store2"]), ("relay", ["relay1"])):
            lines += [f"    {group}:", "      hosts:"]
            for h in hosts:
                extra = "".join(f", {k}: {json.dumps(v)}" for k, v in host_vars.get(h, {}).items())
                lines.append(f"        {h}: {{ssh_host: {NET}.{HOSTS[h]}, prefix: {self.prefix(h)}{extra}}}")
        path = self.tmp / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def deploy(self, *args: str, timeout: float = 100.0) -> subprocess.CompletedProcess:
        # the operator namespace has no route out: the wheel and the wheelhouse were built
        # beforehand (fixture), as for an air-gapped deploy host; PIP_RETRIES=0: fail fast if not
        env = {**os.environ, "XDG_CACHE_HOME": str(self.tmp / "cache"), "PIP_RETRIES": "0"}
        return run("ip", "netns", "exec", self.ctl, sys.executable, "-m", "hacluster", "deploy", *args,
                   check=False, timeout=timeout, env=env)

    def status(self, host: str) -> dict[str, Any] | None:
        """The agent's /status, asked from the operator namespace."""
        code = ("import json,sys,urllib.request\n"
                "try: print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())\n"
                "except Exception as e: print('null')")
        r = run("ip", "netns", "exec", self.ctl, sys.executable, "-c", code, f"http://{NET}.{HOSTS[host]}:8740/status")
        return json.loads(r.stdout or "null")

    def supervisor_pid(self, host: str) -> int | None:
        try:
            return int((self.prefix(host) / "run" / "hacluster-agent.pid").read_text())
        except (OSError, ValueError):
            return None


def _sshd_config(lab_tmp: Path, name: str, addr: str, host_key: Path, authorized: Path) -> Path:
    cfg = lab_tmp / f"sshd-{name}.conf"
    cfg.write_text("\n".join([
        "Port 22", f"ListenAddress {addr}", f"HostKey {host_key}", f"PidFile {lab_tmp}/sshd-{name}.pid",
        f"AuthorizedKeysFile {authorized}", "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "Subsystem sftp internal-sftp", "LogLevel VERBOSE", "MaxStartups 50", "",
    ]))
    return cfg


def _wheelhouse(folder: Path) -> None:
    """The dependency wheels, fetched here (the operator namespace has no index to reach): what
    an operator does once for an air-gapped deploy host (docs/deploy.md). Under `make wheel-check`
    (tests/wheel_check.py) from its wheelhouse, offline: $HACLUSTER_TEST_WHEELHOUSE."""
    import tomllib

    deps = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["dependencies"]
    given = os.environ.get("HACLUSTER_TEST_WHEELHOUSE")
    offline = ["--no-index", "--find-links", given] if given else []
    run(sys.executable, "-m", "pip", "wheel", "-q", *offline, "-w", str(folder), *deps, timeout=300)


def _wheel(work: Path) -> Path:
    """hacluster's own wheel, built here from the source tree by the deploy's own builder (its
    build needs setuptools from an index, which the operator namespace cannot reach); under
    `make wheel-check`, where this hacluster is that wheel installed, the wheel itself
    ($HACLUSTER_TEST_WHEEL)."""
    from hacluster.deploy.package import build_wheel

    return build_wheel(work, os.environ.get("HACLUSTER_TEST_WHEEL")).wheel


def _wait_port(ns: str, addr: str, port: int, timeout: float = 10.0) -> None:
    code = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if run("ip", "netns", "exec", ns, sys.executable, "-c", code, addr, str(port), check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {addr}:{port} after {timeout:g}s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    remove_stale()
    tmp = tmp_path_factory.mktemp("deploy")
    tag = str(os.getpid() % 100000)
    router, ctl = f"{PREFIX}r{tag}", f"{PREFIX}ctl{tag}"
    ns = {h: f"{PREFIX}{h}-{tag}" for h in SSH_HOSTS}
    for k in ("id", "wrong", "hostkey"):
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"hcd-{k}", "-f", str(tmp / k))
    authorized = tmp / "authorized_keys"
    authorized.write_text((tmp / "id.pub").read_text())
    host_pub = (tmp / "hostkey.pub").read_text().split()
    known = tmp / "known_hosts"
    known.write_text("".join(f"{NET}.{last} {host_pub[0]} {host_pub[1]}\n" for last in SSH_HOSTS.values()))
    (tmp / "cluster.yml").write_text(SPEC.format(net=NET, ctl=CTL, zk_port=ZK_PORT, roles=marker_role()))
    (tmp / "zk.auth").write_text("hcd:deploy-secret\n")
    _wheelhouse(tmp / "wheelhouse")
    wheel = _wheel(tmp / "build")
    lab = Lab(tmp, tag, router, ctl, ns, tmp / "id", tmp / "wrong", known, wheel, sshd=[])
    try:
        run("ip", "netns", "add", router)
        run("ip", "-n", router, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", router, "link", "set", "br0", "up")
        for name, last in [("ctl", CTL), *SSH_HOSTS.items()]:
            n = ctl if name == "ctl" else ns[name]
            run("ip", "netns", "add", n)
            run("ip", "-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{last}", "netns", router)
            run("ip", "-n", router, "link", "set", f"p{last}", "master", "br0", "up")
            run("ip", "-n", n, "addr", "add", f"{NET}.{last}/24", "dev", "eth0")
            run("ip", "-n", n, "link", "set", "eth0", "up")
            run("ip", "-n", n, "link", "set", "lo", "up")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        for name, last in SSH_HOSTS.items():
            cfg = _sshd_config(tmp, name, f"{NET}.{last}", tmp / "hostkey", authorized)
            run("/usr/sbin/sshd", "-t", "-f", str(cfg))
            log = open(tmp / f"sshd-{name}.log", "w")
            lab.sshd.append(subprocess.Popen(["ip", "netns", "exec", ns[name], "/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        zk = ZooKeeperEnsemble(tmp / "zk", [ZkServerSpec(1, f"{NET}.{CTL}", ZK_PORT, ZK_PORT + 1, ZK_PORT + 2)],
                               wrap=lambda s: ["ip", "netns", "exec", ctl])
        lab.zk = zk
        zk.start(timeout=60)
        for last in SSH_HOSTS.values():
            _wait_port(ctl, f"{NET}.{last}", 22)
        yield lab
    finally:
        if lab.zk is not None:
            lab.zk.stop()
        for p in lab.sshd or []:
            p.kill()
            p.wait(timeout=10)
        for n in [*ns.values(), ctl, router]:
            kill_ns(n)  # the agents and their supervisors run inside the host namespaces


def _report(r: subprocess.CompletedProcess) -> dict[str, Any]:
    assert r.stdout.strip(), f"no JSON report; exit {r.returncode}; stderr:\n{r.stderr}"
    return json.loads(r.stdout)


def _steps(doc: dict[str, Any], host: str) -> list[dict[str, Any]]:
    return next(h for h in doc["hosts"] if h["host"] == host)["steps"]


def test_dry_run_prints_the_plan_and_changes_nothing(lab: Lab) -> None:
    r = lab.deploy("--inventory", str(lab.inventory()), "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for host in HOSTS:
        assert not lab.prefix(host).exists(), f"dry run created {lab.prefix(host)}"
    assert "would" in out and "install hacluster" in out and "start hacluster-agent" in out, out
    assert "dry run: 3 of 3 host(s) would change" in out, out
    # pre-flight reads every host: the plan says how each one is reached
    for last in HOSTS.values():
        assert f"root@{NET}.{last}:22" in out


def test_deploy_three_hosts_all_healthy_one_store_holds(lab: Lab) -> None:
    t0 = time.monotonic()
    r = lab.deploy("--inventory", str(lab.inventory()), "--json")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    doc = _report(r)
    assert doc["ok"] and doc["changed"], doc
    print(f"\nfirst deploy of 3 hosts: {took:.1f}s\n{r.stderr}")
    # one progress line per step per host, in rollout order: the relay before the stores
    lines = [ln for ln in r.stderr.splitlines() if ln.split()[:1] and ln.split()[0] in HOSTS]
    first = [ln.split()[0] for ln in lines if ln.split()[1] == "package"]
    assert first == ["relay1", "store1", "store2"], first
    for host in HOSTS:
        steps = [s["step"] for s in _steps(doc, host)]
        assert steps == ["connect", "package", "spec", "credentials", "service", "start", "verify"], steps
        st = lab.status(host)
        assert st and st["healthy"] and st["zookeeper"] == "connected", (host, st)
        etc = lab.prefix(host) / "etc"
        assert (etc / "cluster.yml").stat().st_mode & 0o777 == 0o600
        assert (etc / "zk.auth").stat().st_mode & 0o777 == 0o600
        assert (etc / "zk.auth").read_text() == "hcd:deploy-secret\n"
        assert f"auth_file: {etc / 'zk.auth'}" in (etc / "cluster.yml").read_text()
        assert (lab.prefix(host) / "current").resolve().parent == lab.prefix(host) / "venvs"
    holders = [h for h in ("store1", "store2") if lab.status(h)["roles"]["store"]["held"]]
    assert len(holders) == 1, holders
    assert lab.status("relay1")["roles"] == {}


def test_second_run_changes_nothing_and_says_so(lab: Lab) -> None:
    pids = {h: lab.supervisor_pid(h) for h in HOSTS}
    t0 = time.monotonic()
    r = lab.deploy("--inventory", str(lab.inventory()))
    took = time.monotonic() - t0
    print(f"\nsecond (idempotent) run: {took:.1f}s\n{r.stdout}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deploy: no changes (3 host(s) up to date and healthy" in r.stdout, r.stdout
    assert " changed " not in r.stdout and "started" not in r.stdout
    assert {h: lab.supervisor_pid(h) for h in HOSTS} == pids, "an agent was restarted"


def test_spec_change_rolls_one_store_at_a_time_holder_last(lab: Lab) -> None:
    holder = next(h for h in ("store1", "store2") if lab.status(h)["roles"]["store"]["held"])
    standby = "store2" if holder == "store1" else "store1"
    spec = lab.tmp / "cluster.yml"
    spec.write_text(spec.read_text().replace("session_timeout_s: 4.0", "session_timeout_s: 4.5"))
    r = lab.deploy("--inventory", str(lab.inventory()), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = _report(r)
    restarts = [ln.split()[0] for ln in r.stderr.splitlines() if ln.split()[1:2] == ["restart"]]
    assert restarts == ["relay1", standby, holder], r.stderr
    for host in HOSTS:
        steps = {s["step"]: s["status"] for s in _steps(doc, host)}
        assert steps["spec"] == "changed" and steps["package"] == "unchanged" and steps["credentials"] == "unchanged", steps
        assert steps["verify"] == "ok"
    # the standby was verified healthy before the holder was touched: the holder's restart
    # line comes after the standby's verify line
    order = [(ln.split()[0], ln.split()[1]) for ln in r.stderr.splitlines() if ln.split()[:1] and ln.split()[0] in HOSTS]
    assert order.index((standby, "verify")) < order.index((holder, "restart"))
    holders = [h for h in ("store1", "store2") if lab.status(h)["roles"]["store"]["held"]]
    assert len(holders) == 1, holders


def test_wrong_key_stops_the_rollout_before_any_change(lab: Lab) -> None:
    spec = lab.tmp / "cluster.yml"
    spec.write_text(spec.read_text() + "# another change that would restart every agent\n")
    pids = {h: lab.supervisor_pid(h) for h in HOSTS}
    inv = lab.inventory("wrong-key.yml", store2={"ssh_key": str(lab.wrong_key)})
    r = lab.deploy("--inventory", str(inv), "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    err_line = r.stderr.strip().splitlines()[-1]
    assert err_line.startswith("hacluster: deploy stopped at store2, step connect: authentication failed for root@"), err_line
    assert str(lab.wrong_key) in err_line
    doc = _report(r)
    assert not doc["ok"]
    assert {h["host"]: h["state"] for h in doc["hosts"]}["store2"] == "failed"
    # pre-flight stopped it: nothing was written anywhere, no agent restarted
    assert {h: lab.supervisor_pid(h) for h in HOSTS} == pids
    for host in HOSTS:
        assert "another change" not in (lab.prefix(host) / "etc" / "cluster.yml").read_text()


def test_zookeeper_group_gets_a_running_server(lab: Lab) -> None:
    """A `zookeeper` host: zoo.cfg from the spec's zookeeper.hosts, the real server started under
    the supervisor, verified serving; no hacluster package on it; a second run changes nothing."""
    addr = f"{NET}.{ZK_HOSTS['zk1']}"
    spec = lab.tmp / "cluster-zk.yml"
    spec.write_text(SPEC.format(net=NET, ctl=CTL, zk_port=ZK_PORT, roles=marker_role()).replace(f"{NET}.{CTL}:{ZK_PORT}", f"{addr}:2181"))
    inv = lab.tmp / "zk.yml"
    inv.write_text(
        "zookeeper:\n"
        f"  vars: {{spec: cluster-zk.yml, ssh_key: {lab.key}, known_hosts: {lab.known_hosts}, python: /usr/bin/python3,"
        " service: none, verify_timeout: 60}\n"
        f"  hosts:\n    zk1: {{ssh_host: {addr}, prefix: {lab.prefix('zk1')}}}\n")
    r = lab.deploy("--inventory", str(inv))
    assert r.returncode == 0, r.stdout + r.stderr
    steps = [ln.split()[1:3] for ln in r.stdout.splitlines() if ln.startswith("zk1 ")]
    assert steps == [["connect", "ok"], ["zookeeper", "changed"], ["start", "changed"], ["verify", "ok"]], r.stdout
    assert f"ZooKeeper {addr}:2181 srvr: standalone" in r.stdout
    zk_dir = lab.prefix("zk1") / "zookeeper"
    assert f"clientPortAddress={addr}\n" in (zk_dir / "zoo.cfg").read_text()
    assert (zk_dir / "data" / "myid").read_text() == "1\n"
    assert not (lab.prefix("zk1") / "venvs").exists()  # a ZooKeeper-only host needs no hacluster
    probe = run("ip", "netns", "exec", lab.ctl, sys.executable, "-m", "hacluster.zkserver", addr, "2181", "srvr")
    assert "Mode: standalone" in probe.stdout
    again = lab.deploy("--inventory", str(inv))
    assert again.returncode == 0 and "deploy: no changes (1 host(s)" in again.stdout, again.stdout
