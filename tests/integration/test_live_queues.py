"""Live queues end to end: a real Postfix (mail defers: its relayhost is closed) whose queue the
FallbackMX agent's queue check reads with `postqueue -j`; the agent publishes it in its heartbeat
(real ZooKeeper), and `hacluster status` (text, --json, --qshape) and the agent's /metrics show
the queued messages, per queue and per destination; after `postsuper -d ALL` they show it empty.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hacluster_lab.localcluster import LocalCluster

from .loopback_postfix import start_postfix
from .test_alerts import RULES, STEP_S, alerts, promtool

SMTP_PORT = 26125
API_PORT_BASE = 26130  # +0 store1, +1 fallback (on 127.0.0.31/.32)


def spec(zk_hosts: str, cluster: str, queue_conf: str) -> str:
    return f"""\
cluster: {cluster}
mail: {{domain: lab.example, admin: postmaster@lab.example}}
zookeeper: {{hosts: [{zk_hosts}], chroot: /hacluster, session_timeout_s: 4.0}}
roles:
  store:
    tier: store
    resources:
      - {{type: command, name: marker, start: "touch {{state_dir}}/RUNNING", stop: "rm -f {{state_dir}}/RUNNING",
         monitor: "test -f {{state_dir}}/RUNNING || exit 7"}}
health:
  fallback:
    - {{check: queue, config_dir: "{queue_conf}", interval_s: 0.3, timeout_s: 3, rise: 1, fall: 1}}
nodes:
  - {{name: store1, tier: store, interface: lo, addresses: [127.0.0.31/8], priority: 100}}
  - {{name: fallback, tier: fallback, interface: lo, addresses: [127.0.0.32/8], priority: 100}}
