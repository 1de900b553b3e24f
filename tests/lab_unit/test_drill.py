"""Drill playbooks without a lab: the reader's FILE:LINE errors, the CLI's exit 2 before anything
runs, every shipped playbook valid, and the expectation rules on recorded runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hacluster.cli import main
from hacluster_lab.drill import default_playbook_dir
from hacluster_lab.drill.expect import CHECKERS, Recording, checker, judge
from hacluster_lab.drill.labtarget import LabTarget, drill_spec_text
from hacluster_lab.drill.playbook import EXPECT_FIELDS, Expectation, PlaybookError, check_against, load_playbook, parse_playbook
from hacluster_lab.drill.target import MonitorData, RoleInfo
from hacluster.spec import parse_spec

GOOD = """\
name: t
steps:
  - start_traffic: {rate: 5/s}
  - bind: {old: holder(store), new: standby(store)}
  - fault: {id: cut, kind: power-off, node: $old}
  - wait_until: {id: takeover, holder: {role: store, node: $new}, timeout: 10s}
  - wait: 2s
  - stop_traffic:
  - restore:
expect:
  - holder: {node: $new, after: cut, within: 3s}
  - no_dual_holder
  - no_lost_mail: {wait: 30s}
"""

PLAYBOOKS = sorted(default_playbook_dir().glob("*.yml"))
REQUIRED = {"relay1-down", "store-holder-power-off", "planned-switchover", "rolling-restart", "zookeeper-leader-loss",
            "zookeeper-quorum-loss", "partition-holder-from-zookeeper", "raid-degraded", "spool-full"}


def problems(text: str) -> list[str]:
    with pytest.raises(PlaybookError) as ei:
        parse_playbook(text, "p.yml")
    return ei.value.problems


def test_good_playbook_parses() -> None:
    pb = parse_playbook(GOOD, "p.yml")
    assert [s.kind for s in pb.steps] == ["start_traffic", "bind", "fault", "wait_until", "wait", "stop_traffic", "restore"]
    assert pb.steps[0].args["rate"] == 5.0
    assert pb.steps[3].args["condition"] == "holder" and pb.steps[3].args["timeout"] == 10.0
    assert [e.kind for e in pb.expect] == ["holder", "no_dual_holder", "no_lost_mail"]


@pytest.mark.parametrize("bad, expected", [
    (GOOD.replace("  - wait: 2s\n", "  - wiat: 2s\n"), "p.yml:7: steps[4].wiat: unknown step"),
    (GOOD.replace("kind: power-off", "kind: power-of"), "p.yml:5: steps[2].fault.kind: must be one of"),
    (GOOD.replace("timeout: 10s}", "timeout: 10s, colour: red}"), "p.yml:6: steps[3].wait_until.colour: unknown key"),
    (GOOD.replace("within: 3s}", "within: soon}"), "p.yml:11: expect[0].holder.within: must be a duration"),
    (GOOD.replace("node: $old}", "node: $olde}"), "p.yml:5: line 5: fault: $olde is used before it is bound"),
    (GOOD.replace("after: cut", "after: cutt"), "p.yml:11: holder.after: no step or mark named 'cutt'"),
    (GOOD.replace("  - no_dual_holder\n", "  - no_dual_holders\n"), "p.yml:12: expect[1]: must be a one-key mapping"),
    (GOOD.replace("rate: 5/s", "rate: fast"), "p.yml:3: steps[0].start_traffic.rate: must be a rate"),
    (GOOD.replace("node: $new, after", "node: standby(store), after"), "p.yml:11: holder.node: standby(store) changes"),
    (GOOD.replace("name: t\n", "name: t\ncolour: red\n"), "p.yml:2: colour: unknown key"),
    (GOOD.replace("  - wait: 2s\n", "  - wait: {seconds: 2s\n"), "p.yml:8: (yaml):"),
    ("steps: []\nexpect: []\n", "p.yml:1: steps: is required"),
])
def test_bad_playbooks_name_file_line_field(bad: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(bad)), problems(bad)


def test_all_problems_at_once() -> None:
    bad = GOOD.replace("kind: power-off", "kind: nope").replace("within: 3s}", "within: x}")
    assert len(problems(bad)) == 2


def test_unknown_host_and_role_against_the_lab() -> None:
    pb = parse_playbook(GOOD.replace("node: $old}", "node: store9}").replace("role: store, node: $new",
                                                                             "role: mailbox, node: $new"), "p.yml")
    t = LabTarget("/run/hacluster-lab-hdr-unit", "hdr-")
    with pytest.raises(PlaybookError) as ei:
        check_against(pb, t.hosts(), set(t.roles()))
    text = str(ei.value)
    assert "p.yml:5: node: no host 'store9'" in text and "p.yml:6: role: no role 'mailbox'" in text


def test_cli_bad_playbook_exit_2_nothing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(GOOD.replace("kind: power-off", "kind: unplug"))
    state = tmp_path / "state"
    rc = main(["drill", "run", str(bad), "--state-dir", str(state), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{bad}:5: steps[2].fault.kind: must be one of" in err
    assert "Traceback" not in err
    assert not state.exists() and not (tmp_path / "out").exists()  # nothing was run


def test_cli_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "run", str(tmp_path / "nope.yml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_shipped_playbooks_are_valid_and_complete() -> None:
    names = set()
    t = LabTarget("/run/hacluster-lab-hdr-unit", "hdr-")
    for path in PLAYBOOKS:
        pb = load_playbook(path)
        check_against(pb, t.hosts(), set(t.roles()))
        names.add(pb.name)
        assert pb.name == path.stem
        assert pb.steps[-1].kind == "restore", f"{path}: must end with restore (the next drill reuses the lab)"
        assert pb.timeout_s <= 120
    assert REQUIRED <= names


def test_drill_spec_is_the_lab_spec_plus_health() -> None:
    spec = parse_spec(drill_spec_text())
    assert {c.check for c in spec.health["store"]} == {"raid", "spool", "queue"}  # the lab spec's own queue check stays


# --------------------------------------------------------------------------- judging


def recording(transitions: list[tuple[float, list[str]]], **kw) -> Recording:
    mon = MonitorData([{"t": t, "vip": "198.51.100.20", "holders": hs} for t, hs in transitions], samples=100)
    roles = {"store": RoleInfo("store", "store", "198.51.100.20", ("store1", "store2"))}
    return Recording(t0=0.0, t_steps_end=20.0, roles=roles, monitor=mon, **kw)


def results(pb_text: str, rec: Recording) -> dict[str, object]:
    pb = parse_playbook(pb_text, "p.yml")
    return {f"{r.expect}:{r.line}": (r.passed, r.measured) for r in judge(pb, rec)}


def test_every_expectation_kind_the_reader_accepts_has_one_registered_checker() -> None:
    assert sorted(CHECKERS) == sorted(EXPECT_FIELDS)
    with pytest.raises(ValueError, match="two checkers for expectation holder"):
        checker("holder")(CHECKERS["holder"])
    assert sorted(CHECKERS) == sorted(EXPECT_FIELDS)  # the refused one changed nothing


def test_an_unknown_kind_is_a_file_line_error_when_read_and_refused_when_judged() -> None:
    with pytest.raises(PlaybookError) as err:
        parse_playbook(GOOD.replace("  - no_lost_mail:", "  - no_lost_letters:"), "p.yml")
    assert "p.yml:13: expect[2].no_lost_letters: unknown expectation (known: holder," in str(err.value)
    pb = parse_playbook(GOOD, "p.yml")
    pb = dataclasses.replace(pb, expect=(Expectation("no_lost_letters", 13, {}),))
    with pytest.raises(ValueError, match="unknown expectation no_lost_letters"):
        judge(pb, recording([(0.0, ["store1"])]))


def test_judge_takeover_gap_and_unchanged() -> None:
    rec = recording([(0.0, ["store1"]), (5.2, []), (6.1, ["store2"])], marks={"cut": 5.0, "takeover": 6.3},
                    vars={"old": "store1", "new": "store2"},
                    waits={"takeover": {"reached": True, "seconds": 1.3, "timeout": 10, "line": 6}})
    text = GOOD.replace("  - no_lost_mail: {wait: 30s}\n", "  - max_gap: {max: 0.5s}\n  - holder_unchanged: {after: takeover}\n")
    r = results(text, rec)
    assert r["holder:11"] == (True, 1.1)
    assert r["max_gap:13"] == (False, 0.9)
    assert r["holder_unchanged:14"] == (True, [["store2"]])
    assert r["no_dual_holder:12"] == (True, 0)


def test_judge_never_reached_and_dual_holder_and_lost_mail() -> None:
    rec = recording([(0.0, ["store1"]), (5.1, ["store1", "store2"]), (5.3, ["store2"])], marks={"cut": 5.0},
                    vars={"old": "store1", "new": "store2"},
                    waits={"takeover": {"reached": False, "seconds": 10.0, "timeout": 10, "line": 6, "last": "x"}},
                    ledger={"accepted": 10, "delivered_once": 9, "lost": 1, "duplicates": 0, "not_accepted": 0,
                            "ambiguous": 0, "late": 0, "waited_s": 30, "lost_msgids": ["<a>"]})
    rec.monitor.dual_holder_samples = 40
    r = results(GOOD, rec)
    assert r["holder:11"] == (True, 0.3)
    assert r["no_dual_holder:12"] == (False, 40)
    assert r["no_lost_mail:13"][0] is False and r["no_lost_mail:13"][1]["lost"] == 1
    assert r["wait_until:6"] == (False, None)


def test_judge_no_takeover_allows_the_old_holder_only() -> None:
    text = """\
