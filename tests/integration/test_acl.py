"""ZooKeeper ACLs on a real server: the cluster's znodes belong to the cluster's digest credentials.

Agents run as real processes (LocalCluster) with `zookeeper.auth_file`; rogue kazoo clients
(no credentials, wrong credentials) try every read and write on every kind of znode. The
credential rotation test runs exactly the zkCli steps that docs/security.md prescribes, with the
agents running throughout.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import ACL, ANYONE_ID_UNSAFE, Permissions, make_digest_acl, make_digest_acl_credential

from hacluster import clock
from hacluster.agent.claims import read_events
from hacluster.coord.session import Coordinator
from hacluster_lab.localcluster import LocalCluster, spec_text
from hacluster.zkserver import ZooKeeperEnsemble
from .agents import Clusters
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]

ROLE = "store"
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"


# --------------------------------------------------------------------------- helpers


def write_creds(path: Path, user: str, password: str) -> None:
    """The credentials file as an operator writes it: one line, mode 0600 from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{user}:{password}\n")
    os.chmod(path, 0o600)


def secured_spec(zk_hosts: str, chroot: str, auth_file: Path | None, cluster: str, **kw: Any) -> str:
    text = spec_text(zk_hosts, cluster=cluster, **kw)
    extra = f"\n  auth_file: {auth_file}" if auth_file else ""
    return text.replace("  chroot: /hacluster", f"  chroot: {chroot}{extra}")


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{secrets.token_hex(3)}"


def holders(lc: LocalCluster) -> list[str]:
    return lc.believed_holders(ROLE)


def steady_holder(lc: LocalCluster, timeout: float = 25.0, after: float = 0.0) -> str:
    """Exactly one holder that has renewed at least twice since `after`."""
    def steady() -> str | None:
        h = holders(lc)
        if len(h) != 1:
            return None
        ren = [e for e in read_events(lc.dir.glob("claims-*.jsonl"))
               if e["node"] == h[0] and e["event"] == "renewed" and e["t"] > after]
        return h[0] if len(ren) >= 2 else None
    return wait_for(steady, timeout, "one steady holder")


def walk(zk: KazooClient, path: str) -> Iterator[str]:
    yield path
    for child in sorted(zk.get_children(path)):
        yield from walk(zk, f"{path.rstrip('/')}/{child}")


def zkcli(hosts: str, *lines: str) -> str:
    """Run zkCli.sh with commands on stdin (so passwords never appear in `ps`)."""
    res = subprocess.run([ZKCLI, "-server", hosts], input="\n".join([*lines, "quit"]) + "\n",
                         capture_output=True, text=True, timeout=60, stdin=None)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Exception" not in res.stdout and "Insufficient permission" not in res.stdout, res.stdout[-2000:]
    return res.stdout


def cli(spec_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(spec_path)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def clients() -> Iterator[Callable[..., KazooClient]]:
    """`make(hosts, creds=None)`: a started kazoo client, authenticated when creds is (user, pw)."""
    made: list[KazooClient] = []

    def make(hosts: str, creds: tuple[str, str] | None = None) -> KazooClient:
        zk = KazooClient(hosts=hosts, auth_data=[("digest", f"{creds[0]}:{creds[1]}")] if creds else None)
        made.append(zk)
        zk.start(timeout=15)
        return zk

    try:
        yield make
    finally:
        for zk in made:
            zk.stop()
            zk.close()


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    with Clusters(tmp_path) as made:

        def make(zk: ZooKeeperEnsemble, text: str, start: bool = True) -> LocalCluster:
            return made.add(LocalCluster(zk.hosts, made.next_dir(), spec_text_=text), start)

        yield make


def rogue_calls(zk: KazooClient, path: str) -> list[tuple[str, Callable[[], Any]]]:
    """Every read and write a client may try on `path`, each named, for the ACL tests."""
    return [("get", lambda: zk.get(path)),
            ("set", lambda: zk.set(path, b'{"holder": "mallory", "term": 99}')),
            ("delete", lambda: zk.delete(path)),
            ("get_children", lambda: zk.get_children(path)),
            ("get_acls", lambda: zk.get_acls(path)),
            ("set_acls", lambda: zk.set_acls(path, [ACL(Permissions.ALL, ANYONE_ID_UNSAFE)]))]


def rejoined(zk: KazooClient, member: str, session: int) -> bool:
    """The member znode is back, owned by a session other than `session` (the agent restarted)."""
    st = zk.exists(member)
    return st is not None and st.ephemeralOwner != session


def assert_agents_clean(lc: LocalCluster) -> None:
    for n in lc.nodes:
        assert lc.alive(n), f"{n} died"
        text = lc.log_path(n).read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]
        assert "not readable with our credentials" not in text, text[-3000:]
    assert lc.dual_holders() == []


