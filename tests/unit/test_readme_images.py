"""The README's pictures are the test suite's own output (issue 22): the status page during a
takeover (tests/lab/test_showcase.py, headless Chromium on the lab) and a drill's timeline
(tests/lab/test_drills.py, the drill's own PNG). Those tests write them to docs/img/ when
$HACLUSTER_DOCS_IMG names it (`make docs-img`) and otherwise assert their properties in tmp_path,
so a run never dirties the tree; this test holds the README, the committed files and the
generating tests together: a renamed or dropped picture fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {  # committed picture -> the test that regenerates it
    "docs/img/status-takeover.png": "tests/lab/test_showcase.py",
    "docs/img/drill-timeline.png": "tests/lab/test_drills.py",
}


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_readme_shows_the_generated_pictures() -> None:
    shown = re.findall(r"!\[[^\]]+\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    assert sorted(p for p in shown if p.startswith("docs/img/")) == sorted(IMAGES), shown


@pytest.mark.parametrize("image,generator", sorted(IMAGES.items()))
def test_each_picture_is_committed_and_made_by_a_test(image: str, generator: str) -> None:
    w, h = png_size(ROOT / image)
    assert w >= 800 and h >= 400 and (ROOT / image).stat().st_size > 20_000, (image, w, h)
    assert Path(image).name in (ROOT / generator).read_text(), f"{generator} no longer writes {image}"
    assert "docs-img:" in (ROOT / "Makefile").read_text() and "HACLUSTER_DOCS_IMG" in (ROOT / "Makefile").read_text()