steps:
  - mark: cut
  - wait: 1s
  - mark: back
  - restore:
expect:
  - no_takeover: {after: cut, until: back}
"""
    ok = recording([(0.0, ["store1"]), (2.0, []), (9.0, ["store2"])], marks={"cut": 1.0, "back": 8.0})
    assert results(text, ok)["no_takeover:7"] == (True, [])
    bad = recording([(0.0, ["store1"]), (2.0, []), (4.0, ["store2"])], marks={"cut": 1.0, "back": 8.0})
    assert results(text, bad)["no_takeover:7"] == (False, ["store2"])


def test_timeline_picture_from_a_recording(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from hacluster_lab.drill.timeline import holding_intervals, render

    rec = recording([(0.0, ["store1"]), (5.2, []), (6.1, ["store2"])], marks={"cut": 5.0},
                    events=[{"t": 5.0, "t_end": 5.1, "kind": "fault", "label": "fault power-off store1", "line": 5, "ok": True}])
    rec.monitor.t_end = 20.0
    assert holding_intervals(rec, "198.51.100.20", 20.0) == {"store1": [(0.0, 5.2)], "store2": [(6.1, 20.0)]}
    subs = [SimpleNamespace(t=i * 0.2, accepted=i % 7 != 0) for i in range(100)]
    out = render(tmp_path / "t.png", parse_playbook(GOOD, "p.yml"), rec, subs, [(1.0, {"relay1": 3}), (2.0, {"relay1": 0})])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


# --------------------------------------------------------------------------- the runner and CLI on a fake target


class FakeTarget:
    """An in-memory cluster: power-off of the holder moves the role to the other store after
    `takeover_s`; everything else just records. Enough to drive the runner and the CLI's exit codes."""

    name = "fake"

    def __init__(self, takeover_s: float = 0.05) -> None:
        import time as _t

        self.t = _t
        self.takeover_s = takeover_s
        self.holder: list[str] = ["store1"]
        self.transitions: list[dict] = []
        self.off: set[str] = set()
        self.calls: list[str] = []
        self.pending: tuple[float, str] | None = None

    def use_spec(self, overrides: dict) -> dict:
        self.calls.append(f"use_spec {sorted(overrides.items())}")
        return {"spec": "failsafe: true", "restart_s": 1.5} if overrides else {}

    def _tick(self) -> None:
        if self.pending and self.t.monotonic() >= self.pending[0]:
            self._set([self.pending[1]])
            self.pending = None

    def _set(self, hs: list[str]) -> None:
        self.holder = hs
        self.transitions.append({"t": self.t.monotonic(), "vip": "198.51.100.20", "holders": list(hs)})

    def open(self) -> None: self.calls.append("open")
    def close(self) -> None: self.calls.append("close")
    def restore(self) -> dict: self.off.clear(); return {"t_mono": self.t.monotonic()}
    def baseline(self, timeout_s: float) -> dict: self.restore(); return {"seconds": 0.0}
    def hosts(self) -> set[str]: return {"store1", "store2", "relay1", "relay2", "zk1", "zk2", "zk3", "client"}
    def roles(self) -> dict: return {"store": RoleInfo("store", "store", "198.51.100.20", ("store1", "store2"))}
    def zk_hosts(self) -> list[str]: return ["zk1", "zk2", "zk3"]
    def mta_hosts(self) -> list[str]: return ["relay1", "relay2", "store1", "store2"]
    def start_monitor(self, duration_s: float) -> None: self._set(self.holder)

    def stop_monitor(self) -> MonitorData:
        self._tick()
        return MonitorData(self.transitions, 0, [], 100, 0.005, self.t.monotonic())

    def holders(self, role: str) -> list[str]:
        self._tick()
        return list(self.holder)

    def powered_off(self) -> set[str]: return set(self.off)
    def zk_modes(self) -> dict: return {"zk1": "leader", "zk2": "follower", "zk3": "follower"}
    def member(self, node: str) -> dict: return {"healthy": True, "reasons": []}
    def queue_lengths(self, nodes) -> dict: return {n: 0 for n in nodes or self.mta_hosts()}

    def fault(self, kind: str, node, peer) -> dict:
        self.calls.append(f"{kind} {node}")
        if kind == "power-off":
            self.off.add(node)
            if node in self.holder:
                self._set([])
                other = "store2" if node == "store1" else "store1"
                self.pending = (self.t.monotonic() + self.takeover_s, other)
        return {"t_mono": self.t.monotonic()}

    def switchover(self, role, to, wait_s) -> dict: return {"rc": 0, "done": True}
    def maintenance(self, on: bool) -> dict: return {"rc": 0}
    def raid_sample(self, node, sample) -> dict: return {}
    def spool_fill(self, node, fill) -> dict: return {}
    def flush_queues(self) -> None: pass
    def start_traffic(self, rate, connections) -> None: self.calls.append("traffic")
    def stop_traffic(self) -> list: return []
    def audit(self, subs, wait_s) -> dict: return {}


