"""bench false-failover's counting (hacluster_lab.bench.moves.count_moves): a table of timelines."""

from __future__ import annotations

import pytest

from hacluster_lab.bench.falsefailover import MATCHING_ADVERT_S, with_profile
from hacluster_lab.bench.loads import LoadParams
from hacluster_lab.bench.moves import count_moves
from hacluster.spec import default_spec_text, parse_spec

A, B = ("store1",), ("store2",)
AB = ("store1", "store2")
NONE: tuple[str, ...] = ()

# (timeline, start, end) -> (unplanned moves, gap total s, gaps, dual-holder s)
CASES = [
    pytest.param([(0, A)], 0, 60, (0, 0.0, 0, 0.0), id="steady holder"),
    pytest.param([(0, A), (10, B)], 0, 60, (1, 0.0, 0, 0.0), id="direct move"),
    pytest.param([(0, A), (10, NONE), (10.4, B)], 0, 60, (1, 0.4, 1, 0.0), id="move through a gap"),
    pytest.param([(0, A), (10, NONE), (10.25, A)], 0, 60, (0, 0.25, 1, 0.0), id="gap, same holder back: no move"),
    pytest.param([(0, A), (10, AB), (10.5, B)], 0, 60, (1, 0.0, 0, 0.5), id="overlap then move: dual counted apart"),
    pytest.param([(0, A), (10, AB), (10.5, A)], 0, 60, (0, 0.0, 0, 0.5), id="overlap, same holder stays"),
    pytest.param([(0, A), (5, NONE), (5.5, B), (20, NONE), (20.2, A)], 0, 60, (2, 0.7, 2, 0.0), id="there and back"),
    pytest.param([(0, A), (50, NONE)], 0, 60, (0, 10.0, 1, 0.0), id="gap open at the end runs to the end"),
    pytest.param([(0, NONE), (2, A)], 0, 60, (0, 2.0, 1, 0.0), id="no holder at start: first holder is no move"),
    pytest.param([(-5, A), (-1, B), (10, A)], 0, 60, (1, 0.0, 0, 0.0), id="before start only sets the state"),
    pytest.param([(0, A), (70, B)], 0, 60, (0, 0.0, 0, 0.0), id="after end ignored"),
    pytest.param([(10, B), (0, A)], 0, 60, (1, 0.0, 0, 0.0), id="unsorted input"),
    pytest.param([], 0, 60, (0, 0.0, 0, 0.0), id="empty timeline"),
    pytest.param([(0, A), (1, A), (2, A), (3, B), (4, B)], 0, 60, (1, 0.0, 0, 0.0), id="raw samples, repeats"),
]


@pytest.mark.parametrize("timeline,start,end,want", CASES)
def test_count_moves(timeline, start, end, want) -> None:
    c = count_moves(timeline, start, end)
    assert (c.unplanned_moves, c.vip_gap_s_total, len(c.gaps), c.dual_holder_s) == pytest.approx(want)


def test_moves_name_from_and_to() -> None:
    c = count_moves([(100, A), (103, NONE), (103.3, B)], 100, 160)
    assert [m.to_dict(100) for m in c.moves] == [{"t_s": 3.3, "from": "store1", "to": "store2"}]
    assert c.first_holder == "store1" and c.last_holder == "store2" and c.vip_gap_s_max == pytest.approx(0.3)


def test_end_before_start_is_refused() -> None:
    with pytest.raises(ValueError, match="before start"):
        count_moves([], 10, 5)


@pytest.mark.parametrize("profile", ["default", "fast"])
def test_with_profile_runs_that_profile(profile: str) -> None:
    text = default_spec_text().replace("timing:\n", "timing:\n  lease_s: 7.0\n", 1)
    spec = parse_spec(with_profile(text, profile), "<test>")
    from hacluster.timing import PROFILES

    assert spec.timing.lease_s == PROFILES[profile].lease_s  # an explicit key beside it is dropped


def test_matching_advert_and_load_bounds() -> None:
    assert MATCHING_ADVERT_S["default"] == 1.0 and MATCHING_ADVERT_S["fast"] == 0.1
    p = LoadParams()
    assert p.describe("cpu") == {"cores": 1, "hogs_per_core": 2}
    assert p.describe("io")["file_mib"] == 64
    assert all(100 <= ms <= 1000 for ms in p.pauses_ms)  # "a few hundred ms"
