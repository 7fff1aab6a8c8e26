"""Token-bucket table: plain-Python twin of ``livechat._speedups.TokenTable``.

One bucket per key (a user id, a stream id); buckets of one *class* share a refill rate and a
burst, so a role change moves a user to another class without losing their bucket. Arithmetic is
IEEE double in the same order as the compiled twin, so both give bit-identical answers.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


class TokenTable:
    """Token buckets keyed by any hashable value.

    ``classes[i] = (tokens_per_second, burst)``; a class with rate <= 0 is unlimited and keeps no
    bucket. A new key starts full. Time is whatever monotonic seconds the caller passes; a clock
    step backwards refills nothing.
    """

    __slots__ = ("_buckets", "_bursts", "_rates")

    def __init__(self, classes: Sequence[tuple[float, float]]) -> None:
        if not classes:
            raise ValueError("TokenTable needs at least one class")
        rates: list[float] = []
        bursts: list[float] = []
        for rate, burst in classes:
            if rate > 0 and burst < 1:
                raise ValueError(f"burst must be >= 1 for a limited class, got {burst}")
            rates.append(float(rate))
            bursts.append(float(burst))
        self._rates = rates
        self._bursts = bursts
        # key -> [tokens, stamp, class]
        self._buckets: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _check_class(self, cls: int) -> None:
        if not 0 <= cls < len(self._rates):
            raise IndexError(f"token class {cls} out of range")

    def allow(self, key: Hashable, cls: int, now: float) -> bool:
        """Take one token from ``key``'s bucket; False (nothing taken) when it has less than one."""
        self._check_class(cls)
        rate = self._rates[cls]
        if rate <= 0.0:
            return True
        burst = self._bursts[cls]
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens = burst
        else:
            elapsed = now - bucket[1]
            if elapsed < 0.0:
                elapsed = 0.0
            tokens = bucket[0] + elapsed * rate
            if tokens > burst:
                tokens = burst
        if tokens < 1.0:
            return False
        if bucket is None:
            self._buckets[key] = [tokens - 1.0, now, float(cls)]
        else:
            bucket[0] = tokens - 1.0
            bucket[1] = now
            bucket[2] = float(cls)
        return True

    def allow_many(self, keys: Sequence[Hashable], classes: bytes | Sequence[int], now: float) -> bytearray:
        """``allow`` for each (key, class) pair in order; 1 = allowed, 0 = refused."""
        if len(keys) != len(classes):
            raise ValueError("keys and classes differ in length")
        out = bytearray(len(keys))
        allow = self.allow
        for i, key in enumerate(keys):
            if allow(key, classes[i], now):
                out[i] = 1
        return out

    def retry_after(self, key: Hashable, cls: int, now: float) -> float:
        """Seconds until ``key`` holds one token again (0.0 when it holds one now)."""
        self._check_class(cls)
        rate = self._rates[cls]
        if rate <= 0.0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        elapsed = now - bucket[1]
        if elapsed < 0.0:
            elapsed = 0.0
        tokens = bucket[0] + elapsed * rate
        if tokens >= 1.0:
            return 0.0
        return (1.0 - tokens) / rate

    def prune(self, now: float) -> int:
        """Drop buckets that have refilled to their burst (they hold no information); returns how many."""
        full = []
        for key, bucket in self._buckets.items():
            cls = int(bucket[2])
            elapsed = now - bucket[1]
            if elapsed < 0.0:
                elapsed = 0.0
            if bucket[0] + elapsed * self._rates[cls] >= self._bursts[cls]:
                full.append(key)
        for key in full:
            del self._buckets[key]
        return len(full)
