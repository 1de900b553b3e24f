"""Counter-based pseudo-randomness: a value is a hash of its key, not the next draw of a stream.

That is what lets two engines that visit messages in different orders make identical choices.
splitmix64 finalizer (Steele, Lea, Flood 2014): cheap and well mixed.
"""

from __future__ import annotations

_M64 = (1 << 64) - 1


def mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def draw(seed: int, a: int, b: int, c: int, d: int, e: int) -> int:
    """A 64-bit value determined by (seed, a, b, c, d, e)."""
    x = mix64(seed & _M64)
    for v in (a, b, c, d, e):
        x = mix64(x ^ (v & _M64))
    return x


def uniform(seed: int, a: int, b: int = 0) -> float:
    """A float in [0, 1) determined by (seed, a, b)."""
    return (draw(seed, a, b, 0, 0, 0) >> 11) * (1.0 / (1 << 53))
