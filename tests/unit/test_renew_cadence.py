"""timing.renew_s: the holder renews as seldom as still leaves room for one renewal that fails
outright and a retry one loop later before its deadline, and for a ZooKeeper stall of stall_s;
never more often than once a loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hacluster.timing import PROFILES, Timing, timing_problems


@pytest.mark.parametrize("name,every", [("default", 1.05), ("fast", 0.11), ("relaxed", 1.5)])
def test_profiles(name: str, every: float) -> None:
    assert PROFILES[name].renew_s == pytest.approx(every)


def test_default_holder_writes_under_once_a_second_and_rides_out_a_half_second_stall() -> None:
    """Issue 14 (<= 1 ZooKeeper write/s per idle agent: the heartbeat rides the renewal) and
    issue 19 (bench false-failover's zk-gc load pauses a server up to 500 ms)."""
    t = PROFILES["default"]
    assert 1 / t.renew_s <= 1.0 and t.stall_s >= 0.5 and not timing_problems(t)
    assert t.renew_s + max(t.loop_s, t.request_timeout_s) + t.stall_s <= t.holder_validity_s + 1e-9


@given(lease=st.floats(0.2, 60), loop=st.floats(0.01, 10), rt=st.floats(0.005, 5), margin=st.floats(0.01, 30),
       stall=st.floats(0, 10))
def test_a_stall_of_stall_s_and_the_resend_fit_before_the_deadline(lease: float, loop: float, rt: float, margin: float,
                                                                   stall: float) -> None:
    t = Timing(lease_s=lease, loop_s=loop, request_timeout_s=rt, margin_s=margin, stop_timeout_s=0.0, max_drift=0.0,
               stall_s=stall)
    if timing_problems(t):
        return  # config check refuses it
    # the renewal sent when due is stuck stall_s; the next attempt goes out within
    # max(loop, rt) - rt of the stall's end, is adopted and sent again at once, landing within rt
    # (a stall no longer than request_timeout_s is a failed renewal: every loop where (L) is all there is)
    assert (t.renew_s == t.loop_s and stall <= rt) or t.renew_s + stall + max(loop, rt) - rt + rt <= t.holder_validity_s + 1e-9


def test_config_check_names_a_stall_the_lease_cannot_ride_out() -> None:
    t = PROFILES["fast"].replace(stall_s=0.5)
    assert [k for k, _ in timing_problems(t)] == ["stall_s"]
    assert "stall_s (0.5) leaves no room" in timing_problems(t)[0][1]
    assert not timing_problems(PROFILES["fast"].replace(stall_s=0.04))  # within request_timeout_s: nothing new


@given(lease=st.floats(0.2, 60), loop=st.floats(0.01, 10), rt=st.floats(0.005, 5), margin=st.floats(0.01, 30))
def test_a_failed_renewal_and_its_retry_fit_before_the_deadline(lease: float, loop: float, rt: float, margin: float) -> None:
    t = Timing(lease_s=lease, loop_s=loop, request_timeout_s=rt, margin_s=margin, stop_timeout_s=0.0, max_drift=0.0)
    if timing_problems(t):
        return  # config check refuses it
    assert t.renew_s >= t.loop_s
    # renewing less often than every loop only where a timed-out renewal and its retry (sent when
    # the loop runs again: after loop_s, or after the timeout if that is longer) still fit
    retry_lands = t.renew_s + max(t.loop_s, t.request_timeout_s) + t.request_timeout_s
    assert t.renew_s == t.loop_s or retry_lands <= t.holder_validity_s + 1e-9
    # which includes what inequality (L) promises a single renewal: 2 request timeouts to land
    assert t.renew_s == t.loop_s or t.renew_s + 2 * t.request_timeout_s <= t.holder_validity_s + 1e-9
