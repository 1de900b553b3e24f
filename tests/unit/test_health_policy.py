"""The health policy table, case by case, and its documentation kept equal to the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacluster.health.checks import result
from hacluster.health.policy import HealthVerdict, evaluate, policy_table_markdown
from hacluster.health import policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "health-policy.md"

# Results shaped exactly as the probes emit them (see hacluster/health/{mta,spool,raid,queue,smtp}.py).
MTA_OK = result("mta", "ok", "master pid 10", 0.01, running=True, restartable=True, pid=10)
MTA_DEAD = result("mta", "crit", "not running", 0.01, running=False, restartable=True, pid=None)
MTA_GONE = result("mta", "crit", "not running; 3 restarts", 0.01, running=False, restartable=False, pid=None)
MTA_TIMEOUT = result("mta", "crit", "timed out after 1s", 1.0, timed_out=True)
SPOOL_OK = result("spool", "ok", "writable", 0.01, read_only=False, writable=True, nearly_full=False, stale_tmp_files=0)
SPOOL_RO = result("spool", "crit", "read-only", 0.01, read_only=True, writable=False)
SPOOL_EIO = result("spool", "crit", "unwritable (EIO)", 0.01, read_only=False, writable=False)
SPOOL_HUNG = result("spool", "crit", "timed out after 1s", 1.0, timed_out=True)
SPOOL_FULL = result("spool", "warn", "4% free", 0.01, read_only=False, writable=True, nearly_full=True, stale_tmp_files=0)
SPOOL_STALE = result("spool", "warn", "2 tmp files", 0.01, read_only=False, writable=True, nearly_full=False,
                     stale_tmp_files=2)
RAID_OK = result("raid", "ok", "md0 clean", 0.0, failed=[], degraded=[], missing=[])
RAID_DEGRADED = result("raid", "warn", "md0 degraded", 0.0, failed=[], degraded=["md0"], missing=[])
RAID_FAILED = result("raid", "crit", "md0 failed", 0.0, failed=["md0"], degraded=[], missing=[])
RAID_MISSING = result("raid", "crit", "missing md3", 0.0, failed=[], degraded=[], missing=["md3"])
RAID_UNKNOWN = result("raid", "warn", "cannot parse", 0.0, ok=False, error="x")
QUEUE_OK = result("queue", "ok", "queue empty", 0.0, growing=False, too_many=False, too_old=False)
QUEUE_GROWING = result("queue", "warn", "grew", 0.0, growing=True, too_many=False, too_old=False)
QUEUE_BIG = result("queue", "warn", "2000 messages", 0.0, growing=True, too_many=True, too_old=False)
QUEUE_FAIL = result("queue", "warn", "postqueue failed", 0.0, ok=False)
SMTP_OK = result("smtp", "ok", "220+EHLO", 0.003, slow=False)
SMTP_SLOW = result("smtp", "warn", "slow", 0.9, slow=True)
SMTP_DOWN = result("smtp", "crit", "connection refused", 0.001)
SCRIPT_OK = result("command", "ok", "exit 0", 0.01, on_fail="demote", exit=0)
SCRIPT_WARN = result("command", "warn", "exit 1: ldap slow", 0.01, ok=True, on_fail="demote", exit=1)


def SCRIPT_FAIL(on_fail: str) -> object:
    return result("command", "crit", "exit 2: ldap down", 0.01, on_fail=on_fail, exit=2)


def IF_DOWN(on_fail: str) -> object:
    return result("link", "crit", "eth0: operstate down", 0.0, on_fail=on_fail, interface="eth0")


ALL_OK = {"mta": MTA_OK, "spool": SPOOL_OK, "raid": RAID_OK, "queue": QUEUE_OK, "smtp": SMTP_OK, "command": SCRIPT_OK}


def V(healthy: bool, demote: bool, penalty: int, *reasons: str) -> HealthVerdict:
    return HealthVerdict(healthy, demote, penalty, tuple(reasons))


CASES = [
    ("all ok", {}, V(True, False, 0)),
    ("mta dead, restartable", {"mta": MTA_DEAD},
     V(False, False, 100, "mta: master dead, restart still possible (not running)")),
    ("mta dead, not restartable", {"mta": MTA_GONE},
     V(False, True, 1000, "mta: master dead and not restartable (not running; 3 restarts)")),
    ("mta probe timed out", {"mta": MTA_TIMEOUT},
     V(False, False, 100, "mta: state unknown (probe failed or timed out) (timed out after 1s)")),
    ("spool read-only", {"spool": SPOOL_RO}, V(False, True, 1000, "spool: read-only (read-only)")),
    ("spool unwritable", {"spool": SPOOL_EIO},
     V(False, True, 1000, "spool: unwritable (write+fsync+read+unlink failed) (unwritable (EIO))")),
    ("spool hung", {"spool": SPOOL_HUNG},
     V(False, True, 1000, "spool: probe timed out (hung storage) (timed out after 1s)")),
    ("spool nearly full", {"spool": SPOOL_FULL},
     V(True, False, 20, "spool: nearly full (space or inodes below threshold) (4% free)")),
    ("spool stale tmp", {"spool": SPOOL_STALE}, V(True, False, 1, "spool: Maildir tmp/ files older than 36 h (2 tmp files)")),
    ("raid degraded", {"raid": RAID_DEGRADED},
     V(True, False, 50, "raid: array degraded, recovering, resyncing or reshaping (md0 degraded)")),
    ("raid failed", {"raid": RAID_FAILED}, V(False, True, 1000, "raid: array failed, inactive or missing (md0 failed)")),
    ("raid missing", {"raid": RAID_MISSING}, V(False, True, 1000, "raid: array failed, inactive or missing (missing md3)")),
    ("raid unknown", {"raid": RAID_UNKNOWN}, V(True, False, 10, "raid: status unknown (unreadable or unparsable) (cannot parse)")),
    ("queue growing", {"queue": QUEUE_GROWING}, V(True, False, 10, "queue: growing (grew)")),
    ("queue big and growing", {"queue": QUEUE_BIG},
     V(True, False, 15, "queue: growing (2000 messages)", "queue: too many or too old messages (2000 messages)")),
    ("queue unlistable", {"queue": QUEUE_FAIL}, V(True, False, 5, "queue: cannot list the queue (postqueue failed)")),
    ("smtp down", {"smtp": SMTP_DOWN}, V(False, False, 100, "smtp: no 220 banner or no 250 to EHLO (connection refused)")),
    ("smtp slow", {"smtp": SMTP_SLOW}, V(True, False, 5, "smtp: slow (latency above threshold) (slow)")),
    ("script failed: demote by default", {"command": SCRIPT_FAIL("demote")},
     V(False, True, 1000, "command: exit 2+, killed or timed out (on_fail demote, the default) (exit 2: ldap down)")),
    ("script failed, on_fail unhealthy", {"command": SCRIPT_FAIL("unhealthy")},
     V(False, False, 100, "command: exit 2+, killed or timed out (on_fail unhealthy) (exit 2: ldap down)")),
    ("script failed, on_fail alert", {"command": SCRIPT_FAIL("alert")},
     V(True, False, 20, "command: exit 2+, killed or timed out (on_fail alert) (exit 2: ldap down)")),
    ("script warning", {"command": SCRIPT_WARN}, V(True, False, 5, "command: exit 1 (warning) (exit 1: ldap slow)")),
    ("interface down: demote by default", {"link": IF_DOWN("demote")},
     V(False, True, 1000, "link: link down or missing (on_fail demote, the default) (eth0: operstate down)")),
    ("interface down, on_fail unhealthy", {"link": IF_DOWN("unhealthy")},
     V(False, False, 100, "link: link down or missing (on_fail unhealthy) (eth0: operstate down)")),
    ("interface down, on_fail alert", {"link": IF_DOWN("alert")},
     V(True, False, 20, "link: link down or missing (on_fail alert) (eth0: operstate down)")),
    ("unknown check crit", {"ldap": result("ldap", "crit", "down", 0.0)},
     V(False, False, 100, "ldap: any other crit result (down)")),
    ("unknown check warn", {"ldap": result("ldap", "warn", "slow", 0.0)},
     V(True, False, 5, "ldap: any other warn result (slow)")),
    ("degraded raid + full spool + growing queue: alerts only, penalties add",
     {"raid": RAID_DEGRADED, "spool": SPOOL_FULL, "queue": QUEUE_GROWING},
     V(True, False, 80, "queue: growing (grew)", "raid: array degraded, recovering, resyncing or reshaping (md0 degraded)",
       "spool: nearly full (space or inodes below threshold) (4% free)")),
    ("demote reasons first", {"queue": QUEUE_GROWING, "spool": SPOOL_RO, "mta": MTA_DEAD},
     V(False, True, 1110, "spool: read-only (read-only)", "mta: master dead, restart still possible (not running)",
       "queue: growing (grew)")),
]


@pytest.mark.parametrize("label,override,expected", CASES, ids=[c[0] for c in CASES])
def test_policy_table(label: str, override: dict, expected: HealthVerdict) -> None:
    assert evaluate({**ALL_OK, **override}) == expected


def test_required_missing_is_unhealthy() -> None:
    assert evaluate({}, required=("mta", "spool")) == V(
        False, False, 200, "mta: required check has no result yet", "spool: required check has no result yet")
    assert evaluate(ALL_OK, required=("mta", "spool")) == V(True, False, 0)
    assert evaluate({}) == V(True, False, 0)


def test_every_rule_is_exercised() -> None:
    hit = set()
    for _, override, _ in CASES:
        for name, res in {**ALL_OK, **override}.items():
            hit |= {r.condition for r in policy.POLICY if r.check == name and r.applies(res)}
    assert hit == {r.condition for r in policy.POLICY}


def test_doc_and_docstring_carry_the_table() -> None:
    table = policy_table_markdown()
    assert table in DOC.read_text()
    assert table in policy.__doc__
    assert len(table.splitlines()) == len(policy.TABLE) + 2


def test_verdict_json() -> None:
    assert evaluate({"spool": SPOOL_RO}).to_json() == {
        "healthy": False, "demote": True, "score_penalty": 1000, "reasons": ["spool: read-only (read-only)"]}
