"""Integer helpers for power-of-two graph constructions (no floating-point logarithms)."""

from __future__ import annotations


def is_power_of_two(n: int) -> bool:
    """Integer test (no floating-point logarithms)."""
    return n >= 1 and (n & (n - 1)) == 0


def ceil_log2(n: int) -> int:
    """Smallest ``t`` with ``2**t >= n`` (integer arithmetic)."""
    return (n - 1).bit_length()
