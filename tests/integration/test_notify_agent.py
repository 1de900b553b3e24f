"""Notifications as the agent will use them: the spec's `notify:` section (validated with the
spec reader, FILE:LINE: field errors), and `AgentNotifier` delivering a role transition as mail
through the cluster's relays to a real Postfix on loopback (MX 10 down, so MX 20 takes it) that
delivers into a Maildir, plus a keepalived-style script hook; calls never block the caller."""

from __future__ import annotations

import time
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from hacluster import spec as specmod
from hacluster.yamlread import Reader
from hacluster.notify import AgentNotifier, NotifyConfig, read_notify

from .loopback_postfix import start_postfix

SMTP_PORT = 26225
# relay1 (MX 10) on 127.0.0.2, where nothing listens on SMTP_PORT; relay2 (MX 20) on 127.0.0.1: the Postfix
SPEC = """\
cluster: ho-notify
mail: {domain: lab.example, admin: postmaster@lab.example}
zookeeper: {hosts: ["127.0.0.1:2181"]}
roles:
  store: {tier: store}
nodes:
  - {name: relay1, tier: relay, interface: lo, addresses: [127.0.0.2/8], mx_preference: 10}
  - {name: relay2, tier: relay, interface: lo, addresses: [127.0.0.1/8], mx_preference: 20}
  - {name: store1, tier: store, interface: lo, addresses: [127.0.0.24/8], priority: 100}
"""


def read(text: str, source: str = "c.yml") -> tuple[NotifyConfig | None, list[str]]:
    """read_notify exactly as spec.parse_spec will call it: same reader, same root, mail.admin."""
    root = YAML(typ="rt").load(text)
    r = Reader(source)
    mail = root.get("mail") or {}
    cfg = read_notify(r, root, mail.get("admin"))
    return cfg, r.render()


def test_a_valid_section_with_every_key() -> None:
    cfg, problems = read(SPEC + """\
notify:
  sender: hacluster@lab.example
  smtp_port: 2525
  smtp_timeout_s: 2
  sendmail: null
  outbox: "{state_dir}/outbox-{node}"
  scripts: [/etc/hacluster/notify.sh, /usr/local/bin/page-me]
  script_timeout_s: 3.5
""")
    assert problems == []
    assert cfg == NotifyConfig("postmaster@lab.example", "hacluster@lab.example", 2525, 2.0, None,
                               "{state_dir}/outbox-{node}", ("/etc/hacluster/notify.sh", "/usr/local/bin/page-me"), 3.5)


def test_absent_means_off_and_empty_means_defaults() -> None:
    assert read(SPEC) == (None, [])
    cfg, problems = read(SPEC + "notify:\n")
    assert problems == [] and cfg == NotifyConfig("postmaster@lab.example")
    assert cfg.sendmail == "/usr/sbin/sendmail" and cfg.outbox == "{state_dir}/notify-outbox"


def test_every_problem_is_reported_with_file_line_and_field() -> None:
    text = SPEC.replace("admin: postmaster@lab.example", "admin: postmaster") + """\
notify:
  sender: not an address
  smtp_port: 70000
  smtp_timeout_s: 0
  sendmail: sendmail
  outbox: "{home}/outbox"
  scripts:
    - relative/notify.sh
    - 7
  script_timeout_s: true
  retries: 3
"""
    cfg, problems = read(text, "cluster.yml")
    assert problems == [
        "cluster.yml:2: mail.admin: must be one mail address like ops@example.org",
        "cluster.yml:11: notify.sender: must be one mail address like ops@example.org",
        "cluster.yml:12: notify.smtp_port: must be 1..65535",
        "cluster.yml:13: notify.smtp_timeout_s: must be > 0 and <= 60",
        "cluster.yml:14: notify.sendmail: must be an absolute path",
        "cluster.yml:15: notify.outbox: unknown placeholder {home} (known: {cluster}, {node}, {state_dir})",
        "cluster.yml:17: notify.scripts[0]: relative/notify.sh: notify scripts need an absolute path",
        "cluster.yml:18: notify.scripts[1]: must be a path, got int 7",
        "cluster.yml:19: notify.script_timeout_s: must be float, got bool True",
        "cluster.yml:20: notify.retries: unknown key (allowed: outbox, script_timeout_s, scripts, sender, sendmail, "
        "smtp_port, smtp_timeout_s)",
    ]


@pytest.mark.parametrize("section,problem", [
    ("notify: [a]\n", "c.yml:10: notify: must be a mapping, got a list"),
    ("notify: {scripts: /x.sh}\n", "c.yml:10: notify.scripts: must be a list of absolute paths"),
])
def test_wrong_shapes(section: str, problem: str) -> None:
    assert problem in read(SPEC + section)[1]


def test_nothing_to_notify_without_admin_or_scripts() -> None:
    text = SPEC.replace(", admin: postmaster@lab.example", "") + "notify: {sendmail: null}\n"
    assert read(text)[1] == ["c.yml:10: notify: nothing to notify: set mail.admin (where the mail goes) or notify.scripts"]
    cfg, problems = read(text.replace("{sendmail: null}", "{scripts: [/bin/true]}"))
    assert problems == [] and cfg is not None and cfg.admin is None


