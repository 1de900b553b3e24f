"""graceful.py rules 20-22 as a table (the drain's timing), and the /proc/net/tcp count it uses."""

from __future__ import annotations

import pytest

from hacluster.graceful import Cause, drain_end, drain_step, established
from hacluster.resources.smtp_drain import close_rules, table_name

# (cause, now, until, started, in_flight, drain_max_s, reserve_s) -> (close, stop, rule)
ROWS = [
    # rule 20: forced by the lease: never wait, never bother closing
    (Cause.EXPIRED, 10.0, 10.5, 10.0, 3, 1.0, 0.1, False, True, "rule 20"),
    (Cause.TAKEN, 10.0, 10.5, 10.0, 3, 1.0, 0.1, False, True, "rule 20"),
    (Cause.RELEASE, 10.6, 10.5, 10.0, 3, 1.0, 0.1, False, True, "rule 20"),  # deadline passed mid-drain
    (Cause.CUT_OFF, 10.5, 10.5, 10.0, 1, 1.0, 0.1, False, True, "rule 20"),
    # rule 21: release with time left
    (Cause.RELEASE, 10.0, 10.7, 10.0, 0, 1.0, 0.1, True, True, "rule 21"),  # nothing in flight: stop now
    (Cause.RELEASE, 10.0, 10.7, 10.0, 2, 1.0, 0.1, True, False, "rule 21"),  # wait for the 2 sessions
    (Cause.RELEASE, 10.55, 10.7, 10.0, 2, 1.0, 0.1, True, False, "rule 21"),  # still 0.05 s before until - reserve
    (Cause.RELEASE, 10.6, 10.7, 10.0, 2, 1.0, 0.1, True, True, "deadline - reserve"),  # the deadline wins
    (Cause.RELEASE, 10.99, 12.0, 10.0, 1, 1.0, 0.1, True, False, "rule 21"),  # renewed: drain_max_s bounds it
    (Cause.RELEASE, 11.0, 12.0, 10.0, 1, 1.0, 0.1, True, True, "drain_max_s"),
    (Cause.RELEASE, 10.0, 12.0, 10.0, 5, 0.0, 0.1, False, True, "disabled"),
    # rule 22: cut off from ZooKeeper, deadline ahead: close, keep the VIP until the deadline
    (Cause.CUT_OFF, 10.0, 10.5, 10.0, 2, 1.0, 0.1, True, False, "rule 22"),
    (Cause.CUT_OFF, 10.45, 10.5, 10.0, 0, 1.0, 0.1, True, False, "rule 22"),
]


@pytest.mark.parametrize("cause,now,until,started,n,max_s,reserve,close,stop,why", ROWS)
def test_drain_table(cause: Cause, now: float, until: float, started: float, n: int, max_s: float, reserve: float,
                     close: bool, stop: bool, why: str) -> None:
    step = drain_step(cause, now, until, started, n, max_s, reserve)
    assert (step.close, step.stop) == (close, stop), step
    assert why in step.why


def test_a_release_drain_never_outlasts_the_deadline() -> None:
    """Whatever drain_max_s says and however many sessions stay open, rule 21 stops by until - reserve."""
    for until in (10.2, 10.5, 11.0, 30.0):
        end = drain_end(10.0, until, 60.0, 0.1)
        assert end <= until - 0.1
        assert drain_step(Cause.RELEASE, end, until, 10.0, 9, 60.0, 0.1).stop


PROC = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 146433C6:0019 0B00000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 146433C6:0019 0C00000A:C351 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 146433C6:0019 0C00000A:C352 06 00000000:00000000 00:00000000 00000000     0        0 4 1
   4: 0100007F:0019 0100007F:C353 01 00000000:00000000 00:00000000 00000000     0        0 5 1
"""


def test_established_sessions_on_the_vip_port_only() -> None:
    assert established(PROC, "198.51.100.20") == 2  # listener (0A) and TIME_WAIT (06) do not count
    assert established(PROC, "127.0.0.1") == 1
    assert established(PROC, "127.0.0.1", 587) == 0


def test_close_rules_refuse_only_new_connections_to_the_vips() -> None:
    text = close_rules("store", ["198.51.100.20", "fd00:2::20"])
    assert f"delete table inet {table_name('store')}" in text  # closing twice leaves one rule set
    assert "ip daddr 198.51.100.20 tcp dport 25 tcp flags & (syn | ack) == syn reject with tcp reset" in text
    assert "ip6 daddr fd00:2::20 tcp dport 25" in text
