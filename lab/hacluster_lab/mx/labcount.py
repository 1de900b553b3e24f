"""Pure reductions for `mx validate`: what the lab's Postfix logs and Maildirs say, in the model's
result keys, and the comparison of the two (docs/mx.md, "Validation", defines every count).

* accepted_by[h]: distinct test messages that host h's smtpd accepted (a `client=` line and the
  message's `message-id=` from cleanup under one queue id); store1 and store2 count as `store`;
  the sender's own acceptance from the load generator is the submission, not counted (as in the
  model).
* delivered: test messages with a file in a store Maildir when the scenario's time is up.
* bounced: test messages some host returned to the sender (`status=expired` or
  `status=bounced` in its log) -- Postfix's bounce decision, the event the model counts.
* in_queue_at_end: test messages still queued somewhere when the time is up (put on hold then,
  so nothing changes while the lab is read).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

#: `Nov 27 03:52:48 relay1 postfix/smtpd[23423]: 31A78FDF4B4: client=unknown[203.0.113.10]`
_LINE = re.compile(r"postfix(?:-[\w.-]+)?/(?P<svc>[\w-]+)\[\d+\]: (?P<qid>[0-9A-Za-z]{6,20}): (?P<rest>.*)$")
TOLERANCE = 0.05


@dataclass
class LogFacts:
    """What one host's maillog says about the test messages."""

    accepted: set[str] = field(default_factory=set)  # via SMTP (smtpd)
    bounced: set[str] = field(default_factory=set)  # returned to sender by this host
    deferred_attempts: int = 0  # failed delivery attempts of test messages (status=deferred)


def parse_maillog(lines: Iterable[str], wanted: set[str]) -> LogFacts:
    """Follow queue ids through one host's log; queue ids are reused, so a `removed` line ends
    one message's story."""
    facts = LogFacts()
    via_smtp: set[str] = set()
    msgid: dict[str, str] = {}
    for line in lines:
        m = _LINE.search(line)
        if not m:
            continue
        svc, qid, rest = m.group("svc"), m.group("qid"), m.group("rest")
        if svc == "smtpd" and rest.startswith("client="):
            via_smtp.add(qid)
        elif svc == "cleanup" and rest.startswith("message-id="):
            mid = rest[len("message-id="):].strip()
            msgid[qid] = mid
            if qid in via_smtp and mid in wanted:
                facts.accepted.add(mid)
        elif svc == "qmgr" and rest.strip() == "removed":
            via_smtp.discard(qid)
            msgid.pop(qid, None)
        elif "status=" in rest:
            mid = msgid.get(qid)
            if mid is None or mid not in wanted:
                continue
            if "status=expired" in rest or "status=bounced" in rest:
                facts.bounced.add(mid)
            elif "status=deferred" in rest:
                facts.deferred_attempts += 1
    return facts


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[max(1, math.ceil(p * len(v))) - 1]


def lab_summary(messages: int, delivered: Mapping[str, float], bounced: set[str], in_queue: int,
                accepted_by: Mapping[str, int], queue_peak: Mapping[str, int]) -> dict:
    """The model's result keys from lab observations. `delivered`: msgid -> delay (s)."""
    delays = list(delivered.values())
    r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {
        "messages": messages,
        "delivered": len(delivered),
        "bounced": len(bounced - set(delivered)),
        "in_queue_at_end": in_queue,
        "delay_s": {"p50": r3(nearest_rank(delays, 0.5)), "p95": r3(nearest_rank(delays, 0.95)),
                    "max": r3(max(delays) if delays else None)},
        "accepted_by": dict(sorted(accepted_by.items())),
        "queue_peak": dict(sorted(queue_peak.items())),
    }


def compare(model: dict, lab: dict, tolerance: float = TOLERANCE) -> dict:
    """Differences (lab - model) and the issue's targets: identical delivered and bounced
    counts, accepted_by within `tolerance` of the model's count on every host (so a host the
    model gives 0 must get 0), and every planned message submitted."""
    diff: dict = {k: lab[k] - model[k] for k in ("messages", "delivered", "bounced", "in_queue_at_end")}
    acc = {}
    for h in sorted(set(model["accepted_by"]) | set(lab["accepted_by"])):
        m, n = model["accepted_by"].get(h, 0), lab["accepted_by"].get(h, 0)
        allowed = tolerance * m
        acc[h] = {"model": m, "lab": n, "diff": n - m, "allowed": round(allowed, 3), "ok": abs(n - m) <= allowed + 1e-9}
    diff["accepted_by"] = acc
    diff["delay_s"] = {k: (None if model["delay_s"][k] is None or lab["delay_s"][k] is None
                           else round(lab["delay_s"][k] - model["delay_s"][k], 3)) for k in ("p50", "p95", "max")}
    diff["queue_peak"] = {h: lab["queue_peak"].get(h, 0) - model["queue_peak"].get(h, 0)
                          for h in sorted(set(model["queue_peak"]) | set(lab["queue_peak"]))}
    failures = []
    if diff["messages"]:
        failures.append(f"messages: lab submitted {lab['messages']}, the model has {model['messages']}")
    for k in ("delivered", "bounced"):
        if diff[k]:
            failures.append(f"{k}: lab {lab[k]} != model {model[k]}")
    for h, a in acc.items():
        if not a["ok"]:
            failures.append(f"accepted_by.{h}: lab {a['lab']} vs model {a['model']} (allowed +-{a['allowed']:g})")
    targets = {"delivered_equal": diff["delivered"] == 0, "bounced_equal": diff["bounced"] == 0,
               "accepted_by_within_5pct" if tolerance == TOLERANCE else "accepted_by_within_tolerance":
                   all(a["ok"] for a in acc.values()),
               "all_submitted": diff["messages"] == 0}
    return {"difference": diff, "targets": targets, "ok": not failures, "failures": failures}


def model_fates(outcomes: Mapping[int, tuple[str, float, str]], attempts: Mapping[int, list[tuple[str, float]]],
                origin_of: Mapping[int, str], final: set[str]) -> dict[str, dict]:
    """Per message "s<stream>.<i>": status and the hosts that accepted it, from a trace
    recorded with record_outcomes (message id = stream << 32 | index)."""
    out = {}
    for mid, (status, t, last) in outcomes.items():
        stream, i = mid >> 32, mid & 0xFFFFFFFF
        via = {h for h, _ in attempts.get(mid, [])} - {origin_of[stream]}
        if status == "delivered" and last in final:
            via.add(last)
        out[f"s{stream}.{i}"] = {"status": status, "via": sorted(via), "t": None if t == math.inf else round(t, 3)}
    return out


def disagreements(model: Mapping[str, dict], lab: Mapping[str, dict], arrivals: Mapping[str, float],
                  limit: int = 20) -> list[dict]:
    """Messages whose fate (status, or the hosts that accepted them) differs, by arrival time:
    where the lab and the model part ways, for diagnosis."""
    out = []
    for key in sorted(set(model) | set(lab), key=lambda k: (arrivals.get(k, math.inf), k)):
        m, n = model.get(key), lab.get(key)
        if m is None or n is None or m["status"] != n["status"] or m["via"] != n["via"]:
            out.append({"msg": key, "arrival_s": None if key not in arrivals else round(arrivals[key], 3),
                        "model": m and {k: m[k] for k in ("status", "via", "t")}, "lab": n})
    return out[:limit]
