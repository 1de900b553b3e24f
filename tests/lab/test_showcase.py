"""The embedded default cluster as a newcomer sees it (issue 22): `hacluster lab up`, then, from
the host shell with no spec configured, `hacluster status` shows the holders, every MTA's queue
(the FallbackMX first), the stores' RAID (simulated, and saying so) and spool; `status --qshape`
shows every MTA; the `raid-degraded` / `raid-repair` faults switch the simulated mdstat and the
status follows, with no failover. The status page in headless Chromium shows the same, and a
screenshot taken during a takeover (the holder powered off) is the README's picture
(docs/img/status-takeover.png: written there when $HACLUSTER_DOCS_IMG names the folder, i.e. by
`make docs-img`; otherwise under tmp_path, with its properties asserted)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hacluster_lab.lab.lab import Lab

from .running import HOST_CLI, lab_wait, host_env, host_hacluster, running_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

STATE = Path("/run/hacluster-lab-hs-showcase")
PREFIX = "hs-"
MTAS = ["fallback", "relay1", "relay2", "store1", "store2"]  # the FallbackMX first, then MX order
STORES = ("store1", "store2")
WEB_PORT = 8750


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(STATE, PREFIX)


def wait_for(what: str, pred: Callable[[], Any], timeout: float = 30.0, step: float = 0.3) -> Any:
    return lab_wait(what, pred, timeout, step)


def status_json() -> dict[str, Any]:
    r = host_hacluster(STATE, "status", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def settled() -> dict[str, Any] | None:
    """Both roles held, every MTA's queue listed, both stores' RAID and spool reported ok (a
    store's very first queue probe may run before its agent started Postfix)."""
    st = status_json()
    holders = all(st["roles"][r]["holder"] for r in ("store", "fallback"))
    queues = list(st["queues"]) == MTAS and all(q["ok"] for q in st["queues"].values())
    storage = all((st["storage"].get(s) or {}).get(c, {}) and st["storage"][s][c]["severity"] == "ok"
                  for s in STORES for c in ("raid", "spool"))
    return st if holders and queues and storage else None


def test_status_from_the_host_shows_holders_queues_raid_and_spool(lab: Lab) -> None:
    st = wait_for("holders, every MTA queue, RAID and spool reported", settled, 40)
    holder = st["roles"]["store"]["holder"]
    assert st["fallback_queue"] == {"nodes": ["fallback"], "total": 0, "oldest_age_s": None, "reporting": True,
                                    "silent": []}
    for s in STORES:
        raid, spool = st["storage"][s]["raid"], st["storage"][s]["spool"]
        assert raid["simulated"] is True and raid["detail"] == "md0 clean, md1 clean", raid
        assert raid["path"] == str(lab.paths.node(s) / "mdstat")
        assert spool["path"] == str(lab.paths.node(s) / "mail") and "writable" in spool["detail"], spool

    r = host_hacluster(STATE, "status")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"using the lab up at {STATE}" in r.stderr  # the one line saying how it got in
    out = r.stdout
    assert re.search(rf"^store\s+{holder}\s+\d+\s+\S+s\s+198\.51\.100\.20/24", out, re.M), out
    assert re.search(r"^fallback\s+fallback\s+\d+", out, re.M), out
    assert "FallbackMX queue (fallback): empty" in out
    table = out[out.index("MTA QUEUE"):].splitlines()[1:len(MTAS) + 1]
    assert [ln.split()[0] for ln in table] == ["fallback*", *MTAS[1:]], table  # FallbackMX first, marked
    assert all(ln.split()[2] == "0" for ln in table), table  # TOTAL column: every queue listed, empty
    assert "(RAID: simulated mdstat files; this lab has no md driver)" in out
    for s in STORES:
        assert re.search(rf"^{s}\s+RAID\s+ok\s+md0 clean, md1 clean \[simulated\]$", out, re.M), out
    assert len(re.findall(r"^\s+spool\s+ok\s+\S+/mail: writable, [\d.]+% free$", out, re.M)) == 2, out

    q = host_hacluster(STATE, "status", "--qshape")
    assert q.returncode == 0, q.stderr[-2000:]
    heads = [ln.split(":")[0] for ln in q.stdout.splitlines() if "messages by recipient domain" in ln]
    assert heads == ["fallback (FallbackMX)", *MTAS[1:]], q.stdout

    # a disk of md1 fails on the holder (the simulated file): an alert, the status says so, no failover
    term = st["roles"]["store"]["term"]
    lab.fault(holder, "raid-degraded")

    def degraded() -> dict[str, Any] | None:
        s = status_json()
        raid = s["storage"][holder]["raid"]
        return s if raid["severity"] == "warn" and "md1 degraded" in raid["detail"] else None
    s = wait_for("the degraded array in the holder's status", degraded, 20)
    assert any(x.startswith("raid: array degraded") for x in s["members"][holder]["reasons"])
    text = host_hacluster(STATE, "status").stdout
    assert re.search(rf"^{holder}\s+RAID\s+warn\s+md0 clean, md1 degraded \[simulated\]$", text, re.M), text
    time.sleep(3 * lab.spec.timing.lease_s)
    s = status_json()
    assert (s["roles"]["store"]["holder"], s["roles"]["store"]["term"]) == (holder, term)
    lab.fault(holder, "raid-repair")
    wait_for("the repaired array", lambda: status_json()["storage"][holder]["raid"]["severity"] == "ok", 20)
    # a host without a simulated RAID refuses the fault, naming what is missing
    with pytest.raises(Exception, match="has no simulated RAID"):
        lab.fault("relay1", "raid-degraded")


# --------------------------------------------------------------------------- the page


@pytest.fixture
def web(lab: Lab) -> Iterator[str]:
    """`hacluster web` started from the host shell: it reaches ZooKeeper from the router's namespace,
    like status, and listens on the host, where the browser is."""
    proc = subprocess.Popen([sys.executable, "-c", HOST_CLI, "web", "--port", str(WEB_PORT), "--interval", "0.25"],
                            env=host_env(STATE), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.search(r"at (http://\S+)", line)
        assert m, f"{line!r} {proc.stderr.read() if proc.poll() is not None and proc.stderr else ''}"
        yield m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def node_js(node: str, sel: str, attr: str = "textContent") -> str:
    return f"((document.querySelector('[data-node={node}] {sel}') || {{}}).{attr} || '')"


def test_page_shows_the_same_and_a_takeover_for_the_readme(lab: Lab, web: str, tmp_path: Path) -> None:
    import integration.test_web_browser as tw

    wait_for("the cluster settled", settled, 40)
    browser = tw.Browser(tmp_path)
    try:
        page = browser.open(web)
        holder = status_json()["roles"]["store"]["holder"]
        page.wait(f"{tw.holder_text('store')} === '{holder}' && {tw.holder_text('fallback')} === 'fallback'",
                  what="holders")
        # the FallbackMX queue: in the summary and drawn big on its card
        page.wait("Array.from(document.querySelectorAll('.sum')).some(s => s.textContent === 'FallbackMX queue0')",
                  what="the FallbackMX queue in the summary")
        assert page.js("document.querySelector('[data-node=fallback] .bigq').dataset.queue") == "0"
        for n in MTAS[1:]:  # every other MTA's queue on its card
            page.wait(f"{node_js(n, '[data-queue]', 'dataset.queue')} === '0'", what=f"{n} queue 0")
        for s in STORES:
            page.wait(f"{node_js(s, '[data-raid]', 'dataset.raid')} === 'ok'", what=f"{s} RAID ok")
            assert page.js(node_js(s, "[data-raid]")) == "md0 clean, md1 clean (simulated)"
            assert page.js(f"{node_js(s, '[data-raid] [data-simulated]', 'tagName')} === 'SMALL'")
            assert page.js(node_js(s, "[data-spool]", "dataset.spool")) == "ok"
            assert "% free" in page.js(node_js(s, "[data-spool]"))

        # a takeover: the holder's power goes, the page shows it down and the peer taking the VIP
        other = STORES[1] if holder == STORES[0] else STORES[0]
        lab.fault(holder, "power-off")
        try:
            page.wait(f"{tw.holder_text('store')} === '{other}' && "
                      f"['stale', 'down'].includes(document.querySelector('[data-node={holder}]').dataset.state)",
                      timeout=30, what="the takeover: the peer holds, the old holder is seen gone")
            time.sleep(0.6)  # two page refreshes: the history line of the takeover is drawn too
            shot = page.screenshot(tmp_path / "status-takeover.png")
        finally:
            lab.fault(holder, "power-on")
        assert tw.png_size(shot) == (1360, 900) and shot.stat().st_size > 20_000
        keep = os.environ.get("HACLUSTER_DOCS_IMG")
        if keep:  # `make docs-img`: refresh the README's picture
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / "status-takeover.png")
    finally:
        browser.close()
