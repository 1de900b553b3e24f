"""Log lines under systemd: `<priority>` on every line, no own timestamp; elsewhere unchanged."""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import pytest

from hacluster.logsetup import JournalFormatter, configure_logging, syslog_priority, under_journal


def record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            info = sys.exc_info()
    return logging.LogRecord("hacluster.agent", level, __file__, 1, msg, (), info)


@pytest.mark.parametrize("level,prio", [(logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
                                        (logging.INFO, 6), (logging.DEBUG, 7), (5, 7), (35, 4)])
def test_priorities(level: int, prio: int) -> None:
    assert syslog_priority(level) == prio
    assert JournalFormatter("%(message)s").format(record(level, "x")) == f"<{prio}>x"


def test_every_line_of_a_traceback_keeps_the_priority() -> None:
    out = JournalFormatter("%(message)s").format(record(logging.ERROR, "start raised\nsecond line", exc=True))
    lines = out.split("\n")
    assert len(lines) > 4 and all(line.startswith("<3>") for line in lines)
    assert lines[0] == "<3>start raised" and lines[-1] == "<3>RuntimeError: boom"


def test_journal_detection() -> None:
    with tempfile.TemporaryFile("w") as f:
        st = os.fstat(f.fileno())
        assert under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
        # inherited by a child whose stderr goes elsewhere: not the journal
        assert not under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}", "INVOCATION_ID": "ab"}, f)
        assert not under_journal({"JOURNAL_STREAM": "garbage"}, f)
        assert under_journal({"INVOCATION_ID": "0123abcd"}, f)
        assert not under_journal({}, f)


def test_configure_picks_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(logging.INFO, "%(asctime)s %(levelname)s %(message)s", "%(message)s",
                          environ={"INVOCATION_ID": "x"})
        logging.getLogger("t").warning("demoted")
        logging.getLogger("t").debug("hidden")
        assert capsys.readouterr().err == "<4>demoted\n"
        configure_logging(logging.INFO, "%(levelname)s %(message)s", "%(message)s", environ={})
        logging.getLogger("t").warning("demoted")
        assert capsys.readouterr().err == "WARNING demoted\n"  # today's format off systemd
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