FAKE_BOOK = """\
steps:
  - bind: {old: holder(store), new: standby(store)}
  - fault: {id: cut, kind: power-off, node: $old}
  - wait_until: {id: takeover, holder: {role: store, node: $new}, timeout: 2s}
  - restore:
expect:
  - holder: {node: $new, after: cut, within: WITHIN}
  - reached: {step: takeover, within: 1s}
"""


@pytest.mark.parametrize("within, rc", [("1s", 0), ("0.01", 1)])
def test_cli_runs_on_a_target_and_exits_1_on_a_failed_expectation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], within: str, rc: int) -> None:
    import json

    import hacluster_lab.drill as drill_pkg

    fake = FakeTarget(takeover_s=0.1)
    monkeypatch.setattr(drill_pkg, "make_target", lambda *a, **k: fake)
    book = tmp_path / "fake-drill.yml"
    book.write_text(FAKE_BOOK.replace("WITHIN", within))
    assert main(["drill", "run", str(book), "--json", "--out", str(tmp_path / "out")]) == rc
    rep = json.loads(capsys.readouterr().out)
    assert rep["passed"] is (rc == 0)
    holder = next(e for e in rep["expectations"] if e["expect"] == "holder")
    assert 0.1 <= holder["measured"] < 0.5  # the takeover the fake made, measured from the fault
    assert holder["passed"] is (rc == 0)
    assert fake.calls[0] == "open" and "power-off store1" in fake.calls and fake.calls[-1] == "close"
    assert (tmp_path / "out" / "fake-drill.png").exists() and (tmp_path / "out" / "fake-drill.json").exists()


