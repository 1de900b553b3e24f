"""timing.renew_s: the holder renews as seldom as still leaves room for one renewal that fails
outright and a retry one loop later before its deadline; never more often than once a loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hacluster.timing import PROFILES, Timing, timing_problems


@pytest.mark.parametrize("name,every", [("default", 0.35), ("fast", 0.11), ("relaxed", 1.5)])
def test_profiles(name: str, every: float) -> None:
    assert PROFILES[name].renew_s == pytest.approx(every)


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
