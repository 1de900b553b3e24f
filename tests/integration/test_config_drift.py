"""Config drift on real agents, a real ZooKeeper and real Postfix configuration (`postconf -n`
reads each node's main.cf): `check: config_digest` publishes per-parameter and per-file digests in
the heartbeat; `status` names "node2 differs from node1: virtual_mailbox_maps, {state_dir}/virtual";
a switchover to the drifted node is refused without --force and done with it; the status page
shows the drift (headless Chromium); equal again, the drift is gone everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacluster_lab.localcluster import LocalCluster, spec_text
from hacluster.http.web import WebServer

from .agents import running
from .holder import ensure_holder
from .postfix_conf import MASTER_CF, main_cf
from .test_web_browser import Browser
from .waiting import wait_for

pytestmark = [pytest.mark.zk, pytest.mark.timeout(240)]

HEALTH = """\
health:
  store:
    - {check: config_digest, postconf: true, config_dir: "{state_dir}/postfix", files: ["{state_dir}/virtual"], timeout_s: 5,
       interval_s: 0.5, rise: 1, fall: 1}
"""
MAPS = "virtual_mailbox_domains = example.org\nvirtual_mailbox_maps = hash:{base}/virtual\n"


def cli(lc: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(lc.spec_path)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def write_config(lc: LocalCluster, node: str, maps: str, users: str) -> None:
    base = lc.state_dir(node)
    (base / "postfix").mkdir(parents=True, exist_ok=True)
    # the same text on both nodes but the per-host lines (myhostname, directories): postconf -n
    # lists them and the check leaves them out
    # each file replaced whole (as configuration management does): the check running meanwhile must
    # never read a half-written main.cf, which would be a drift in every parameter for one probe
    for path, text in ((base / "postfix" / "main.cf", main_cf(base, f"{node}.example") + maps.format(base="/etc/postfix")),
                       (base / "postfix" / "master.cf", MASTER_CF.format(port=2525)), (base / "virtual", users)):
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(text)
        os.replace(tmp, path)


def drift(lc: LocalCluster) -> dict:
    return json.loads(cli(lc, "status", "--json").stdout)["drift"]


@pytest.fixture
def two(zk_single, tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = f"hdr{os.getpid()}"
    lc = LocalCluster(zk_single.hosts, tmp_path / "c", cluster=cluster,
                      spec_text_=spec_text(zk_single.hosts, n=2, cluster=cluster).replace("api:\n", HEALTH + "api:\n"))
    for n in lc.nodes:
        write_config(lc, n, MAPS, "anna@example.org ok\n")
    with running(lc):
        yield lc


def test_drift_is_shown_refused_and_forced(two: LocalCluster, tmp_path: Path) -> None:
    lc = two
    wait_for(lambda: lc.wait_holder("store", timeout=30), 31, "a holder")
    coord = lc.coordinator("drift-test")
    server = None
    browser = Browser(tmp_path)
    try:
        ensure_holder(lc, coord, "node1")
        wait_for(lambda: all(m and "config_digest" in m["health"] for m in
                             json.loads(cli(lc, "status", "--json").stdout)["members"].values()), 20, "digests published")
        assert drift(lc) == {}
        # node2's maps change (another map, an account missing): named by item, against the holder
        write_config(lc, "node2", MAPS.replace("virtual_mailbox_maps = hash:", "virtual_mailbox_maps = texthash:"),
                     "anna@example.org ok\nbert@example.org ok\n")
        d = wait_for(lambda: drift(lc).get("node2"), 20, "node2's drift")
        assert d["against"] == "node1" and d["items"] == ["virtual_mailbox_maps", "{state_dir}/virtual"], d
        text = cli(lc, "status").stdout
        assert "node2 differs from node1: virtual_mailbox_maps, {state_dir}/virtual" in text and "DRIFT" in text

        # the status page shows it (the same view)
        server = WebServer(lc.spec, coord, "127.0.0.1", 0, None, interval_s=0.25)
        server.start()
        page = browser.open(server.url)
        page.wait("(document.querySelector('[data-node=node2] .badge.drift') || {}).textContent === 'CONFIG DRIFT'",
                  timeout=30, what="node2's drift badge")
        assert "virtual_mailbox_maps" in page.js("document.querySelector('[data-drift=node2]').textContent")
        assert page.js("document.querySelector('[data-node=node1] .badge.drift')") is None
        page.screenshot(tmp_path / "web-drift.png")

        # a switchover to the drifted node needs --force
        res = cli(lc, "switchover", "store", "--to", "node2", "--yes")
        assert res.returncode == 1 and "node2 differs from node1: virtual_mailbox_maps" in res.stderr \
            and "--force" in res.stderr, res.stderr
        assert lc.believed_holders("store") == ["node1"]
        res = cli(lc, "switchover", "store", "--to", "node2", "--yes", "--force")
        assert res.returncode == 0, res.stderr
        assert lc.believed_holders("store") == ["node2"]
        # now node2 serves: node1 is the one that differs
        assert wait_for(lambda: drift(lc).get("node1"), 20, "drift against the new holder")["against"] == "node2"

        # equal again: gone from status and from the page
        write_config(lc, "node1", MAPS.replace("virtual_mailbox_maps = hash:", "virtual_mailbox_maps = texthash:"),
                     "anna@example.org ok\nbert@example.org ok\n")
        wait_for(lambda: drift(lc) == {}, 20, "no drift")
        page.wait("document.querySelector('.badge.drift') === null", timeout=30, what="the drift badge gone")
    finally:
        browser.close()
        if server is not None:
            server.stop()
        coord.stop()
