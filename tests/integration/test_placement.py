"""Placement constraints on real agents and a real ZooKeeper (ha.py rule 12): `node standby` moves the
holder's role away gracefully and keeps the node out; `node unstandby` lets it back without moving
anything; `ban` keeps one node from one role; a lifetime lifts a constraint by itself; `clear`
removes bans; status shows what is in force; bad input changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster_lab.localcluster import LocalCluster, spec_text
from .agents import running
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]

ROLE = "store"


def cli(lc: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(lc.spec_path)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def holder(lc: LocalCluster) -> str | None:
    held = lc.believed_holders(ROLE)
    return held[0] if len(held) == 1 else None


@pytest.fixture
def lc(zk_single, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    name = f"hpl{os.getpid()}x{abs(hash(request.node.name)) % 10**6}"  # a cluster (ZooKeeper chroot) per test
    c = LocalCluster(zk_single.hosts, tmp_path / "agents", n=3, profile="default", cluster=name)
    with running(c):
        yield c


def test_standby_online_ban_clear(lc: LocalCluster) -> None:
    first = wait_for(lambda: holder(lc), 30, "a holder")

    # standby of the holder: the role moves at once (a graceful release, no lease waited out)
    t0 = time.monotonic()
    res = cli(lc, "node", "standby", first, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["constraint"] == f"standby@{first}" and out["until"] is None
    second = out["moved"][ROLE]
    assert second not in (None, first) and time.monotonic() - t0 < 10
    assert holder(lc) == second
    st = json.loads(cli(lc, "status", "--json").stdout)
    assert [k["name"] for k in st["constraints"] if k["active"]] == [f"standby@{first}"]
    assert f"standby {first}" in cli(lc, "status").stdout

    # the node in standby never takes the role back, even when the new holder goes
    res = cli(lc, "role", "ban", ROLE, second, "--json")
    assert res.returncode == 0, res.stderr
    third = json.loads(res.stdout)["moved"][ROLE]
    assert third not in (None, first, second), res.stdout
    time.sleep(2 * lc.spec.timing.lease_s)  # bounded observation: nothing moves to a barred node
    assert holder(lc) == third

    # online: allowed again, nothing moves back by itself; clear removes the ban
    res = cli(lc, "node", "unstandby", first)
    assert res.returncode == 0 and res.stdout.strip() == f"{first}: out of standby", res.stdout
    assert cli(lc, "node", "unstandby", first).stdout.strip() == f"{first}: was not in standby"
    res = cli(lc, "role", "clear", ROLE, "--json")
    assert json.loads(res.stdout)["removed"] == [f"ban@{ROLE}@{second}"]
    assert holder(lc) == third
    assert json.loads(cli(lc, "status", "--json").stdout)["constraints"] == []

    # a switchover may now go anywhere again
    res = cli(lc, "switchover", ROLE, "--yes", "--to", first)
    assert res.returncode == 0, res.stderr
    assert holder(lc) == first


def test_a_lifetime_lifts_the_constraint_by_itself(lc: LocalCluster) -> None:
    first = wait_for(lambda: holder(lc), 30, "a holder")
    others = [n for n in lc.nodes if n != first]
    for n in others:  # everyone else barred: the role can only stay on `first` or go nowhere
        assert cli(lc, "role", "ban", ROLE, n, "--wait", "0").returncode == 0
    res = cli(lc, "node", "standby", first, "--lifetime", "3s", "--wait", "0")
    assert res.returncode == 0, res.stderr
    # released to nobody (every node barred), then, after the lifetime, `first` takes it again
    wait_for(lambda: holder(lc) is None, 15, "the role released")
    wait_for(lambda: holder(lc) == first, 30, "the role back after the standby expired")
    assert cli(lc, "role", "clear", ROLE).returncode == 0


def test_bad_input_changes_nothing(lc: LocalCluster) -> None:
    wait_for(lambda: holder(lc), 30, "a holder")
    for args, needle in [(("node", "standby", "node9"), "unknown node 'node9'"),
                         (("role", "ban", "nosuchrole", "node1"), "unknown role 'nosuchrole'"),
                         (("node", "standby", "node1", "--lifetime", "soon"), "--lifetime: must be a duration"),
                         (("node", "standby", "node1", "--lifetime", "0"), "must be more than 0")]:
        res = cli(lc, *args)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert json.loads(cli(lc, "status", "--json").stdout)["constraints"] == []


def test_scheduled_switchover_waits_for_its_time(lc: LocalCluster) -> None:
    """`switchover --at`: pending (and shown) until its time, then carried out by the holder;
    `--cancel` drops a pending one."""
    from datetime import datetime

    first = wait_for(lambda: holder(lc), 30, "a holder")
    target = next(n for n in lc.nodes if n != first)
    res = cli(lc, "switchover", ROLE, "--yes", "--to", target, "--at", "23:59", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["done"] is False, res.stderr
    assert "scheduled at" in cli(lc, "status").stdout
    assert cli(lc, "switchover", ROLE, "--cancel").stdout.strip() == f"{ROLE}: request cancelled"
    assert json.loads(cli(lc, "status", "--json").stdout)["roles"][ROLE]["request"] is None

    at = time.time() + 6
    res = cli(lc, "switchover", ROLE, "--yes", "--to", target, "--at", datetime.fromtimestamp(at).isoformat(timespec="seconds"))
    assert res.returncode == 0 and "scheduled at" in res.stdout, res.stderr
    while time.time() < int(at) - 0.5:  # bounded by `at`: nothing moves before its time
        assert holder(lc) == first
        time.sleep(0.2)
    wait_for(lambda: holder(lc) == target, 15, "the scheduled switchover carried out")
    assert time.time() >= int(at) - 0.05


def test_switchover_at_rejects_bad_times(lc: LocalCluster) -> None:
    for at, needle in [("25:99", "give HH:MM"), ("2001-01-01T00:00", "has passed"), ("tomorrow", "give HH:MM")]:
        res = cli(lc, "switchover", ROLE, "--yes", "--at", at)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, (at, res.stderr)


def test_status_watch_shows_each_view(lc: LocalCluster) -> None:
    first = wait_for(lambda: holder(lc), 30, "a holder")
    res = cli(lc, "status", "--watch", "--interval", "0.3", "--count", "3", "--json")
    assert res.returncode == 0, res.stderr
    views = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(views) == 3 and all(v["roles"][ROLE]["holder"] == first for v in views)
    text = cli(lc, "status", "--watch", "--interval", "0.3", "--count", "2").stdout
    assert text.count("-- ") == 2 and text.count(f"{ROLE} ") >= 2


def test_names_are_checked_before_connecting(tmp_path: Path) -> None:
    """A typo is a usage error at once: the spec names a ZooKeeper nobody answers on, so a command
    that connected first would end "cannot reach ZooKeeper" (exit 1), not name the typo (exit 2)."""
    cfg = tmp_path / "cluster.yml"
    cfg.write_text(spec_text("127.0.0.1:26997", n=2, cluster="hnames"))
    for args, needle in [(("switchover", "stroe"), "unknown role 'stroe'"),
                         (("switchover", ROLE, "--to", "node9"), "unknown node 'node9'"),
                         (("node", "standby", "node7"), "unknown node 'node7'"),
                         (("role", "ban", ROLE, "nodeX"), "unknown node 'nodeX'")]:
        res = subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(cfg)], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 2 and needle in res.stderr and "ZooKeeper" not in res.stderr, (args, res.stderr)


def test_switchover_asks_first(lc: LocalCluster) -> None:
    """No terminal and no --yes: exit 2 at once, nothing requested; on a terminal (a real pty)
    the operator is asked, naming holder and target: "n" changes nothing (exit 1), "y" moves."""
    import pty

    first = wait_for(lambda: holder(lc), 30, "a holder")
    target = next(n for n in lc.nodes if n != first)
    for args in (("switchover", ROLE, "--to", target), ("switchover", ROLE, "--at", "23:59"),
                 ("failover", ROLE, "--to", target)):
        res = cli(lc, *args)
        assert res.returncode == 2 and "add --yes" in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert json.loads(cli(lc, "status", "--json").stdout)["roles"][ROLE]["request"] is None

    def on_tty(answer: bytes) -> subprocess.CompletedProcess[str]:
        master, slave = pty.openpty()
        try:
            os.write(master, answer)  # typed ahead: the terminal keeps it until the prompt reads
            return subprocess.run([sys.executable, "-m", "hacluster", "switchover", ROLE, "--to", target,
                                   "--config", str(lc.spec_path)], stdin=slave, capture_output=True, text=True,
                                  timeout=60)
        finally:
            os.close(master)
            os.close(slave)

    res = on_tty(b"n\n")
    assert res.returncode == 1 and f"switch over {ROLE} from {first} to {target} now?" in res.stdout, res
    assert "not confirmed; nothing changed" in res.stderr
    assert holder(lc) == first and json.loads(cli(lc, "status", "--json").stdout)["roles"][ROLE]["request"] is None
    res = on_tty(b"y\n")
    assert res.returncode == 0 and f"{ROLE}: {first} -> {target} in " in res.stdout, (res.stdout, res.stderr)
    assert holder(lc) == target