api: {{port: 0}}
"""


def hacluster(*args: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hacluster", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def status_json(config: Path) -> dict[str, Any]:
    out = hacluster("status", "--json", config=config)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def metrics(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def expected_with_value(alert: str, labels: dict[str, str], value: str) -> dict[str, Any]:
    """exp_alerts entry with the annotations rendered from labels and $value."""
    rule = alerts()[alert]
    all_labels = {**labels, **rule["labels"]}

    def render(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: all_labels.get(m.group(1), ""), text)
        out = text.replace("{{ $value }}", value)
        assert "{{" not in out, f"{alert}: template needs a value: {text}"
        return out

    return {"exp_labels": all_labels, "exp_annotations": {k: render(v) for k, v in rule["annotations"].items()}}


def rules_fire_on(lc: LocalCluster, scrape: dict[tuple[str, tuple], float], node: str, tmp_path: Path) -> None:
    """The alert rules on the queue series the agent really exports (held for 40 min of promtool
    time, with the scrape's target labels): the FallbackMX rule fires at 35 min, not at 20; the
    old-message rule stays silent (the mail is minutes old)."""
    from ruamel.yaml import YAML

    target = {"cluster": lc.spec.name, "job": "hacluster", "node": node, "tier": lc.spec.nodes[node].tier,
              "instance": f"{lc.spec.nodes[node].address}:{lc.api_port(node)}"}
    series = []
    for (name, labels), value in sorted(scrape.items()):
        if name.startswith("hacluster_queue_"):
            lab = {**target, **dict(labels)}
            key = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(lab.items())) + "}"
            series.append({"series": key, "values": f"{value:g}+0x{40 * 60 // STEP_S}"})
    assert any("hacluster_queue_messages" in s["series"] for s in series)
    total = sum(v for (name, _), v in scrape.items() if name == "hacluster_queue_messages")
    rule_labels = {k: target[k] for k in ("cluster", "node", "instance")}
    want = expected_with_value("HaclusterFallbackQueueNotEmpty", rule_labels, f"{total:g}")
    cases = [
        {"eval_time": "20m", "alertname": "HaclusterFallbackQueueNotEmpty", "exp_alerts": []},
        {"eval_time": "35m", "alertname": "HaclusterFallbackQueueNotEmpty", "exp_alerts": [want]},
        {"eval_time": "35m", "alertname": "HaclusterQueueOldMessages", "exp_alerts": []},
    ]
    f = tmp_path / "queue-rules-test.yml"
    with f.open("w") as fh:
        YAML().dump({"rule_files": [str(RULES)], "evaluation_interval": f"{STEP_S}s",
                     "tests": [{"interval": f"{STEP_S}s", "input_series": series, "alert_rule_test": cases}]}, fh)
    out = promtool("test", "rules", str(f))
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]


@pytest.mark.zk
def test_queued_mail_shows_in_status_qshape_and_metrics(zk_single, tmp_path: Path) -> None:
    pf = start_postfix(SMTP_PORT, prefix="ho-lq-")
    lc = None
    try:
        sent = [["u1@a.example"], ["u2@a.example", "u3@a.example"], ["u4@a.example", "x@b.example"]]
        for i, rcpts in enumerate(sent):
            with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as s:
                s.sendmail("ops@lab.example", rcpts, f"Subject: queued {i}\r\n\r\nbody {i}\r\n")
        lc = LocalCluster(zk_single.hosts, tmp_path / "cluster", spec_text_=spec(zk_single.hosts, f"ho{os.getpid()}",
                                                                                  pf.config_dir),
                          api=True, api_port_base=API_PORT_BASE)
        lc.start_all()
        assert lc.wait_holder("store", timeout=30) is not None, lc.agent_log_tail("store1")

        def three_queued() -> dict[str, Any] | None:
            st = status_json(lc.spec_path)
            q = st["queues"].get("fallback")
            return st if q and q["total"] == 3 and q["shape"] and q["shape"]["total"][0] == 3 else None

        st = wait_for(three_queued, 30, "the fallback agent to publish 3 queued messages\n" + lc.agent_log_tail("fallback"))
        q = st["queues"]["fallback"]
        assert list(st["queues"]) == ["fallback"]  # only MTAs with a queue check report; the store has none
        assert st["fallback_queue"] == {"nodes": ["fallback"], "total": 3, "oldest_age_s": q["oldest_age_s"], "reporting": True,
                                        "silent": []}
        assert sum(q["counts"].values()) == 3 and set(q["counts"]) <= {"incoming", "active", "deferred"}
        assert 0 <= q["oldest_age_s"] < 120
        # qshape: a.example in all three messages, b.example in one; all younger than 5 minutes
        rows = {r[0]: r[1:] for r in q["shape"]["rows"]}
        assert rows == {"a.example": [3, 3, 0, 0, 0, 0, 0, 0, 0], "b.example": [1, 1, 0, 0, 0, 0, 0, 0, 0]}
        # the same data is what the members' health carries in ZooKeeper
        assert st["members"]["fallback"]["health"]["queue"]["data"]["total"] == 3

        # once deferred, the reason ("connection refused" from the closed relayhost) is on show
        def deferred() -> dict[str, Any] | None:
            st = status_json(lc.spec_path)
            q = st["queues"]["fallback"]
            return st if q["counts"].get("deferred") == 3 and q["top_deferral_reasons"] else None

        st = wait_for(deferred, 30, "3 deferred messages with a reason")
        assert "Connection refused" in st["queues"]["fallback"]["top_deferral_reasons"][0][0]

        text = hacluster("status", config=lc.spec_path)
        assert text.returncode == 0, text.stderr
        assert "** FallbackMX queue (fallback): 3 message(s) waiting" in text.stdout
        line = next(ln for ln in text.stdout.splitlines() if ln.startswith("fallback*"))
        assert line.split()[:7] == ["fallback*", "fallback", "3", "0", "0", "3", "0"]
        assert "Connection refused (5)" in line  # all 5 recipients deferred for that reason

        shape = hacluster("status", "--qshape", config=lc.spec_path)
        assert shape.returncode == 0, shape.stderr
        lines = shape.stdout.splitlines()
        assert lines[0].startswith("fallback (FallbackMX):")
        assert lines[1].split()[:3] == ["T", "0-5", "5-10"]
        assert lines[2].split() == ["TOTAL", "3", "3", "0", "0", "0", "0", "0", "0", "0"]
        assert lines[3].split() == ["a.example", "3", "3", "0", "0", "0", "0", "0", "0", "0"]

        m = metrics(lc.api_url("fallback", "/metrics"))
        assert m[("hacluster_queue_messages", (("queue", "deferred"),))] == 3
        assert m[("hacluster_queue_messages", (("queue", "hold"),))] == 0
        assert 0 <= m[("hacluster_queue_oldest_message_age_seconds", ())] < 300
        assert ("hacluster_queue_messages", (("queue", "deferred"),)) not in metrics(lc.api_url("store1", "/metrics"))
        rules_fire_on(lc, m, "fallback", tmp_path)

        pf.delete_all()  # live: the queue empties, and everything says so
        wait_for(lambda: status_json(lc.spec_path)["fallback_queue"]["total"] == 0, 30, "the queue to show empty")
        wait_for(lambda: metrics(lc.api_url("fallback", "/metrics"))[("hacluster_queue_messages", (("queue", "deferred"),))] == 0,
                 30, "the deferred gauge to drop to 0")
        assert "FallbackMX queue (fallback): empty" in hacluster("status", config=lc.spec_path).stdout

        lc.stop_proc("fallback")  # no heartbeat: the FallbackMX queue is unknown, and status says so
        st = wait_for(lambda: (s := status_json(lc.spec_path))["members"]["fallback"] is None and s, 30, "fallback to leave")
        assert st["fallback_queue"]["silent"] == ["fallback"] and st["queues"] == {}
        assert "FallbackMX queue of fallback: unknown (no heartbeat" in hacluster("status", config=lc.spec_path).stdout
    finally:
        if lc is not None:
            lc.cleanup()
        pf.stop()
