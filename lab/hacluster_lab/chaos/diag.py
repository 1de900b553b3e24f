"""Evidence for a failing run, taken before the lab is torn down (the lab's files go with it).

For lost mail: every Postfix log line about the message on every host (found by its Message-ID
in the cleanup line, then by the queue ids that line names) and each instance's `postqueue -p`.
"""

from __future__ import annotations

import re
import subprocess
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from ..lab.lab import Lab

QID_RE = re.compile(r"postfix(?:-[\w.-]+)?/[\w/-]+\[\d+\]: ([0-9A-Za-z]{6,}):")
MAX_LINES = 60


def _maillog(lab: "Lab", host: str) -> list[str]:
    try:
        return lab.paths.maillog(host).read_text(errors="replace").splitlines()
    except OSError:
        return []


def trace_message(lab: "Lab", msgid: str) -> dict[str, list[str]]:
    """Host -> its maillog lines about `msgid` (at most MAX_LINES each)."""
    out: dict[str, list[str]] = {}
    for h in lab.plan.of_kind("client", "relay", "fallback", "store"):
        lines = _maillog(lab, h.name)
        qids = set()
        for ln in lines:
            if msgid in ln:
                m = QID_RE.search(ln)
                if m:
                    qids.add(m.group(1))
        if not qids:
            continue
        hits = [ln for ln in lines if any(f" {q}:" in ln for q in qids)]
        out[h.name] = hits[-MAX_LINES:]
    return out


def queues(lab: "Lab") -> dict[str, str]:
    """Instance -> `postqueue -p` (first 4000 characters) for every running Postfix."""
    out: dict[str, str] = {}
    for h in lab.plan.of_kind("relay", "fallback", "store"):
        if h.name in lab.powered_off():
            continue
        try:
            p = lab.exec(h.name, ["postqueue", "-c", str(lab.paths.postfix_conf(h.name)), "-p"],
                         capture_output=True, text=True, timeout=20)
            out[h.name] = (p.stdout or p.stderr)[:4000]
        except (OSError, subprocess.SubprocessError) as err:
            out[h.name] = f"postqueue failed: {err}"
    return out


def collect(lab: "Lab", lost_msgids: Sequence[str], limit: int = 3) -> dict[str, Any]:
    return {"lost_traces": {m: trace_message(lab, m) for m in list(lost_msgids)[:limit]}, "queues": queues(lab)}
