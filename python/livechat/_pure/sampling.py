"""Deterministic comment sampling: plain-Python twin of ``livechat._speedups``.

Whether a comment is broadcast at a given keep fraction depends only on its id (a SplitMix64 hash),
so every edge that sees the comment makes the same choice without coordination, and a higher
fraction always keeps a superset of what a lower one keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

_MASK = (1 << 64) - 1
#: Keep fractions are given in parts per million.
PPM = 1_000_000


def mix64(value: int) -> int:
    """SplitMix64 finaliser of a 64-bit unsigned value."""
    if not 0 <= value <= _MASK:
        raise OverflowError(f"{value} is not a 64-bit unsigned value")
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def keep_sample(comment_id: int, keep_ppm: int) -> bool:
    """True when the comment is broadcast at a keep fraction of ``keep_ppm`` / 1 000 000."""
    return mix64(comment_id) % PPM < keep_ppm


def sample_mask(comment_ids: Sequence[int], keep_ppm: int) -> bytearray:
    """``keep_sample`` of each id: 1 = broadcast, 0 = store only."""
    out = bytearray(len(comment_ids))
    for i, comment_id in enumerate(comment_ids):
        if mix64(comment_id) % PPM < keep_ppm:
            out[i] = 1
    return out
