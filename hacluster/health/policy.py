"""Health policy: which check outcomes demote a holder, which only alert and lower candidacy.

`evaluate(results)` is pure: it maps the (debounced) check results, keyed by check name, to a
`HealthVerdict`. The table below *is* `POLICY`; docs/health-policy.md carries the same table
(a unit test keeps them equal).

Actions:
  demote     the holder releases its roles now; the node is not a candidate       (healthy=False)
  unhealthy  not a candidate for promotion; a holder keeps its roles while the
             agent repairs (e.g. restarts the MTA)                              (healthy=False)
  alert      report it and lower candidacy by `penalty`; no failover by itself  (healthy=True)

| check | condition | action | penalty |
|---|---|---|---|
| mta | master dead and not restartable | demote | 1000 |
| mta | master dead, restart still possible | unhealthy | 100 |
| mta | state unknown (probe failed or timed out) | unhealthy | 100 |
| spool | read-only | demote | 1000 |
| spool | unwritable (write+fsync+read+unlink failed) | demote | 1000 |
| spool | probe timed out (hung storage) | demote | 1000 |
| spool | nearly full (space or inodes below threshold) | alert | 20 |
| spool | Maildir tmp/ files older than 36 h | alert | 1 |
| raid | array failed, inactive or missing | demote | 1000 |
| raid | array degraded, recovering, resyncing or reshaping | alert | 50 |
| raid | status unknown (unreadable or unparsable) | alert | 10 |
| queue | growing | alert | 10 |
| queue | too many or too old messages | alert | 5 |
| queue | cannot list the queue | alert | 5 |
| smtp | no 220 banner or no 250 to EHLO | unhealthy | 100 |
| smtp | slow (latency above threshold) | alert | 5 |
| command | exit 2+, killed or timed out (on_fail demote, the default) | demote | 1000 |
| command | exit 2+, killed or timed out (on_fail unhealthy) | unhealthy | 100 |
| command | exit 2+, killed or timed out (on_fail alert) | alert | 20 |
| link | link down or missing (on_fail demote, the default) | demote | 1000 |
| link | link down or missing (on_fail unhealthy) | unhealthy | 100 |
| link | link down or missing (on_fail alert) | alert | 20 |
| command | exit 1 (warning) | alert | 5 |
| * | any other crit result | unhealthy | 100 |
| * | any other warn result | alert | 5 |
| * | required check has no result yet | unhealthy | 100 |

Why a dead-but-restartable MTA or a failing SMTP probe does not demote: a restart fixes
most of those in about a second, while a failover costs a VIP move and, in mirrored mode, a
catch-up; only when the restart budget is spent (see `mta.RestartBudget`) is the MTA "dead and
not restartable". A degraded array keeps serving mail, so it never fails over by itself, but
its penalty makes a switchover prefer a healthy peer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Literal, Mapping

from .checks import COMMAND, LINK, MTA, QUEUE, RAID, SMTP, SPOOL, CheckResult

Action = Literal["demote", "unhealthy", "alert"]
DEMOTE_PENALTY = 1000


@dataclass(frozen=True)
class HealthVerdict:
    """healthy: may be promoted / keeps full candidacy; demote: a holder must release now;
    score_penalty: subtract from the candidacy score (0 = perfect); reasons: one line per finding."""

    healthy: bool
    demote: bool
    score_penalty: int
    reasons: tuple[str, ...]

    def to_json(self) -> dict:
        return {"healthy": self.healthy, "demote": self.demote, "score_penalty": self.score_penalty,
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Rule:
    check: str  # check name, or "*" for the fallbacks
    condition: str
    action: Action
    penalty: int
    applies: Callable[[CheckResult], bool]


def _d(r: CheckResult, key: str, default: object = None) -> object:
    return r.data.get(key, default) if isinstance(r.data, Mapping) else default


def _mta_dead(r: CheckResult) -> bool:
    return _d(r, "running") is False


def _on_fail_rules(check: str, what: str) -> tuple[Rule, ...]:
    """The operator chooses what a failed command or link check does (`on_fail`)."""
    def failed(action: str) -> Callable[[CheckResult], bool]:
        return lambda r: not r.ok and _d(r, "on_fail", "demote") == action
    return (Rule(check, f"{what} (on_fail demote, the default)", "demote", DEMOTE_PENALTY, failed("demote")),
            Rule(check, f"{what} (on_fail unhealthy)", "unhealthy", 100, failed("unhealthy")),
            Rule(check, f"{what} (on_fail alert)", "alert", 20, failed("alert")))


POLICY: tuple[Rule, ...] = (
    Rule(MTA, "master dead and not restartable", "demote", DEMOTE_PENALTY,
         lambda r: _mta_dead(r) and _d(r, "restartable") is False),
    Rule(MTA, "master dead, restart still possible", "unhealthy", 100,
         lambda r: _mta_dead(r) and _d(r, "restartable") is not False),
    Rule(MTA, "state unknown (probe failed or timed out)", "unhealthy", 100,
         lambda r: not r.ok and _d(r, "running") is None),
    Rule(SPOOL, "read-only", "demote", DEMOTE_PENALTY, lambda r: _d(r, "read_only") is True),
    Rule(SPOOL, "unwritable (write+fsync+read+unlink failed)", "demote", DEMOTE_PENALTY,
         lambda r: _d(r, "writable") is False and _d(r, "read_only") is not True),
    Rule(SPOOL, "probe timed out (hung storage)", "demote", DEMOTE_PENALTY, lambda r: _d(r, "timed_out") is True),
    Rule(SPOOL, "nearly full (space or inodes below threshold)", "alert", 20, lambda r: _d(r, "nearly_full") is True),
    Rule(SPOOL, "Maildir tmp/ files older than 36 h", "alert", 1, lambda r: bool(_d(r, "stale_tmp_files"))),
    Rule(RAID, "array failed, inactive or missing", "demote", DEMOTE_PENALTY,
         lambda r: bool(_d(r, "failed")) or bool(_d(r, "missing"))),
    Rule(RAID, "array degraded, recovering, resyncing or reshaping", "alert", 50, lambda r: bool(_d(r, "degraded"))),
    Rule(RAID, "status unknown (unreadable or unparsable)", "alert", 10,
         lambda r: not r.ok and not _d(r, "failed") and not _d(r, "missing")),
    Rule(QUEUE, "growing", "alert", 10, lambda r: _d(r, "growing") is True),
    Rule(QUEUE, "too many or too old messages", "alert", 5, lambda r: bool(_d(r, "too_many") or _d(r, "too_old"))),
    Rule(QUEUE, "cannot list the queue", "alert", 5, lambda r: not r.ok),
    Rule(SMTP, "no 220 banner or no 250 to EHLO", "unhealthy", 100, lambda r: not r.ok),
    Rule(SMTP, "slow (latency above threshold)", "alert", 5, lambda r: r.ok and _d(r, "slow") is True),
    *(rule for check, what in ((COMMAND, "exit 2+, killed or timed out"), (LINK, "link down or missing"))
      for rule in _on_fail_rules(check, what)),
    Rule(COMMAND, "exit 1 (warning)", "alert", 5, lambda r: r.ok and r.severity == "warn"),
)
FALLBACK_CRIT = Rule("*", "any other crit result", "unhealthy", 100, lambda r: r.severity == "crit")
FALLBACK_WARN = Rule("*", "any other warn result", "alert", 5, lambda r: r.severity == "warn")
MISSING = Rule("*", "required check has no result yet", "unhealthy", 100, lambda r: False)
TABLE: tuple[Rule, ...] = POLICY + (FALLBACK_CRIT, FALLBACK_WARN, MISSING)


def evaluate(results: Mapping[str, CheckResult], required: Collection[str] = ()) -> HealthVerdict:
    """Apply the policy table to check results keyed by check name (`required`: names whose
    absence counts as unhealthy, e.g. before the first probe ran)."""
    demote, unhealthy, penalty = False, False, 0
    found: list[tuple[int, str]] = []  # (sort key: demote first, reason)
    order = {"demote": 0, "unhealthy": 1, "alert": 2}

    def apply(rule: Rule, name: str, detail: str) -> None:
        nonlocal demote, unhealthy, penalty
        demote |= rule.action == "demote"
        unhealthy |= rule.action == "unhealthy"
        penalty += rule.penalty
        found.append((order[rule.action], f"{name}: {rule.condition}" + (f" ({detail})" if detail else "")))

    for name in sorted(results):
        res = results[name]
        matched = [rule for rule in POLICY if rule.check == name and rule.applies(res)]
        if not matched and res.severity != "ok":
            matched = [FALLBACK_CRIT if res.severity == "crit" else FALLBACK_WARN]
        for rule in matched:
            apply(rule, name, res.detail)
    for name in sorted(set(required) - set(results)):
        apply(MISSING, name, "")
    found.sort(key=lambda item: item[0])
    return HealthVerdict(healthy=not (demote or unhealthy), demote=demote, score_penalty=penalty,
                         reasons=tuple(reason for _, reason in found))


def policy_table_markdown() -> str:
    """The table as Markdown (the docstring and docs/health-policy.md carry exactly this)."""
    rows = ["| check | condition | action | penalty |", "|---|---|---|---|"]
    rows += [f"| {r.check} | {r.condition} | {r.action} | {r.penalty} |" for r in TABLE]
    return "\n".join(rows)
