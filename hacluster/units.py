"""Durations and rates as operators write them ("5m", "4h30m", "600/h"): one parser for the
scenario and drill files and the CLI's lifetimes."""

from __future__ import annotations

import math
import re
from typing import Any

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$|^\d+(?:\.\d+)?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smhdw])\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from 300, 2.5, "300s", "5m", "3h", "4h30m", "5d", "1w" (bare numbers are seconds)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 300, 5m, 3h or 5d")
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value):
            raise ValueError("must be >= 0")
        return float(value)
    text = str(value).replace(" ", "")
    if not _DURATION.match(text):
        raise ValueError(f"must be a duration like 300, 5m, 3h, 4h30m or 5d, got {value!r}")
    return sum(float(n) * _UNITS[u or "s"] for n, u in _DURATION_PART.findall(text))


def parse_rate(value: Any) -> float:
    """Messages per second from 2, "600/h", "10/m", "50000/d"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be > 0")
        return float(value)
    m = _RATE.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"must be a rate like 600/h or 2/s (bare numbers: per second), got {value!r}")
    return float(m.group(1)) / _UNITS[m.group(2)]
