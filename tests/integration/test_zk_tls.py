"""zookeeper.tls against a real TLS-enabled ZooKeeper (Debian's 3.8 with its Netty server,
secureClientPort, PEM key and trust stores, client certificates required): agents elect a
holder and take over through it; a client with another CA, or without a client certificate, is
refused; a missing file is one clear error."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hacluster.coord.session import Coordinator
from hacluster.errors import UserError
from hacluster_lab.localcluster import LocalCluster, spec_text
from hacluster.spec import SpecError, parse_spec
from hacluster.zkserver import ServerTls, ZooKeeperEnsemble

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]
TLS_ZK_PORT = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800")) + 80  # +80..+82, secure +85


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d: Path, ca: str, name: str, san: str | None = None) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name, cwd=d)
    os.chmod(d / f"{name}.key", 0o600)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "ca", "server", san="IP:127.0.0.1")
    make_cert(d, "ca", "agent")
    make_cert(d, "other-ca", "stranger")
    (d / "server-keystore.pem").write_text((d / "server.key").read_text() + (d / "server.pem").read_text())
    return d


@pytest.fixture(scope="module")
def zk_tls(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> ZooKeeperEnsemble:
    ens = ZooKeeperEnsemble.local(tmp_path_factory.mktemp("zk_tls"), n=1, base_port=TLS_ZK_PORT,
                                  tls=ServerTls(pki / "server-keystore.pem", pki / "ca.pem"))
    try:
        ens.start(timeout=60)
        yield ens
    finally:
        ens.stop()


def tls_spec(zk: ZooKeeperEnsemble, pki: Path, name: str, ca: str = "ca", client: str | None = "agent") -> str:
    text = spec_text(zk.secure_hosts, 2, "default", name)
    tls = f"    ca: {pki / (ca + '.pem')}\n"
    if client:
        tls += f"    cert: {pki / (client + '.pem')}\n    key: {pki / (client + '.key')}\n"
    return text.replace("  session_timeout_s: 4.0\n", "  session_timeout_s: 4.0\n  tls:\n" + tls)


def test_agents_elect_and_take_over_through_tls(zk_tls: ZooKeeperEnsemble, pki: Path, tmp_path: Path) -> None:
    name = f"tls{os.getpid()}"
    lc = LocalCluster(zk_tls.secure_hosts, tmp_path / name, n=2, spec_text_=tls_spec(zk_tls, pki, name))
    try:
        lc.start_all()
        first = lc.wait_holder(timeout=40)
        assert first, lc.agent_log_tail("node1")
        t_kill = lc.kill(first[0])
        second = lc.wait_holder(exclude=(first[0],), timeout=20)
        assert second and second[1] - t_kill < 3.0, lc.agent_log_tail("node2")
        assert not lc.dual_holders()
        # the plain port is not what they used: the secure one saw their sessions
        conns = subprocess.run(["ss", "-tnH", "state", "established", f"( dport = :{TLS_ZK_PORT + 5} )"],
                               capture_output=True, text=True, timeout=10).stdout
        assert conns.strip(), "no connection to the secureClientPort"
    finally:
        lc.cleanup()


@pytest.mark.parametrize("ca,client", [("other-ca", "agent"), ("ca", None), ("ca", "stranger")],
                         ids=["server-not-trusted", "no-client-cert", "client-cert-of-another-ca"])
def test_a_client_the_server_or_we_do_not_trust_is_refused(zk_tls: ZooKeeperEnsemble, pki: Path, ca: str,
                                                          client: str | None) -> None:
    spec = parse_spec(tls_spec(zk_tls, pki, f"tlsno{os.getpid()}", ca=ca, client=client))
    c = Coordinator(spec, "probe", request_timeout=2.0)
    with pytest.raises(UserError) as err:
        c.start(timeout=4.0)
    assert err.value.exit_code == 1 and "cannot reach ZooKeeper" in str(err.value)
    c.stop()


def test_missing_file_and_half_a_client_pair_are_clear_errors(zk_tls: ZooKeeperEnsemble, pki: Path, tmp_path: Path) -> None:
    text = tls_spec(zk_tls, pki, "tlsbad").replace(str(pki / "ca.pem"), str(tmp_path / "nope.pem"))
    with pytest.raises(UserError, match=r"nope\.pem: zookeeper\.tls\.ca: cannot read"):
        Coordinator(parse_spec(text), "probe")
    half = tls_spec(zk_tls, pki, "tlsbad").replace(f"    key: {pki / 'agent.key'}\n", "")
    with pytest.raises(SpecError, match=r"zookeeper\.tls\.key: is required with zookeeper\.tls\.cert"):
        parse_spec(half, "c.yml")


def test_deploy_writes_a_tls_zoo_cfg_that_zookeeper_serves(pki: Path, tmp_path: Path) -> None:
    """With zookeeper.tls the deploy's zoo.cfg opens the spec's port as secureClientPort (Netty,
    PEM stores, client certificates required because the agents present one) and keeps the plain
    port on loopback for its four-letter probe. The files the deploy would write are started as
    they are (its supervisor script and java command line) and an agent's coordinator talks TLS."""
    from hacluster.deploy import Deployer
    from hacluster.deploy.plan import Facts
    from hacluster.deploy.inventory import load_inventory
    from hacluster.zkserver import _kill_group, four_letter

    def ruok(port: int) -> bool:
        try:
            return "imok" in four_letter("127.0.0.1", port, "ruok")
        except OSError:
            return False

    secure, local = TLS_ZK_PORT + 6, TLS_ZK_PORT + 7
    name = f"tlsdeploy{os.getpid()}"
    spec = tmp_path / "cluster.yml"
    spec.write_text(tls_spec_for(f"127.0.0.1:{secure}", pki, name))
    prefix = tmp_path / "opt"
    inv = tmp_path / "inventory.yml"
    inv.write_text(f"all:\n  vars: {{spec: {spec}, prefix: {prefix}, service: none, zk_local_port: {local},\n"
                   f"         zk_tls_keystore: {pki / 'server-keystore.pem'}}}\n"
                   "  children:\n    zookeeper:\n      hosts: {zk1: {ssh_host: 127.0.0.1}}\n")
    dep = Deployer(load_inventory(str(inv)), None, True, open(os.devnull, "w"))
    try:
        d = dep.desired(dep.inv.hosts["zk1"], Facts(uid=0, python="3.11", machine="x86_64", systemd=False))
    finally:
        dep.close()
    files = {f.path: f for f in d.files if f.step == "zookeeper"}
    cfg = files[str(prefix / "zookeeper" / "zoo.cfg")].content.decode()
    for line in (f"secureClientPort={secure}", "secureClientPortAddress=127.0.0.1",
                 f"clientPort={local}", "clientPortAddress=127.0.0.1", "ssl.clientAuth=need",
                 "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                 f"ssl.keyStore.location={pki / 'server-keystore.pem'}", "ssl.keyStore.type=PEM",
                 f"ssl.trustStore.location={pki / 'ca.pem'}", "ssl.trustStore.type=PEM", "autopurge.purgeInterval=1"):
        assert line + "\n" in cfg, (line, cfg)
    for path, f in files.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(f.content)
        os.chmod(path, f.mode)
    script = next(p for p in files if not p.endswith((".cfg", "myid", ".properties")))
    (prefix / "run").mkdir(exist_ok=True)
    proc = subprocess.Popen(["sh", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    c = None
    try:
        deadline = time.monotonic() + 60
        while not ruok(local):
            assert proc.poll() is None and time.monotonic() < deadline, (
                "ZooKeeper did not start: " + "".join(p.read_text()[-600:] for p in prefix.rglob("*.log")))
            time.sleep(0.5)
        c = Coordinator(parse_spec(spec.read_text(), str(spec)), "t0", request_timeout=5.0)
        c.start(timeout=30)
        c.zk.ensure_path(c.paths.root)
        assert c.zk.exists(c.paths.root) is not None
        # the secure port speaks only TLS: a plain client's four-letter word gets no answer
        with socket.create_connection(("127.0.0.1", secure), timeout=5) as s:
            s.sendall(b"ruok")
            s.settimeout(3)
            try:
                answer = s.recv(16)
            except (TimeoutError, OSError):
                answer = b""
        assert answer != b"imok"
    finally:
        if c is not None:
            c.stop()
        _kill_group(proc.pid, 9)
        proc.wait(timeout=10)


def tls_spec_for(hosts: str, pki: Path, name: str) -> str:
    text = spec_text(hosts, 2, "default", name)
    tls = f"    ca: {pki / 'ca.pem'}\n    cert: {pki / 'agent.pem'}\n    key: {pki / 'agent.key'}\n"
    return text.replace("  session_timeout_s: 4.0\n", "  session_timeout_s: 4.0\n  tls:\n" + tls)
