"""The invariant monitor's sampler survives a host dropped or reopened while it samples.

On the docker machines the drill's thread drops a powered-off container's reader (its namespace must
be freed) and reopens it at power-on, while the sampler thread iterates the readers: iterating the
dict itself raised "dictionary changed size during iteration" and killed the sampler mid-drill
(store-holder-power-off then saw no holder at all)."""

from __future__ import annotations

from typing import Any

from hacluster_lab.lab.monitor import InvariantMonitor, MonitorTarget


class Reader:
    """A host's netlink reader stand-in; `on_read` runs inside addresses(), as a concurrent drop would."""

    def __init__(self, on_read: Any = None) -> None:
        self.on_read = on_read
        self.closed = False

    def addresses(self) -> list[tuple[int, str]]:
        if self.on_read is not None:
            self.on_read()
        return []

    def links(self) -> dict:
        return {}

    def close(self) -> None:
        self.closed = True


def test_a_drop_during_a_snapshot() -> None:
    mon = InvariantMonitor(MonitorTarget((("store1", "ns1"), ("store2", "ns2")), ("198.51.100.20",), "router"))

    def power_off() -> None:  # what the drill's thread does meanwhile
        mon.drop("store2")

    dropped = Reader()
    mon._readers = {"store1": Reader(power_off), "store2": dropped}
    snap = mon.snapshot()
    assert snap.holders == {"198.51.100.20": {}}
    assert "store2" not in mon._readers and dropped.closed