def spec_with(cfg: NotifyConfig) -> Any:
    """The spec as parse_spec will return it once it reads `notify:` (ClusterSpec.notify)."""
    import dataclasses

    base = specmod.parse_spec(SPEC, "notify.yml")
    if "notify" in {f.name for f in dataclasses.fields(base)}:
        return dataclasses.replace(base, notify=cfg)
    ns = type("Spec", (), {})()  # until spec.py has the field: the same attributes plus notify
    ns.__dict__.update({f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, notify=cfg,
                       node=base.node)
    return ns


def test_disabled_without_a_section(tmp_path: Path) -> None:
    n = AgentNotifier.from_spec(specmod.parse_spec(SPEC, "notify.yml"), "store1", tmp_path)
    n.start()
    assert not n.enabled and n.transition("store", "acquired", term=3) is False and n.alarm("raid", "x") is False
    assert n.health({"raid": {"severity": "warn", "detail": "md0 degraded"}}) == ["raid"]  # tracked, nothing sent
    n.stop()


def test_health_alarms_only_on_severity_changes_and_holder_checks_only_while_holding(tmp_path: Path) -> None:
    n = AgentNotifier(None, "store1")  # disabled: tracks and reports, sends nothing
    spool_bad = {"spool": {"severity": "crit", "scope": "holder", "detail": "not mounted"},
                 "raid": {"severity": "ok", "scope": "node", "detail": "clean"}}
    assert n.health(spool_bad, holding=False) == []  # a standby has no spool: no alarm
    assert n.health(spool_bad, holding=True) == ["spool"]  # a holder without its spool: alarm
    assert n.health(spool_bad, holding=True) == []  # unchanged: quiet
    assert n.health({**spool_bad, "raid": {"severity": "warn", "scope": "node", "detail": "md0 degraded"}}) == ["raid"]
    assert n.health({"raid": {"severity": "ok", "scope": "node"}, "spool": {"severity": "ok", "scope": "holder"}}) == ["raid", "spool"]
    assert n.health({"spool": {"severity": "crit", "scope": "holder"}}, holding=False) == []  # released: forgotten
    assert n.health({"spool": {"severity": "ok", "scope": "holder"}}, holding=True) == []  # first sight again, ok
    assert n.health({"x": "garbage", "y": {"severity": "bad"}, "z": None}) == []
    assert n.health("not a mapping") == []  # type: ignore[arg-type]


def test_transition_mail_reaches_a_real_postfix_via_the_second_relay_and_the_script_runs(tmp_path: Path) -> None:
    hook_out = tmp_path / "hook.log"
    hook = tmp_path / "notify.sh"
    hook.write_text(f'#!/bin/sh\necho "$* node=$HACLUSTER_NODE detail=$HACLUSTER_DETAIL" >> {hook_out}\n')
    hook.chmod(0o755)
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 1\n")
    slow.chmod(0o755)
    pf = start_postfix(SMTP_PORT, deliver_domain="lab.example", prefix="ho-nt-")
    n = None
    try:
        cfg = NotifyConfig("postmaster@lab.example", "hacluster@lab.example", SMTP_PORT, 2.0, None,
                           "{state_dir}/outbox", (str(hook), str(slow)), 5.0)
        n = AgentNotifier.from_spec(spec_with(cfg), "store1", tmp_path)
        assert n.enabled and n.notifier is not None and n.notifier.outbox == tmp_path / "outbox"
        n.start()
        t0 = time.monotonic()
        assert n.transition("store", "acquired", "store1", term=7)
        calls = [n.transition("store", "released", term=7, reason="switchover to store2") for _ in range(5)]
        assert n.health({"raid": {"severity": "ok", "detail": "md0 clean"}}) == []  # first sight, ok: quiet
        assert n.health({"raid": {"severity": "warn", "detail": "md0 degraded"}}) == ["raid"]
        took = time.monotonic() - t0
        assert all(calls) and took < 0.1, f"the agent's calls took {took:.3f}s while the worker runs scripts"
        assert n.notifier.flush(30)
        end = time.monotonic() + 30
        while not pf.delivered() and time.monotonic() < end:
            time.sleep(0.1)
        mails = [message_from_bytes(m) for m in pf.delivered()]
        assert mails, "no mail delivered\n" + pf.log()
        first = mails[0]
        assert first["To"] == "postmaster@lab.example" and first["From"] == "hacluster@lab.example"
        assert first["Subject"].startswith("[hacluster ho-notify] store1: ")
        assert first["Auto-Submitted"] == "auto-generated"
        body = "".join(m.get_payload(decode=True).decode() for m in mails)
        assert "store1 acquired store, term 7" in body and "MASTER" in body
        assert "store1 released store, term 7: switchover to store2" in body and "BACKUP" in body
        assert "alarm raid" in body and "WARN" in body and "ok -> warn: md0 degraded" in body
        # relay1 (MX 10) was tried first and refused; relay2 (MX 20) took it
        d = n.notifier.deliveries[0]
        assert (d.via, d.target) == ("smtp", f"127.0.0.1:{SMTP_PORT}") and f"127.0.0.2:{SMTP_PORT}" in d.error
        lines = hook_out.read_text().splitlines()
        assert lines[0] == "ROLE store MASTER 100 node=store1 detail=store1 acquired store, term 7"
        assert lines[1].startswith("ROLE store BACKUP 100 node=store1")
        assert lines[-1] == "ALARM raid WARN 100 node=store1 detail=ok -> warn: md0 degraded"
        assert len(lines) == 7
    finally:
        if n is not None:
            n.stop(5)
        pf.stop()
