"""zookeeper.tls against a real TLS-enabled ZooKeeper (Debian's 3.8 with its Netty server,
secureClientPort, PEM key and trust stores, client certificates required): agents elect a
holder and take over through it; a client with another CA, or without a client certificate, is
refused; a missing file is one clear error."""

from __future__ import annotations

import os
import subprocess
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