# --------------------------------------------------------------------------- the ACL itself


def test_unauthenticated_and_wrong_credentials_read_nothing_and_change_nothing(zk_single, tmp_path, clusters, clients):
    user, pw = "hacluster", secrets.token_hex(12)
    creds = tmp_path / "zk.auth"
    write_creds(creds, user, pw)
    chroot = "/" + unique("hacl")
    lc = clusters(zk_single, secured_spec(zk_single.hosts, chroot, creds, unique("acl")))
    holder = steady_holder(lc)
    other = next(n for n in lc.nodes if n != holder)

    # every kind of znode exists: an operator (with the credentials) pauses the cluster and leaves
    # a switchover request pending (maintenance holds it), plus history entries
    res = cli(lc.spec_path, "maintenance", "on")
    assert res.returncode == 0, res.stderr
    admin = Coordinator(lc.spec, "test-admin", request_timeout=5.0)
    admin.start()
    try:
        admin.put_request(ROLE, "switchover", other, "test")
        p = admin.paths
        time.sleep(3 * lc.spec.timing.loop_s)
        owner = clients(zk_single.hosts, (user, pw))
        tree = list(walk(owner, p.root))
        history = [x for x in tree if x.startswith(p.history + "/")]
        members = [x for x in tree if x.startswith(p.members + "/")]
        assert len(history) >= 2 and sorted(members) == sorted(p.member(n) for n in lc.nodes)
        assert {p.lease(ROLE), p.request(ROLE), p.maintenance} <= set(tree)

        # every znode of the cluster, including those agents and the CLI created at run time
        # (ephemeral members, the lease, history, request, maintenance), is the cluster's alone
        own = make_digest_acl(user, pw, all=True)
        for path in tree:
            assert owner.get_acls(path)[0] == [own], path
        # the shared chroot: ours, and anyone may only create a cluster root in it
        assert owner.get_acls(chroot)[0] == [own, ACL(Permissions.CREATE, ANYONE_ID_UNSAFE)]

        rogues = {"no credentials": clients(zk_single.hosts),
                  "wrong password": clients(zk_single.hosts, (user, pw + "x")),
                  "other user": clients(zk_single.hosts, ("mallory", pw))}
        new_child = {p.root: p.root + "/maintenance2", p.members: p.member("node9"), p.roles: p.roles + "/x",
                     p.roles + "/" + ROLE: p.roles + f"/{ROLE}/lease2", p.requests: p.requests + "/x",
                     p.history: p.history + "/h-9999999999"}
        attempts = 0
        for who, rogue in rogues.items():
            for path in tree:
                for name, call in rogue_calls(rogue, path):
                    with pytest.raises(NoAuthError):
                        call()
                        pytest.fail(f"{who}: {name} {path} was allowed")
                    attempts += 1
            for child in new_child.values():
                with pytest.raises(NoAuthError):
                    rogue.create(child, b"{}")
                    pytest.fail(f"{who}: create {child} was allowed")
                attempts += 1
        # the two flags are their presence: removed, they can't be re-created by a rogue either
        # (the request first: without maintenance the holder would act on it)
        admin.clear_request(ROLE)
        res = cli(lc.spec_path, "maintenance", "off")
        assert res.returncode == 0, res.stderr
        for who, rogue in rogues.items():
            for path in (p.maintenance, p.request(ROLE), p.lease(ROLE) + "x"):
                with pytest.raises(NoAuthError):
                    rogue.create(path, b"")
                    pytest.fail(f"{who}: create {path} was allowed")
        print(f"{attempts} rogue operations refused")

        # what a client without credentials can do, as docs/security.md says: see that a znode
        # exists (ZooKeeper checks no ACL on exists/sync) and create another cluster's root
        anon = rogues["no credentials"]
        assert anon.exists(p.lease(ROLE)) is not None
        anon.create(f"{chroot}/someone-else", b"")

        # nothing changed, and the agents went on as before
        lease_now = admin.snapshot([ROLE]).leases[ROLE]
        assert lease_now.holder == holder and lease_now.term == 1
    finally:
        admin.stop()
    assert holders(lc) == [holder]
    assert_agents_clean(lc)


