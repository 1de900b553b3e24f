"""The agent API over HTTPS with client certificates (api.tls_cert/tls_key/tls_client_ca).

Certificates are made here with `cryptography`: a CA that signs the server certificate (with the
nodes' loopback addresses as IP SANs) and one client certificate, plus a second, untrusted CA that
signs an impostor's client certificate. Real agents (LocalCluster) serve the API.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hacluster import clock
from hacluster_lab.localcluster import LocalCluster, spec_text
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]

ZK_PORT_BASE = int(os.environ.get("HACLUSTER_ZK_PORT_BASE", "21800"))
API_PORT_BASE = ZK_PORT_BASE + 55  # +55..+57
TOKEN = "tls-token-" + os.urandom(6).hex()


# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def make_ca(d: Path, cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = d / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_leaf(d: Path, cn: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path], *,
              server: bool, ips: tuple[str, ...] = ()) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca[0].subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False))
    if ips:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]),
                            critical=False)
    cert = b.sign(ca[1], hashes.SHA256())
    crt, key_path = d / f"{cn}.crt", d / f"{cn}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return crt, key_path


class Pki:
    def __init__(self, d: Path, ips: tuple[str, ...]) -> None:
        d.mkdir(parents=True, exist_ok=True)
        ca = make_ca(d, "cluster-ca")
        self.ca = ca[2]
        self.server = make_leaf(d, "agent", ca, server=True, ips=ips)
        self.client = make_leaf(d, "operator", ca, server=False)
        rogue_ca = make_ca(d, "rogue-ca")
        self.impostor = make_leaf(d, "impostor", rogue_ca, server=False)


# --------------------------------------------------------------------------- helpers


def tls_spec(zk_hosts: str, pki: Pki, client_ca: bool) -> str:
    api = (f"api:\n  port: 0\n  tls_cert: {pki.server[0]}\n  tls_key: {pki.server[1]}\n"
           + (f"  tls_client_ca: {pki.ca}\n" if client_ca else ""))
    return spec_text(zk_hosts, cluster=f"tls{os.getpid()}x{os.urandom(2).hex()}").replace("api:\n  port: 0\n", api)


def client_ctx(pki: Pki, cert: tuple[Path, Path] | None, trust: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(trust or pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def https(url: str, ctx: ssl.SSLContext, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            raw = r.read()
            return r.status, json.loads(raw) if r.headers["Content-Type"] == "application/json" else raw.decode()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def refused(url: str, ctx: ssl.SSLContext | None) -> str:
    """The request fails at the TLS layer (no HTTP answer at all); returns the error text."""
    try:
        with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
            pytest.fail(f"{url} answered {r.status} without the right certificates")
    except urllib.error.HTTPError as err:
        pytest.fail(f"{url} answered HTTP {err.code} without the right certificates")
    except (urllib.error.URLError, ssl.SSLError, ConnectionError, OSError) as err:
        return str(err)
    raise AssertionError("unreachable")


@pytest.fixture
def tls_cluster(zk_single, tmp_path: Path) -> Iterator[Callable[[bool], tuple[LocalCluster, Pki]]]:
    made: list[LocalCluster] = []

    def make(client_ca: bool) -> tuple[LocalCluster, Pki]:
        ips = tuple(f"127.0.0.{10 + i}" for i in range(1, 4))
        pki = Pki(tmp_path / f"pki{len(made)}", ips)
        lc = LocalCluster(zk_single.hosts, tmp_path / f"agents{len(made)}", spec_text_=tls_spec(zk_single.hosts, pki, client_ca),
                          api=True, api_port_base=API_PORT_BASE)
        made.append(lc)
        for n in lc.nodes:
            lc.state_dir(n).mkdir(parents=True, exist_ok=True)
            (lc.state_dir(n) / "api.token").write_text(TOKEN)
        lc.start_all()
        return lc, pki

    try:
        yield make
    finally:
        for lc in made:
            lc.cleanup()
            lc.print_log_tails(12)


def url(lc: LocalCluster, node: str, path: str) -> str:
    return lc.api_url(node, path).replace("http://", "https://")


# --------------------------------------------------------------------------- tests


def test_client_certificate_required_and_checked(tls_cluster):
    lc, pki = tls_cluster(True)
    good = client_ctx(pki, pki.client)
    wait_for(lambda: len(lc.believed_holders("store")) == 1, 25, "a holder")
    wait_for(lambda: all(not isinstance(_try(url(lc, n, "/status"), good), Exception) for n in lc.nodes), 15, "APIs up")
    holder = lc.believed_holders("store")[0]
    target = next(n for n in lc.nodes if n != holder)

    for n in lc.nodes:
        code, st = https(url(lc, n, "/status"), good)
        assert code == 200 and st["node"] == n
        code, doc = https(url(lc, n, "/openapi.json"), good)
        assert code == 200 and doc["openapi"].startswith("3.1")
    code, metrics = https(url(lc, holder, "/metrics"), good)
    assert code == 200 and 'hacluster_role_held{role="store"} 1.0' in metrics

    # no client certificate, one from another CA, plain HTTP, a client that does not trust the
    # server's CA: all refused at the TLS layer, before any HTTP is spoken
    errors = {
        "no client cert": refused(url(lc, target, "/status"), client_ctx(pki, None)),
        "impostor cert": refused(url(lc, target, "/status"), client_ctx(pki, pki.impostor)),
        "plain http": refused(lc.api_url(target, "/status"), None),
        "untrusted server": refused(url(lc, target, "/status"),
                                    client_ctx(pki, pki.client, trust=pki.server[0].parent / "rogue-ca.pem")),
    }
    print(errors)
    assert "CERTIFICATE_VERIFY_FAILED" in errors["untrusted server"]
    # the client may see the server's alert or just the close, depending on timing: the server says why
    log = wait_for(lambda: (t := lc.log_path(target).read_text()).count("TLS handshake with") >= 3 and t, 5, "log lines")
    for why in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED", "HTTP_REQUEST"):
        assert f"failed: [SSL: {why}]" in log, why

    # a client that connects and never starts the handshake does not hold up anybody else
    stall = socket.create_connection((lc.spec.nodes[target].address, lc.api_port(target)), timeout=5)
    try:
        t0 = clock.now()
        assert https(url(lc, target, "/health"), good)[0] == 200
        assert clock.now() - t0 < 3.0
    finally:
        stall.close()

    # the token still guards writes behind the certificate
    body = {"role": "store", "to": target}
    assert https(url(lc, target, "/switchover"), good, "POST", body)[0] == 401
    code, err = https(url(lc, target, "/switchover"), good, "POST", {"role": "store", "bogus": 1}, TOKEN)
    assert code == 400 and err["field"] == "bogus"
    code, ok = https(url(lc, target, "/switchover"), good, "POST", body, TOKEN)
    assert code == 202 and ok == {"accepted": True, "role": "store", "to": target}
    wait_for(lambda: lc.believed_holders("store") == [target], 15, f"the switchover to {target}")
    assert https(url(lc, target, "/leader/store"), good)[0] == 200

    for n in lc.nodes:
        assert lc.alive(n)
        text = lc.log_path(n).read_text(errors="replace")
        assert "Traceback" not in text
    assert lc.dual_holders() == []


def _try(u: str, ctx: ssl.SSLContext) -> Any:
    try:
        return https(u, ctx)
    except Exception as err:  # noqa: BLE001 - polling until the API is up
        return err


def test_server_certificate_only_any_client_may_connect(tls_cluster):
    lc, pki = tls_cluster(False)
    anon = client_ctx(pki, None)
    wait_for(lambda: not isinstance(_try(url(lc, "node1", "/health"), anon), Exception), 20, "API up")
    code, body = https(url(lc, "node1", "/health"), anon)
    assert code in (200, 503) and set(body) == {"healthy", "reasons"}
    refused(lc.api_url("node1", "/health"), None)  # still no plain HTTP on the TLS port


def test_unloadable_certificate_is_one_line_at_start(zk_single, tmp_path: Path):
    pki = Pki(tmp_path / "pki", ("127.0.0.11",))
    bad = tmp_path / "garbage.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        ("cannot load the API certificate", bad, pki.server[1], None),
        ("cannot load the API certificate", pki.server[0], pki.client[1], None),  # the key of another certificate
        ("cannot load the API client CA", pki.server[0], pki.server[1], tmp_path / "missing-ca.pem"),
    ]
    for want, cert, key, ca in cases:
        text = spec_text(zk_single.hosts, cluster=f"bad{os.getpid()}").replace(
            "api:\n  port: 0\n", f"api:\n  port: 0\n  tls_cert: {cert}\n  tls_key: {key}\n" + (f"  tls_client_ca: {ca}\n" if ca else ""))
        spec = tmp_path / "bad.yml"
        spec.write_text(text)
        res = subprocess.run([sys.executable, "-m", "hacluster", "agent", "--config", str(spec), "--node", "node1",
                              "--state-dir", str(tmp_path / "st"), "--api-port", str(API_PORT_BASE)],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert res.returncode == 2, (want, res.returncode, res.stderr[-2000:])
        assert want in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert str(ca or cert) in res.stderr


def test_slow_handshakes_do_not_stop_the_accept_loop(tls_cluster):
    """Ten idle TCP connections (no ClientHello) at once: the API still answers at once."""
    lc, pki = tls_cluster(True)
    good = client_ctx(pki, pki.client)
    wait_for(lambda: not isinstance(_try(url(lc, "node2", "/health"), good), Exception), 20, "API up")
    socks = [socket.create_connection((lc.spec.nodes["node2"].address, lc.api_port("node2")), timeout=5) for _ in range(10)]
    try:
        results: list[float] = []

        def probe() -> None:
            t0 = clock.now()
            https(url(lc, "node2", "/health"), good)
            results.append(clock.now() - t0)

        threads = [threading.Thread(target=probe) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert len(results) == 3 and max(results) < 3.0, results
    finally:
        for s in socks:
            s.close()
