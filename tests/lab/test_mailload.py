"""The mail ledger against the lab's real Postfix: MX order like a real sender (relay1, then relay2
when relay1 is off), direct VIP submission, background start/stop, audit of every store."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from hacluster_lab.lab.lab import Lab
from hacluster_lab.lab.mailload import MailLoad, audit

from .running import running_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

STATE = Path("/run/hacluster-lab-hn-ml")
VIP = "198.51.100.20"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(STATE, "hn-", agents=False, store_mta=True)


def test_mx_submission_goes_to_primary_mx_and_every_message_arrives_once(lab: Lab) -> None:
    subs = MailLoad(lab, "mx", size=3000).send(12, timeout_s=60)
    assert len(subs) == 12 and all(s.accepted and s.code == 250 for s in subs)
    assert {s.target for s in subs} == {"192.0.2.11"}  # MX 10 relay1
    assert len({s.msgid for s in subs}) == 12
    led = audit(lab, subs, wait_s=60)
    assert (led.accepted, led.delivered_once, led.lost, led.duplicates) == (12, 12, 0, 0), led.to_dict()
    assert led.by_store == {"store1": 12} and led.settled


def test_mx_falls_back_to_relay2_when_relay1_is_off(lab: Lab) -> None:
    lab.fault("relay1", "power-off")
    try:
        subs = MailLoad(lab, "mx", size=500, timeout_s=1.0).send(3, timeout_s=60)
    finally:
        lab.fault("relay1", "power-on")
    assert [s.target for s in subs] == ["192.0.2.12"] * 3 and all(s.accepted for s in subs)
    assert audit(lab, subs, wait_s=60).delivered_once == 3


def test_background_load_to_vip_and_lost_mail_is_counted(lab: Lab) -> None:
    load = MailLoad(lab, VIP, rate_per_s=50, size=10_000).start()
    assert load.wait(1.0) is False  # still sending
    subs = load.stop()
    assert subs and all(s.accepted and s.target == VIP for s in subs)
    assert len(subs) <= 60  # rate-limited: ~50/s
    # remove one delivered file: the ledger must call that message lost
    led = audit(lab, subs, wait_s=30)
    assert led.lost == 0 and led.delivered_once == len(subs)
    victim = subs[0].msgid
    for base in lab.maildirs().values():
        for f in list(base.glob("*/new/*")) + list(base.glob("*/cur/*")):
            if victim.encode() in f.read_bytes()[:4096]:
                f.unlink()
    led = audit(lab, subs, wait_s=2, settle_s=0.5)
    assert led.lost == 1 and led.lost_msgids == [victim]


def test_refused_recipient_is_not_accepted(lab: Lab) -> None:
    subs = MailLoad(lab, VIP, rcpt="nosuch@lab.example").send(2, timeout_s=30)
    assert [s.accepted for s in subs] == [False, False] and all(s.code and s.code >= 500 for s in subs)
    led = audit(lab, subs, wait_s=1, settle_s=0.2)
    assert (led.accepted, led.not_accepted, led.lost) == (0, 2, 0)
