"""The shipped systemd unit, checked by Debian's systemd-analyze (252) offline, no systemd running:
`security --offline=true` must rate it 4.0 or better ("OK"), `verify` must pass, for the shipped
file and for what `hacluster deploy` writes from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


from hacluster.deploy.render import Layout, render_agent_unit

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "agents" / "hacluster-agent.service"
MAX_EXPOSURE = 4.0
HACLUSTER = Path(sys.executable).with_name("hacluster")  # the venv's entry point: verify wants a real binary


def exposure(unit: Path) -> float:
    """`systemd-analyze security --offline=true UNIT`'s overall exposure level (0 best, 10 worst)."""
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) ", out.stdout)
    assert m, out.stdout + out.stderr
    return float(m.group(1))


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)


def test_shipped_unit_exposure_is_at_most_4(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text())
    score = exposure(unit)
    print(f"\nsystemd-analyze security --offline=true {UNIT.name}: {score}")
    assert score <= MAX_EXPOSURE
    stated = re.search(r"\((\d\.\d) for this file", UNIT.read_text())
    assert stated and float(stated.group(1)) == score, "the unit's header states another score"


def test_the_sandbox_is_what_keeps_the_score(tmp_path: Path) -> None:
    """The check can fail: the same unit without its sandbox section rates far worse."""
    text = UNIT.read_text()
    bare = text[:text.index("# ---- sandbox")] + text[text.index("[Install]"):]
    unit = tmp_path / UNIT.name
    unit.write_text(bare)
    assert exposure(unit) > 9.0


def test_every_capability_kept_is_explained() -> None:
    text = UNIT.read_text()
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M).group(1).split()  # type: ignore[union-attr]
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert {"CAP_NET_ADMIN", "CAP_NET_RAW"} <= set(caps)
    assert [c for c in caps if not re.search(rf"\b{c.removeprefix('CAP_')}\b", comments)] == []


def test_shipped_unit_verifies(tmp_path: Path) -> None:
    assert HACLUSTER.exists()
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/hacluster", str(HACLUSTER)))
    res = verify(unit)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_deployed_unit_verifies_and_keeps_the_score(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    (prefix / "current" / "bin").mkdir(parents=True)
    os.symlink(HACLUSTER, prefix / "current" / "bin" / "hacluster")
    for state_dir in (None, "/var/lib/hacluster/store1"):
        text = render_agent_unit(UNIT.read_text(), "agents/hacluster-agent.service", Layout(str(prefix)), "store1", state_dir)
        unit = tmp_path / UNIT.name
        unit.write_text(text)
        res = verify(unit)
        assert res.returncode == 0 and res.stderr == "", res.stderr
        assert exposure(unit) <= MAX_EXPOSURE


def test_a_broken_unit_fails_verify(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/hacluster", str(tmp_path / "missing")))
    res = verify(unit)
    assert res.returncode != 0 and "missing" in res.stderr