def test_without_or_with_wrong_credentials_the_cli_says_so_in_one_line(zk_single, tmp_path, clusters):
    creds = tmp_path / "zk.auth"
    write_creds(creds, "hacluster", secrets.token_hex(12))
    chroot = "/" + unique("hacl")
    cluster = unique("acl")
    lc = clusters(zk_single, secured_spec(zk_single.hosts, chroot, creds, cluster))
    steady_holder(lc)

    wrong = tmp_path / "wrong.auth"
    write_creds(wrong, "hacluster", "not-the-password")
    for name, auth in (("none.yml", None), ("wrong.yml", wrong)):
        spec = tmp_path / name
        spec.write_text(secured_spec(zk_single.hosts, chroot, auth, cluster))
        for args in (("status",), ("maintenance", "on"), ("switchover", ROLE, "--yes"), ("history",)):
            res = cli(spec, *args)
            assert res.returncode == 2, (args, res.stdout, res.stderr)
            assert "Traceback" not in res.stderr
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and "access denied (NoAuth)" in lines[0], res.stderr
            assert ("not the cluster's" in lines[0]) == (auth is not None), lines[0]
        # an agent with them exits at once with the same line instead of running blind
        res = subprocess.run([sys.executable, "-m", "hacluster", "agent", "--config", str(spec), "--node", "node1",
                              "--state-dir", str(tmp_path / "st"), "--api-port", "0"],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert res.returncode == 2 and "access denied (NoAuth)" in res.stderr and "Traceback" not in res.stderr

    # a credentials file others may read is refused before connecting
    os.chmod(creds, 0o640)
    res = cli(lc.spec_path, "status")
    assert res.returncode == 2 and "chmod 600" in res.stderr and "Traceback" not in res.stderr
    os.chmod(creds, 0o600)
    assert cli(lc.spec_path, "status").returncode == 0
    assert_agents_clean(lc)


def test_clusters_with_their_own_credentials_share_one_chroot(zk_single, tmp_path, clients):
    """The first cluster to create the chroot must not lock the others out of it."""
    chroot = "/" + unique("shared")
    coords: list[Coordinator] = []
    try:
        for i, creds in enumerate((("alice", "pw-a"), ("bob", "pw-b"), None)):
            auth = None
            if creds:
                auth = tmp_path / f"c{i}.auth"
                write_creds(auth, *creds)
            text = secured_spec(zk_single.hosts, chroot, auth, f"c{i}")
            lc_spec = LocalCluster(zk_single.hosts, tmp_path / f"c{i}", spec_text_=text).spec
            c = Coordinator(lc_spec, f"n{i}", request_timeout=5.0)
            c.start()
            coords.append(c)
            c.set_maintenance(True, "test")
        a, b, open_ = coords
        assert a.zk.exists(a.paths.maintenance) and b.zk.exists(b.paths.maintenance)
        bob = b.zk
        with pytest.raises(NoAuthError):
            bob.get(a.paths.maintenance)
        with pytest.raises(NoAuthError):
            bob.delete(a.paths.maintenance)
        # the cluster without credentials stays open, as before ACLs existed
        assert clients(zk_single.hosts).get(open_.paths.maintenance) is not None
    finally:
        for c in coords:
            c.stop()


def test_credential_rotation_with_agents_running(zk_single, tmp_path, clusters, clients):
    """docs/security.md 'Rotating the credentials', step by step, with zkCli as written there."""
    old, new = ("hacluster", secrets.token_hex(12)), ("hacluster2", secrets.token_hex(12))
    creds = tmp_path / "zk.auth"
    write_creds(creds, *old)
    chroot = "/" + unique("hacl")
    lc = clusters(zk_single, secured_spec(zk_single.hosts, chroot, creds, unique("rot")))
    steady_holder(lc)
    root = f"{chroot}/{lc.spec.name}"
    old_id, new_id = make_digest_acl_credential(*old), make_digest_acl_credential(*new)
    both = f"digest:{old_id}:cdrwa,digest:{new_id}:cdrwa"
    t_start = clock.now()

    # 1. add the new identity next to the old one on every znode (twice: agents adopt the root's
    #    ACL within a loop; the second pass catches znodes created during the first)
    for _ in range(2):
        zkcli(zk_single.hosts, f"addauth digest {old[0]}:{old[1]}", f"setAcl -R {root} {both}",
              f"setAcl {chroot} digest:{old_id}:cdrwa,digest:{new_id}:cdrwa,world:anyone:c")
        time.sleep(1.0)
    newc = clients(zk_single.hosts, new)
    assert all(new_id in {a.id.id for a in newc.get_acls(x)[0]} for x in walk(newc, root))
    steady_holder(lc, after=clock.now())

    # 2. roll the agents to the new file, one at a time, the holder last
    write_creds(creds, *new)
    order = sorted(lc.nodes, key=lambda n: n in holders(lc))
    for n in order:
        member = f"{root}/members/{n}"
        session = newc.exists(member).ephemeralOwner
        lc.start(n)
        wait_for(partial(rejoined, newc, member, session), 20, f"{n} back")
        steady_holder(lc, after=clock.now())
        # everything stays readable with either file while both are in the ACL
        for who in (old, new):
            c = clients(zk_single.hosts, who)
            assert sorted(c.get_children(f"{root}/members")) == sorted(lc.nodes)
            for m in lc.nodes:
                c.get(f"{root}/members/{m}")

    # 3. remove the old identity (the admin authenticates with both to be allowed to)
    for _ in range(2):
        zkcli(zk_single.hosts, f"addauth digest {old[0]}:{old[1]}", f"addauth digest {new[0]}:{new[1]}",
              f"setAcl -R {root} digest:{new_id}:cdrwa", f"setAcl {chroot} digest:{new_id}:cdrwa,world:anyone:c")
        time.sleep(1.0)
    steady_holder(lc, after=clock.now())
    tree = list(walk(newc, root))
    assert all(newc.get_acls(x)[0] == [make_digest_acl(*new, all=True)] for x in tree)
    stale = clients(zk_single.hosts, old)
    for x in tree:
        with pytest.raises(NoAuthError):
            stale.get(x)
    res = cli(lc.spec_path, "history", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["history"], res.stderr
    print(f"rotation with 3 agents running took {clock.now() - t_start:.1f}s")
    assert_agents_clean(lc)


def test_turning_acls_on_for_a_running_cluster(zk_single, tmp_path, clusters, clients, caplog):
    """docs/security.md 'Turning ACLs on for an existing cluster', with the agents running."""
    chroot = "/" + unique("hacl")
    cluster = unique("mig")
    lc = clusters(zk_single, secured_spec(zk_single.hosts, chroot, None, cluster))
    steady_holder(lc)
    root = f"{chroot}/{cluster}"
    creds = tmp_path / "zk.auth"
    user, pw = "hacluster", secrets.token_hex(12)
    write_creds(creds, user, pw)
    ident = make_digest_acl_credential(user, pw)
    anon = clients(zk_single.hosts)
    assert anon.get(f"{root}/roles/{ROLE}/lease")  # open, as it ran without credentials

    # 1. the digest identity next to world; an agent started with credentials now warns
    for _ in range(2):
        zkcli(zk_single.hosts, f"setAcl -R {root} digest:{ident}:cdrwa,world:anyone:cdrwa")
        time.sleep(1.0)
    with caplog.at_level("WARNING", logger="hacluster.coord.session"):
        c = Coordinator(LocalCluster(zk_single.hosts, tmp_path / "probe", spec_text_=secured_spec(
            zk_single.hosts, chroot, creds, cluster)).spec, "probe", request_timeout=5.0)
        c.start()
        c.stop()
    assert f"ZooKeeper {root}: its ACL lets others change the cluster (world:anyone:cdrwa)" in caplog.text

    # 2. roll the agents to a spec with auth_file
    lc.spec_path.write_text(secured_spec(zk_single.hosts, chroot, creds, cluster))
    for n in sorted(lc.nodes, key=lambda n: n in holders(lc)):
        member = f"{root}/members/{n}"
        session = anon.exists(member).ephemeralOwner
        lc.start(n)
        wait_for(partial(rejoined, anon, member, session), 20, f"{n} back")
        steady_holder(lc, after=clock.now())

    # 3. only the digest identity
    for _ in range(2):
        zkcli(zk_single.hosts, f"addauth digest {user}:{pw}", f"setAcl -R {root} digest:{ident}:cdrwa")
        time.sleep(1.0)
    steady_holder(lc, after=clock.now())
    owner = clients(zk_single.hosts, (user, pw))
    for x in walk(owner, root):
        assert owner.get_acls(x)[0] == [make_digest_acl(user, pw, all=True)], x
        with pytest.raises(NoAuthError):
            anon.get(x)
    assert_agents_clean(lc)
