"""The status page end to end: a real ZooKeeper, real agents (LocalCluster), `hacluster web`'s
server, and Debian's headless Chromium driven over the DevTools protocol (`--remote-debugging-pipe`:
JSON messages on fds 3/4, no extra library, no network port).

What a person would do: open the page, read who holds the role, unlock with the token, pick a
target, click "Switch over" twice (arm, confirm), watch the holder change without a reload; a page
without the token has no button; a refused request shows the CLI's reason. Screenshots go to
tmp_path, and also to $HACLUSTER_WEB_SCREENSHOTS if set (to look at them).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from hacluster_lab.localcluster import LocalCluster
from hacluster.http.web import WebServer

from .holder import ensure_holder
from .postfix_conf import MASTER_CF, main_cf

pytestmark = pytest.mark.zk

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "page-token-0123456789"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium with the DevTools protocol over a pipe."""

    def __init__(self, workdir: Path, size: tuple[int, int] = (1360, 900)) -> None:
        cmd_r, cmd_w = os.pipe()  # we write commands; Chromium reads them on fd 3
        ev_r, ev_w = os.pipe()  # Chromium writes answers and events on fd 4
        # the child's ends above 9, so the shell's `3<&N ... N<&-` never closes what it just made
        cmd_r, ev_w = (_high_fd(fd) for fd in (cmd_r, ev_w))
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", f"--user-data-dir={workdir / 'profile'}", f"--window-size={size[0]},{size[1]}",
                "--hide-scrollbars", "--remote-debugging-pipe", "about:blank"]
        self.size = size
        self.log = open(workdir / "chromium.log", "wb")
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{ev_w} {cmd_r}<&- {ev_w}>&-', "bash", *args],
                                     pass_fds=(cmd_r, ev_w), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        os.close(cmd_r)
        os.close(ev_w)
        self.wfd = cmd_w
        self.rfd = ev_r
        self.next_id = 0
        self.answers: dict[int, dict[str, Any]] = {}
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.rfd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self.cond:
                    self.cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self.cond:
                        self.answers[msg["id"]] = msg
                        self.cond.notify_all()

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 15.0) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        with self.cond:
            while mid not in self.answers:
                left = end - time.monotonic()
                if left <= 0 or not self.reader.is_alive():
                    raise AssertionError(f"DevTools {method}: no answer in {timeout}s")
                self.cond.wait(min(left, 0.5))
            ans = self.answers.pop(mid)
        if "error" in ans:
            raise AssertionError(f"DevTools {method}: {ans['error']}")
        return ans.get("result", {})

    def open(self, url: str) -> "Page":
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.size[0], "height": self.size[1],
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        return Page(self, session)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.b = browser
        self.session = session

    def js(self, expr: str) -> Any:
        r = self.b.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                        self.session)
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {expr}: {r['exceptionDetails'].get('text')} "
                                 f"{r['exceptionDetails'].get('exception', {}).get('description', '')}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 20.0, what: str = "") -> Any:
        end = time.monotonic() + timeout
        while True:
            try:
                v = self.js(expr)
            except AssertionError:
                v = None
            if v:
                return v
            if time.monotonic() > end:
                text = self.js("document.body ? document.body.innerText : ''")
                raise AssertionError(f"page never showed {what or expr} in {timeout}s; page text:\n{text}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self.b.call("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        path.write_bytes(base64.b64decode(data))
        keep = os.environ.get("HACLUSTER_WEB_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path)
    try:
        yield b
    finally:
        b.close()


def holder_text(role: str) -> str:
    return f"(document.querySelector('[data-role=\"{role}\"] .holder') || {{}}).textContent"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# --------------------------------------------------------------------------- three agents, switchover


@pytest.fixture
def three(zk_single, tmp_path: Path) -> Iterator[tuple[LocalCluster, WebServer]]:
    lc = LocalCluster(zk_single.hosts, tmp_path / "cluster", n=3)
    token_file = tmp_path / "web.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    coord = None
    server = None
    try:
        lc.start_all()
        assert lc.wait_holder("store", timeout=30) is not None, lc.agent_log_tail("node1")
        coord = lc.coordinator("web-test")
        ensure_holder(lc, coord, "node1")
        server = WebServer(lc.spec, coord, "127.0.0.1", 0, str(token_file), interval_s=0.25)
        server.start()
        yield lc, server
    finally:
        if server is not None:
            server.stop()
        if coord is not None:
            coord.stop()
        lc.cleanup()


def test_page_shows_holder_and_switches_over_with_the_token(three, browser: Browser, tmp_path: Path) -> None:
    lc, server = three
    page = browser.open(server.url)
    page.wait(f"{holder_text('store')} === 'node1'", what="node1 holding store")
    page.wait("document.querySelectorAll('[data-node][data-state=healthy]').length === 3", what="3 healthy nodes")
    assert page.js("document.querySelector('[data-node=node1]').classList.contains('holding')")
    # read-only until unlocked: no button, the unlock field is offered
    assert page.js("document.querySelectorAll('button[data-action=switchover]').length") == 0
    assert page.js("document.getElementById('unlock').hidden") is False
    shot1 = page.screenshot(tmp_path / "web-3nodes-before.png")
    assert png_size(shot1) == (1360, 900)

    # a wrong token is refused and not kept
    page.js("document.getElementById('token').value = 'nope'; document.getElementById('unlock-btn').click()")
    page.wait("document.getElementById('auth-msg').textContent.includes('wrong token')", what="wrong-token message")
    assert page.js("sessionStorage.length") == 0
    page.js(f"document.getElementById('token').value = '{TOKEN}'; document.getElementById('unlock-btn').click()")
    page.wait("!document.getElementById('authed').hidden", what="switchover enabled")
    page.wait("document.querySelector('button[data-action=switchover][data-role=store]') !== null", what="switchover button")
    options = page.js("Array.from(document.querySelectorAll('select[data-target-for=store] option')).map(o => o.value)")
    assert options == ["", "node2", "node3"]  # the holder is no target

    page.js("window.__sameDocument = 42")  # a reload would lose this
    page.js("const s = document.querySelector('select[data-target-for=store]'); s.value = 'node2';"
            "s.dispatchEvent(new Event('change', {bubbles: true}))")
    button = "document.querySelector('button[data-action=switchover][data-role=store]')"
    page.js(f"{button}.click()")  # arms
    assert page.wait(f"{button}.textContent.startsWith('Confirm')", what="armed button") is True
    assert "node2" in page.js(f"{button}.textContent")
    page.screenshot(tmp_path / "web-3nodes-armed.png")
    c = lc.coordinator("check")  # one click requested nothing yet
    try:
        assert c.snapshot(["store"]).requests.get("store") is None
    finally:
        c.stop()
    page.js(f"{button}.click()")  # confirms
    page.wait(f"{holder_text('store')} === 'node2'", timeout=30, what="node2 holding store")
    page.wait("(document.querySelector('[data-msg-for=store].msg-ok') || {}).textContent", what="success message")
    assert "node1 → node2" in page.js("document.querySelector('[data-msg-for=store]').textContent")
    assert page.js("window.__sameDocument") == 42
    # the new holder left the target list: the select is back on "best candidate", not on a neighbour
    assert page.js("document.querySelector('select[data-target-for=store]').value") == ""
    assert page.js(f"{button}.textContent") == "Switch over…"
    page.wait("document.querySelector('.history li .ev').textContent === 'acquired'", what="acquisition in the history")
    assert page.js("document.querySelector('.history li .ev-node').textContent") == "node2"
    shot2 = page.screenshot(tmp_path / "web-3nodes-after-switchover.png")
    assert shot2.stat().st_size > 10_000

    # the agents agree: node2 claims the role, node1 does not
    assert lc.believed_holders("store") == ["node2"]

    # placement constraints show: node3 in standby gets its badge, a ban its line on the role
    def hc(*args: str) -> None:
        res = subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(lc.spec_path)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr

    hc("node", "standby", "node3", "--wait", "0")
    hc("role", "ban", "store", "node1", "--wait", "0")
    page.wait("(document.querySelector('[data-node=node3] .badge.standby') || {}).textContent === 'STANDBY'",
              timeout=30, what="node3's standby badge")
    page.wait("(document.querySelector('.ban') || {textContent: ''}).textContent.includes('node1 banned from store')",
              timeout=30, what="the ban on store")
    hc("node", "unstandby", "node3")
    hc("role", "clear", "store")
    page.wait("document.querySelector('.badge.standby') === null && document.querySelector('.ban') === null",
              timeout=30, what="standby and ban gone")

    # a page opened without the token (own sessionStorage) stays read-only
    ro = browser.open(server.url)
    ro.wait(f"{holder_text('store')} === 'node2'", what="node2 in a fresh page")
    assert ro.js("document.querySelectorAll('button[data-action=switchover]').length") == 0


def test_page_shows_refusal_reason_and_dead_node(three, browser: Browser, tmp_path: Path) -> None:
    lc, server = three
    page = browser.open(server.url)
    page.wait(f"{holder_text('store')} === 'node1'")
    page.js(f"document.getElementById('token').value = '{TOKEN}'; document.getElementById('unlock-btn').click()")
    page.wait("document.querySelector('button[data-action=switchover][data-role=store]') !== null")
    lc.stop_proc("node3")  # its member znode goes when the agent ends its session
    page.wait("['down', 'stale'].includes(document.querySelector('[data-node=node3]').dataset.state)",
              timeout=20, what="node3 down")
    assert page.js("document.querySelector('[data-node=node3] .state-text').textContent").startswith(("no agent", "agent silent"))
    page.js("const s = document.querySelector('select[data-target-for=store]'); s.value = 'node3';"
            "s.dispatchEvent(new Event('change', {bubbles: true}))")
    button = "document.querySelector('button[data-action=switchover][data-role=store]')"
    page.js(f"{button}.click()")
    page.wait(f"{button}.textContent.startsWith('Confirm')")
    page.js(f"{button}.click()")
    msg = page.wait("(document.querySelector('[data-msg-for=store].msg-err') || {}).textContent", what="refusal")
    assert "node3 has no running agent" in msg and "start it first" in msg
    assert page.js(holder_text("store")) == "node1"
    page.screenshot(tmp_path / "web-3nodes-refused.png")


# --------------------------------------------------------------------------- tiers, queue, RAID, spool




@pytest.fixture
def fallback_postfix() -> Iterator[tuple[str, int]]:
    """A real Postfix (own config/queue dirs) whose mail defers: relayhost [127.0.0.1]:1 is closed."""
    import socket

    base = Path(tempfile.mkdtemp(prefix="hcweb-pf-", dir="/var/tmp"))
    base.chmod(0o755)
    conf = base / "etc"
    for sub in ("etc", "queue", "data"):
        (base / sub).mkdir()
    shutil.chown(base / "data", "postfix")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (conf / "main.cf").write_text(main_cf(base, "fallback-test.example"))
    (conf / "master.cf").write_text(MASTER_CF.format(port=port))
    try:
        out = subprocess.run(["postfix", "-c", str(conf), "start"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        end = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < end, "smtpd never listened"
                time.sleep(0.05)
        yield str(conf), port
    finally:
        subprocess.run(["postfix", "-c", str(conf), "abort"], capture_output=True, timeout=30)
        pid_file = base / "queue" / "pid" / "master.pid"
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(base, ignore_errors=True)


def tier_spec(zk_hosts: str, cluster: str, queue_conf: str) -> str:
    nodes = [("relay1", "relay", 21, 100, 10), ("relay2", "relay", 22, 90, 20), ("fallback", "fallback", 23, 100, None),
             ("store1", "store", 24, 100, None), ("store2", "store", 25, 90, None)]
    node_lines = "\n".join(
        f"  - {{name: {n}, tier: {t}, interface: lo, addresses: [127.0.0.{a}/8], priority: {p}"
        + (f", mx_preference: {mx}" if mx else "") + "}" for n, t, a, p, mx in nodes)
    marker = ('      - {{type: command, name: marker, start: "touch {{state_dir}}/RUNNING", '
              'stop: "rm -f {{state_dir}}/RUNNING", monitor: "test -f {{state_dir}}/RUNNING || exit 7"}}')
    return f"""\
cluster: {cluster}
mail: {{domain: lab.example, admin: postmaster@lab.example}}
zookeeper: {{hosts: [{zk_hosts}], chroot: /hacluster, session_timeout_s: 4.0}}
roles:
  store:
    tier: store
    resources:
{marker.format()}
  fallback:
    tier: fallback
    resources:
{marker.format()}
health:
  relay:
    - {{check: raid, mdstat: "{{state_dir}}/mdstat", interval_s: 0.5, rise: 1, fall: 1}}
  fallback:
    - {{check: queue, config_dir: "{queue_conf}", interval_s: 0.5, timeout_s: 3, rise: 1, fall: 1}}
    - {{check: spool, path: "{{state_dir}}", interval_s: 0.5, rise: 1, fall: 1}}
  store:
    - {{check: raid, mdstat: "{{state_dir}}/mdstat", interval_s: 0.5, rise: 1, fall: 1}}
    - {{check: spool, path: "{{state_dir}}", interval_s: 0.5, rise: 1, fall: 1}}
nodes:
{node_lines}
api: {{port: 0}}
"""


def test_page_draws_tiers_with_mx_queue_raid_and_spool(zk_single, fallback_postfix, browser: Browser,
                                                        tmp_path: Path) -> None:
    queue_conf, smtp_port = fallback_postfix
    for i in range(3):  # three messages that stay in the FallbackMX queue
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
            s.sendmail("ops@lab.example", [f"user{i}@elsewhere.example"], f"Subject: queued {i}\r\n\r\nbody {i}\r\n")
    text = tier_spec(zk_single.hosts, f"web{os.getpid()}", queue_conf)
    lc = LocalCluster(zk_single.hosts, tmp_path / "cluster", spec_text_=text)
    coord = server = None
    try:
        lc.state_dir("store1").mkdir(parents=True)
        lc.state_dir("store2").mkdir(parents=True)
        (lc.state_dir("store1") / "mdstat").write_text(
            "Personalities : [raid1]\nmd0 : active raid1 sdb1[1] sda1[0]\n      1048512 blocks [2/2] [UU]\n\nunused devices: <none>\n")
        shutil.copy(FIXTURES / "mdstat" / "raid1-degraded-faulty.mdstat", lc.state_dir("store2") / "mdstat")
        lc.start_all()
        assert lc.wait_holder("store", timeout=30) is not None, lc.agent_log_tail("store1")
        assert lc.wait_holder("fallback", timeout=30) is not None, lc.agent_log_tail("fallback")
        coord = lc.coordinator("web-test")
        ensure_holder(lc, coord, "store1")
        server = WebServer(lc.spec, coord, "127.0.0.1", 0, None, interval_s=0.25)
        server.start()
        page = browser.open(server.url)
        page.wait(f"{holder_text('store')} === 'store1' && {holder_text('fallback')} === 'fallback'", what="holders")
        # tiers in mail-path order; relays in MX order with their preferences
        assert page.js("Array.from(document.querySelectorAll('[data-tier]')).map(t => t.dataset.tier)") == \
            ["relay", "fallback", "store"]
        assert page.js("Array.from(document.querySelectorAll('[data-tier=relay] [data-node]')).map(n => "
                       "n.dataset.node + ' ' + n.querySelector('.badge.mx').textContent)") == ["relay1 MX 10", "relay2 MX 20"]
        # the FallbackMX queue, drawn big, from the real postqueue
        page.wait("document.querySelector('[data-node=fallback] .bigq') && "
                  "document.querySelector('[data-node=fallback] .bigq').dataset.queue === '3'", what="fallback queue 3")
        # where the waiting mail goes (the qshape's busiest destination) and why it waits
        page.wait("(document.querySelector('[data-node=fallback] [data-dests]') || {}).textContent === 'to elsewhere.example 3'",
                  what="fallback queue destinations")
        page.wait("((document.querySelector('[data-node=fallback] [data-reason]') || {}).textContent || '')"
                  ".includes('Connection refused')", what="fallback deferral reason")
        assert page.js("document.querySelector('[data-sum-role]') !== null")
        # RAID: store2's fixture is degraded, store1's clean
        page.wait("document.querySelector('[data-node=store2] [data-raid]').dataset.raid === 'warn'", what="store2 RAID warn")
        assert "degraded" in page.js("document.querySelector('[data-node=store2] [data-raid]').textContent")
        assert page.js("document.querySelector('[data-node=store1] [data-raid]').dataset.raid") == "ok"
        assert "% free" in page.js("document.querySelector('[data-node=store1] [data-spool]').textContent")
        # read-only server: no unlock field, a "read-only" label
        assert page.js("document.getElementById('unlock').hidden && !document.getElementById('readonly').hidden")

        # maintenance shows as a banner, live
        c = lc.coordinator("maint")
        try:
            c.set_maintenance(True, "test")
            page.wait("document.querySelector('[data-banner=maintenance]') !== null", what="maintenance banner")
            shot = page.screenshot(tmp_path / "web-tiers.png")
            c.set_maintenance(False, "test")
            page.wait("!document.querySelector('[data-banner=maintenance]')", what="banner gone")
        finally:
            c.stop()
        assert png_size(shot) == (1360, 900)
    finally:
        if server is not None:
            server.stop()
        if coord is not None:
            coord.stop()
        lc.cleanup()
