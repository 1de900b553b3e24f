"""Which scenarios catch which broken rule: run by hand, `python tests/scenarios/mutants.py`.

Each mutant is one rule of hacluster/ha.py or ha_local.py broken on purpose (a text replacement in
a copy compiled in memory; the files are never touched). Every scenario runs against every mutant;
the table says how many fail, in which groups, and which scenarios no mutant catches (those then
test the runner's own bookkeeping, or a rule this list does not break yet).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

import test_scenarios as ts  # noqa: E402

HA, LOCAL = "hacluster/ha.py", "hacluster/ha_local.py"
#: (name, file, text, replacement)
MUTANTS = [
    ("rule 1-2 lease taken ignored", HA, "if lease.exists and (lease.holder != me or lease.term != held.term):", "if False:"),
    ("rule 3 unhealthy holder keeps the role", HA, "        if local.me.demote:\n            target",
     "        if False:\n            target"),
    ("rule 4 switchover ignored", HA, 'req.kind == "switchover" and req.to != me and not c.maintenance', "False"),
    ("rule 4 scheduled request due at once", HA, "return req if req.due(wall) else None", "return req"),
    ("rule 4 requests never stale", HA, "if wall and since and wall - since > REQUEST_TTL_S:", "if False:"),
    ("rule 6 maintenance ignored by candidates", HA, "if c.maintenance and not (req is not None",
     "if False and not (req is not None"),
    ("rule 6 acquire without ZooKeeper", HA, "    if not c.connected:\n        return Verdict(role.name, Action.WAIT",
     "    if False:\n        return Verdict(role.name, Action.WAIT"),
    ("rule 6 unhealthy candidate acquires", HA, "if local.me.demote or not local.me.healthy:", "if False:"),
    ("rule 7 no head start for the hand-off target", HA, "if local.now < free_since + t.lease_s:", "if False:"),
    ("rule 7 hand-off target not preferred", HA, "        preferred = lease.handoff_to\n", "        pass\n"),
    ("rule 7 released lease waited out", HA, "            at = free_since + rank * t.rank_stagger_s",
     "            at = free_since + t.lease_s + rank * t.rank_stagger_s"),
    ("rule 7-8 no rank stagger", HA, "at = lease.observed_at + wait + rank * t.rank_stagger_s",
     "at = lease.observed_at + wait"),
    ("rule 8 half the lease waited", HA, "wait, lead = stale_wait(t, lease)  #",
     "wait, lead = stale_wait(t, lease); wait = wait / 2  #"),
    ("rule 8 unknown lease taken", HA, "    if seen_lease is None:\n", "    if False:\n"),
    ("rule 10 no probe lead", HA, "    lead = t.probe_lead_s\n", "    lead = 0.0\n"),
    ("rule 11 promise ignored", HA, "wait = max(t.lease_s, promise[0])", "wait = t.lease_s"),
    ("rule 12 barred holder keeps the role", HA, "if me in bars and not c.maintenance:", "if False:"),
    ("rule 12 barred nodes ranked", HA, "if m.name not in bars and place.allows(m.name)]", "if place.allows(m.name)]"),
    ("rule 12 a ban bars every role", HA, "if (con.role is None or con.role == role) and con.active(wall):",
     "if con.active(wall):"),
    ("rule 12 bans never run out", HA, "if (con.role is None or con.role == role) and con.active(wall):",
     "if con.role is None or con.role == role:"),
    ("rule 13 extension without every peer", HA, "if missing or poll.sent_at > local.now:",
     "if poll.sent_at > local.now:"),
    ("rule 13 poll from the future trusted", HA, "if missing or poll.sent_at > local.now:", "if missing:"),
    ("rule 13 extension from now, not the send time", HA, "until = poll.sent_at + t.holder_validity_s",
     "until = local.now + t.holder_validity_s"),
    ("rule 14 promise not kept", HA, "if promise is not None and local.now < promise.until:", "if False:"),
    ("rule 40 an older version restarts the wait", LOCAL, "ident > prev.ident or", "ident != prev.ident or"),
    ("rule 40 a newer version keeps the old sight", LOCAL, "ident > prev.ident or", "False or"),
    ("rule 41 late writes never given back", LOCAL, '    last = f"version', '    return None\n    last = f"version'),
    ("rule 41 our last acknowledged write given back", LOCAL, "or (lease.term, lease.version) == expired):", "):"),
    ("rule 41 a term we never wrote given back", LOCAL, "or holding or not wrote", "or holding"),
    ("rule 43 a deleted lease forgets the promise", LOCAL,
     'if last is not None and (not lease.exists or lease.holder == "?"):', "if False:"),
    ("rule 42 no unprepare", LOCAL, "had_last and last != probe_at", "False"),
    ("rule 42 no prepare at the probe time", LOCAL,
     "return probe_at is not None and not holding and now >= probe_at", "return False"),
    ("rule 44 a failed write does not stall", LOCAL, "return failsafe and failed and not acked", "return False"),
    ("rule 44 no re-assert after an extension", LOCAL, "return stalled or (due and not extended)",
     "return due and not extended"),
    ("rule 44 a stalled holder still reads ZooKeeper", LOCAL,
     "return not (failsafe and (stalled or not connected))", "return not (failsafe and not connected)"),
]
#: the names test_scenarios takes from each file
USED = {HA: ("decide",), LOCAL: ("first_seen", "give_back", "probe_due", "probe_step", "carry_promise",
                                 "zk_read", "zk_stalled", "reassert")}


def compile_mutant(path: str, old: str, new: str) -> types.ModuleType:
    src = (ROOT / path).read_text()
    if src.count(old) != 1:
        raise SystemExit(f"{path}: the text to mutate occurs {src.count(old)} times: {old!r}")
    mod = types.ModuleType("hacluster._mutant")
    mod.__package__ = "hacluster"
    exec(compile(src.replace(old, new), path, "exec"), mod.__dict__)  # our own source, one rule broken
    return mod


def main() -> int:
    caught: dict[str, list[str]] = {f"{Path(s.file).stem}: {s.name}": [] for s in ts.SCENARIOS}
    original: dict[str, Any] = {n: getattr(ts, n) for names in USED.values() for n in names}
    for name, path, old, new in MUTANTS:
        mod = compile_mutant(path, old, new)
        for n in USED[path]:
            setattr(ts, n, getattr(mod, n))
        failed = []
        for sc in ts.SCENARIOS:
            try:
                ts.run(sc)
            except Exception:  # a wrong verdict, or the mutant crashing: caught either way
                failed.append(sc)
        for n, fn in original.items():
            setattr(ts, n, fn)
        for sc in failed:
            caught[f"{Path(sc.file).stem}: {sc.name}"].append(name)
        groups = sorted({Path(sc.file).stem for sc in failed})
        print(f"{name}: {len(failed)} scenario(s) fail ({', '.join(groups) or 'NONE'})")
    never = [s for s, by in caught.items() if not by]
    print(f"{len(ts.SCENARIOS)} scenarios, {len(MUTANTS)} mutants; caught by none: {len(never)}")
    for s in never:
        print("  ", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