class LaggingSwitchover(FakeTarget):
    """A switchover is "done" when the lease moved; the VIP follows `takeover_s` later."""

    def switchover(self, role, to, wait_s) -> dict:
        self._set([])
        self.pending = (self.t.monotonic() + self.takeover_s, to)
        return {"rc": 0, "done": True}


def test_restore_waits_for_the_holder_windows_of_steps_just_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A playbook that ends right after a switchover still sees the VIP arrive: restore (which
    ends the recording) waits until each `holder` expectation's node holds or its window passed."""
    import json

    import hacluster_lab.drill as drill_pkg

    fake = LaggingSwitchover(takeover_s=0.2)
    monkeypatch.setattr(drill_pkg, "make_target", lambda *a, **k: fake)
    book = tmp_path / "switch-drill.yml"
    book.write_text("steps:\n  - bind: {new: standby(store)}\n  - switchover: {id: back, role: store, to: $new}\n"
                    "  - restore:\nexpect:\n  - holder: {node: $new, after: back, within: 2s}\n")
    assert main(["drill", "run", str(book), "--json", "--out", str(tmp_path / "out")]) == 0
    holder = next(e for e in json.loads(capsys.readouterr().out)["expectations"] if e["expect"] == "holder")
    assert holder["passed"] is True and 0.2 <= holder["measured"] < 1.0, holder


