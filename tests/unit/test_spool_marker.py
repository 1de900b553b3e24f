"""Owner marker: the fencing-token decision table and the file operations around it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacluster.spool.marker import (MARKER_NAME, Marker, MarkerCache, MarkerError, StaleToken, check, claim,
                                    read_marker, verdict)


@pytest.mark.parametrize("current, token, node, expected", [
    (None, 0, "a", "claim"),
    (None, 5, "a", "claim"),
    (Marker(5, "a"), 6, "b", "claim"),   # newer holder takes over
    (Marker(5, "a"), 6, "a", "claim"),   # same node, new term
    (Marker(5, "a"), 5, "a", "same"),    # restart of our own start
    (Marker(5, "a"), 5, "b", "stale"),   # a term is never shared: not a holder
    (Marker(5, "a"), 4, "b", "stale"),   # stale holder woke up
    (Marker(5, "a"), 4, "a", "stale"),   # even on the node that once held it
])
def test_verdict_table(current: Marker | None, token: int, node: str, expected: str) -> None:
    assert verdict(current, token, node) == expected


def test_claim_writes_then_refuses_older(tmp_path: Path) -> None:
    m = claim(tmp_path, 3, "store1")
    assert (m.token, m.node) == (3, "store1") and read_marker(tmp_path) == m
    assert claim(tmp_path, 3, "store1") == m  # idempotent
    claim(tmp_path, 4, "store2")
    with pytest.raises(StaleToken) as err:
        claim(tmp_path, 3, "store1")
    assert err.value.current.token == 4 and "owned by store2 with token 4" in str(err.value)
    assert read_marker(tmp_path).token == 4  # the refused claim changed nothing
    check(tmp_path, 4, "store2")
    with pytest.raises(StaleToken):
        check(tmp_path, 3, "store1")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic write left no debris


def test_corrupt_marker_is_an_error_not_free(tmp_path: Path) -> None:
    (tmp_path / MARKER_NAME).write_text("garbage")
    with pytest.raises(MarkerError):
        claim(tmp_path, 99, "x")
    assert (tmp_path / MARKER_NAME).read_text() == "garbage"


def test_marker_cache_sees_a_newer_claim(tmp_path: Path) -> None:
    cache = MarkerCache(tmp_path)
    assert cache.current() is None
    claim(tmp_path, 1, "a")
    cache.check(1, "a")
    claim(tmp_path, 2, "b")  # written by the other node (rename: new inode)
    with pytest.raises(StaleToken):
        cache.check(1, "a")
