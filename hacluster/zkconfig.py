"""ZooKeeper server configuration: the JVM command line and zoo.cfg for one ensemble member.

Shared by `hacluster deploy` (real hosts) and hacluster/zkserver.py (the servers the tests and the
lab start on loopback), so the product never imports the lab's server runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

JAVA_DIR = Path("/usr/share/java")
ZK_JAR = JAVA_DIR / "zookeeper.jar"
# The slf4j binding + log4j: without them the server logs nothing at all.
LOG_JARS = (JAVA_DIR / "slf4j-log4j12.jar", JAVA_DIR / "log4j-1.2.jar")
# TLS (secureClientPort) needs ZooKeeper's Netty server. Debian's zookeeper.jar names netty-buffer,
# -common, -handler, -transport and -transport-native-epoll in its manifest, but Netty's SSL
# handler also needs netty-codec (io.netty.handler.codec.ByteToMessageDecoder: without it the
# server logs NoClassDefFoundError and never answers on the secure port) and netty-resolver:
# all from libnetty-java, which the zookeeper package already depends on.
TLS_JARS = tuple(JAVA_DIR / f"netty-{n}.jar" for n in ("codec", "resolver", "transport-native-unix-common"))
#: a TLS-enabled server's secureClientPort: its client port + this (inside its block of 10 ports)
SECURE_PORT_OFFSET = 5
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# Small, quick JVM: a 3-server ensemble plus the tests share 2 cores.
JVM_OPTS = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",  # no /tmp/hsperfdata_* files left behind after SIGKILL
    "-Djava.awt.headless=true",
    "-Dzookeeper.jmx.log4j.disable=true",
)
#: zoo.cfg autopurge: snapshots kept (ZooKeeper's minimum is 3) and hours between purges (0 = never)
AUTOPURGE_SNAP_RETAIN = 3
AUTOPURGE_INTERVAL_H = 1
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.RollingFileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.MaxFileSize=10MB
log4j.appender.FILE.MaxBackupIndex=2
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
"""


@dataclass(frozen=True)
class ZkServerSpec:
    """Where one ensemble member listens: clients, quorum peers, leader election."""

    id: int
    address: str
    client_port: int
    peer_port: int
    election_port: int


@dataclass(frozen=True)
class ServerTls:
    """A secureClientPort beside the plain one: PEM files as ZooKeeper 3.8 reads them."""

    keystore: Path  # the server's private key and certificate (chain), one PEM file
    truststore: Path  # PEM CA bundle client certificates must chain to
    client_auth: str = "need"  # need | want | none
    port: int | None = None  # secureClientPort; None: the client port + SECURE_PORT_OFFSET (the tests' servers)


def host_port(address: str, port: int) -> str:
    """`addr:port`, bracketing IPv6 literals (both zoo.cfg and kazoo accept that form)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def render_config(spec: ZkServerSpec, servers: list[ZkServerSpec], data_dir: Path, tick_ms: int,
                  tls: ServerTls | None = None, client_address: str | None = None) -> str:
    """zoo.cfg for `spec`. One server runs standalone; more list every `server.N` line.

    initLimit/syncLimit are set in wall time (10 s / 2 s) rather than ticks, so a short tick
    doesn't make a loaded 2-core machine drop followers (syncLimit*tick is how long a follower
    may lag before the leader gives up on it).

    Autopurge keeps the 3 newest snapshots (and the transaction logs they need) and purges every
    hour: ZooKeeper's default keeps everything, and every lease renewal is a logged transaction,
    so an untended dataDir fills its disk in weeks. `hacluster deploy` writes this file too.

    With `tls` the server also listens on a secureClientPort (Netty, PEM stores); the plain
    clientPort then binds `client_address` if given (the deploy: loopback only, for the four-letter
    probes and zkCli on the host, so nothing crosses the network in clear).
    """
    lines = [
        f"tickTime={tick_ms}",
        f"initLimit={max(10, math.ceil(10_000 / tick_ms))}",
        f"syncLimit={max(5, math.ceil(2_000 / tick_ms))}",
        f"dataDir={data_dir}",
        f"clientPort={spec.client_port}",
        f"clientPortAddress={client_address or spec.address}",
        "admin.enableServer=false",  # else every server binds :8080 and they collide
        "4lw.commands.whitelist=ruok,srvr,stat,mntr,conf",
        "maxClientCnxns=0",  # tests and benchmarks open many sessions from one address
        f"autopurge.snapRetainCount={AUTOPURGE_SNAP_RETAIN}",
        f"autopurge.purgeInterval={AUTOPURGE_INTERVAL_H}",
    ]
    if tls is not None:
        lines += [
            f"secureClientPort={tls.port if tls.port is not None else spec.client_port + SECURE_PORT_OFFSET}",
            f"secureClientPortAddress={spec.address}",
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            f"ssl.keyStore.location={tls.keystore}", "ssl.keyStore.type=PEM",
            f"ssl.trustStore.location={tls.truststore}", "ssl.trustStore.type=PEM",
            f"ssl.clientAuth={tls.client_auth}",
        ]
    if len(servers) > 1:
        for s in servers:
            lines.append(f"server.{s.id}={host_port(s.address, s.peer_port)}:{s.election_port}")
    return "\n".join(lines) + "\n"
