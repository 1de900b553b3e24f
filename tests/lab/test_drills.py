"""Every drill playbook runs green in the namespace lab, in one `hacluster drill run --all`
(one lab for all of them, as CI runs it), within the CI budget; and the VM-lab target refuses
cleanly when no VM answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hacluster_lab.drill import default_playbook_dir
from hacluster_lab.lab.lab import Lab

pytestmark = [pytest.mark.lab]

# per-process prefix and state dir: a second run of this file at the same time (someone running
# all of tests/lab) must not tear this lab down as "leftovers" (Lab.up cleans same-prefix namespaces)
PREFIX = f"hd{os.getpid() % 90 + 10}-"
STATE = Path(f"/run/hacluster-lab-hdr-test-{os.getpid()}")
BUDGET_S = 570  # CI budget for all drills together (both labs up and down included; the failsafe and placement drills)
NS = f"hdr-novm{os.getpid() % 1000}"
README_DRILL = "store-holder-power-off"  # its timeline is docs/img/drill-timeline.png (make docs-img)


@pytest.mark.timeout(BUDGET_S + 60)
def test_all_playbooks_pass_in_the_lab(tmp_path: Path) -> None:
    # HACLUSTER_DRILL_OUT: keep pictures, reports and a failed drill's node logs (CI artefacts)
    out = Path(os.environ.get("HACLUSTER_DRILL_OUT") or tmp_path / "results")
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "hacluster", "drill", "run", "--all", "--json",
                               "--state-dir", str(STATE), "--prefix", PREFIX, "--out", str(out)],
                              capture_output=True, text=True, timeout=BUDGET_S + 30)
    finally:
        Lab.teardown(STATE, PREFIX)  # also after a timeout: nothing may be left behind
    took = time.monotonic() - t0
    assert proc.stdout, proc.stderr[-2000:]
    drills = json.loads(proc.stdout)["drills"]
    summary = {d["name"]: (d["passed"], d["seconds"]) for d in drills}
    print(f"all drills: {took:.1f}s; " + ", ".join(f"{n} {'ok' if p else 'FAILED'} {s:.1f}s" for n, (p, s) in summary.items()))
    failed = {d["name"]: {"failed": [e for e in d["expectations"] if not e["passed"]],
                          "steps": [(s["t"], s["label"], s.get("error")) for s in d["steps"]],
                          "holders": [(h["t"], h["holders"]) for h in d["holders"] if ":" not in h["vip"]],
                          "logs": d["logs"]}
              for d in drills if not d["passed"]}
    assert not failed, json.dumps(failed)[:6000]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {d["name"] for d in drills} == {p.stem for p in default_playbook_dir().glob("*.yml")}
    for d in drills:
        assert Path(d["timeline"]).stat().st_size > 10_000  # a picture, not an empty file
        assert (out / f"{d['name']}.json").exists()
        assert any(e["expect"] == "no_dual_holder" for e in d["expectations"])
    assert took < BUDGET_S
    keep = os.environ.get("HACLUSTER_DOCS_IMG")
    if keep:  # `make docs-img`: the README's drill timeline is this run's own picture
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(next(d["timeline"] for d in drills if d["name"] == README_DRILL), Path(keep) / "drill-timeline.png")
    assert not STATE.exists()
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(PREFIX + "router") == 0


@pytest.mark.timeout(60)
def test_vagrant_target_without_vms_fails_clearly(tmp_path: Path) -> None:
    """Run in an empty namespace (loopback only): no VM address is reachable, and nothing leaves
    the machine while we find that out."""
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        book = default_playbook_dir() / "relay1-down.yml"
        proc = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-m", "hacluster", "drill", "run", str(book),
                               "--target", "vagrant", "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=45)
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "vagrant target: 9 of 9 VMs not reachable" in err, err
    assert "zk1 (198.51.100.31:22" in err and "vagrant up" in err, err
    assert not (tmp_path / "out").exists()