FENCED = GOOD.replace("  - no_lost_mail: {wait: 30s}\n",
                      "  - fenced: {node: $old, after: cut, within: 5s}\n  - no_spool_write_after_fence: {node: $old}\n") \
    + "lab: {spool: shared-loop, fencing: true}\n"


def test_lab_key_and_fence_expectations_parse() -> None:
    pb = parse_playbook(FENCED, "p.yml")
    assert pb.lab == (("spool", "shared-loop"), ("fencing", True))
    assert parse_playbook(GOOD, "p.yml").lab == ()
    assert any("lab.spool" in p and "must be one of" in p for p in problems(FENCED.replace("shared-loop", "nfs")))
    assert any("lab.fencing" in p for p in problems(FENCED.replace("fencing: true", "fencing: maybe")))
    assert any("lab.size" in p and "unknown key" in p for p in problems(FENCED.replace("fencing: true", "size: 1")))


def test_judge_fenced_and_no_write_after_the_fence() -> None:
    fence = {"fences": [{"node": "store2", "target": "store1", "ok": False, "seconds": 1.0, "t": 6.0},
                        {"node": "store2", "target": "store1", "ok": True, "seconds": 0.6, "t": 7.5}],
             "writes": [{"t": 4.0, "host": "store1"}, {"t": 7.0, "host": "store1"}, {"t": 8.0, "host": "store2"},
                        {"t": 9.0, "host": "?"}]}
    rec = recording([(0.0, ["store1"]), (8.0, ["store2"])], marks={"cut": 5.0}, vars={"old": "store1", "new": "store2"},
                    waits={"takeover": {"reached": True, "seconds": 3.0, "timeout": 10, "line": 6}}, fence=fence)
    r = results(FENCED, rec)
    assert r["fenced:13"] == (True, 2.5)  # the failed attempt does not count; the confirmed one 2.5 s after cut
    assert r["no_spool_write_after_fence:14"] == (True, 0)  # store1 wrote at 4.0 and 7.0: before its fence
    fence["writes"].append({"t": 7.6, "host": "store1"})
    assert results(FENCED, rec)["no_spool_write_after_fence:14"] == (False, 1)
    rec.fence = {"fences": [], "writes": []}
    assert results(FENCED, rec)["fenced:13"] == (False, None)
    assert results(FENCED, rec)["no_spool_write_after_fence:14"] == (False, None)
    rec.fence = None  # a target that cannot tell fails the expectation, it never passes by default
    assert results(FENCED, rec)["fenced:13"] == (False, None)
# --------------------------------------------------------------------------- failsafe drills (issue 13)


def test_spec_overrides_parse_and_bad_ones_name_file_line_and_field() -> None:
    pb = parse_playbook(GOOD.replace("name: t\n", "name: t\nspec: {failsafe: true}\n"), "p.yml")
    assert pb.spec == (("failsafe", True),)
    assert parse_playbook(GOOD, "p.yml").spec == ()
    assert any(p.startswith("p.yml:2: spec.timing: unknown key") for p in
               problems(GOOD.replace("name: t\n", "name: t\nspec: {timing: fast}\n")))
    assert any(p.startswith("p.yml:2: spec.failsafe:") and "true or false" in p for p in
               problems(GOOD.replace("name: t\n", "name: t\nspec: {failsafe: maybe}\n")))
    assert any(p.startswith("p.yml:2: spec:") for p in problems(GOOD.replace("name: t\n", "name: t\nspec: [1]\n")))


