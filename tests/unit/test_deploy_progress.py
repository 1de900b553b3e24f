"""Deploy progress: on a terminal a step says `running...` until its result line replaces it;
into a pipe only result lines go (what scripts and the deploy tests parse)."""

from __future__ import annotations

import io
from types import SimpleNamespace

from hacluster.deploy import Reporter


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(name: str = "store1", changes: int = 2, tier: str | None = "store") -> SimpleNamespace:
    host = SimpleNamespace(name=name, tier=tier)
    return SimpleNamespace(host=host, changes=[object()] * changes, steps=[])


def test_terminal_shows_running_then_replaces_it() -> None:
    out = Tty()
    rep = Reporter(out, 6)
    r = run()
    rep.host(1, 3, r)
    rep.begin(r, "package")
    assert out.getvalue().endswith("store1  package      running...")
    rep.line(r, "package", "changed", "hacluster 1.0", 31.2)
    text = out.getvalue()
    assert text.startswith("[1/3] store1 (store): 2 change(s) to apply\n")
    assert "running...\r\x1b[2Kstore1  package      changed    hacluster 1.0 (31.2s)\n" in text
    assert r.steps == [{"step": "package", "status": "changed", "detail": "hacluster 1.0", "seconds": 31.2}]


def test_pipe_gets_result_lines_only() -> None:
    out = io.StringIO()
    rep = Reporter(out, 6)
    r = run(changes=0, tier=None)
    rep.host(2, 2, r)
    rep.begin(r, "verify")
    rep.line(r, "verify", "ok", "healthy")
    assert out.getvalue() == "[2/2] store1 (no agent): up to date, verifying\nstore1  verify       ok         healthy\n"