def test_the_runner_asks_the_target_for_the_drills_spec(tmp_path: Path) -> None:
    from hacluster_lab.drill.runner import run_playbook

    fake = FakeTarget()
    moved = run_playbook(parse_playbook(GOOD.replace("name: t\n", "name: t\nspec: {failsafe: true}\n"), "p.yml"), fake, None)
    stayed = run_playbook(parse_playbook(GOOD, "p.yml"), fake, None)
    assert [c for c in fake.calls if c.startswith("use_spec")] == ["use_spec [('failsafe', True)]", "use_spec []"]
    # the report says what the target changed before the drill, and the time it took
    assert moved.to_dict()["setup"] == {"spec": "failsafe: true", "restart_s": 1.5}
    assert stayed.to_dict()["setup"] == {}


def test_judge_no_holder_and_max_queued() -> None:
    text = GOOD.replace("  - no_lost_mail: {wait: 30s}\n",
                        "  - no_holder: {after: cut, within: 1s, until: takeover}\n  - max_queued: {max: 3, after: cut}\n")
    base = dict(marks={"cut": 5.0, "takeover": 12.0}, vars={"old": "store1", "new": "store2"},
                waits={"takeover": {"reached": True, "seconds": 7.0, "timeout": 10, "line": 6}})
    # dropped 0.7 s after the cut, nobody until the mark: passes; queues peak at 2 inside the window
    rec = recording([(0.0, ["store1"]), (5.7, []), (12.5, ["store2"])], queues=[(1.0, {"relay1": 9}), (6.0, {"relay1": 2}),
                                                                              (8.0, {"relay1": 1, "relay2": None})], **base)
    r = results(text, rec)
    assert r["no_holder:13"] == (True, {"dropped_s": 0.7, "held_by": []}) and r["max_queued:14"] == (True, 2)
    # the holder stays past `within`, and a peer takes over inside the window; the queues grow
    rec = recording([(0.0, ["store1"]), (6.5, []), (9.0, ["store2"])], queues=[(6.0, {"relay1": 4})], **base)
    r = results(text, rec)
    assert r["no_holder:13"] == (False, {"dropped_s": 1.5, "held_by": ["store1", "store2"]})
    assert r["max_queued:14"] == (False, 4)
    # no queue sample in the window: not a pass
    assert results(text, recording([(0.0, ["store1"]), (5.5, [])], queues=[], **base))["max_queued:14"] == (False, None)


def test_unheld_seconds_sums_the_gaps_in_the_window() -> None:
    from hacluster_lab.lab.monitor import unheld_seconds

    tr = [{"t": 0.0, "vip": "198.51.100.20", "holders": ["store1"]}, {"t": 2.0, "vip": "198.51.100.20", "holders": []},
          {"t": 3.0, "vip": "198.51.100.20", "holders": ["store2"]}, {"t": 5.0, "vip": "198.51.100.20", "holders": []},
          {"t": 1.0, "vip": "fd00:51::20", "holders": []}]
    assert unheld_seconds(tr, "198.51.100.20", 0.0, 10.0) == 6.0  # 2-3 and 5-10; the IPv6 VIP is another
    assert unheld_seconds(tr, "198.51.100.20", 2.5, 4.0) == 0.5
    assert unheld_seconds(tr, "198.51.100.20", 0.0, 1.0) == 0.0


def test_judge_holder_any_is_one_node_whichever() -> None:
    text = """\
steps:
  - mark: back
  - restore:
expect:
  - holder: {node: any, after: back, within: 3s}
"""
    for later in ("store1", "store2"):  # either store taking the role meets it
        rec = recording([(0.0, []), (2.0, ["store1", "store2"]), (2.5, [later])], marks={"back": 1.0})
        assert results(text, rec)["holder:5"] == (True, 1.5)  # two at once is not "one node"
    never = recording([(0.0, []), (2.0, ["store1", "store2"])], marks={"back": 1.0})
    assert results(text, never)["holder:5"] == (False, None)
