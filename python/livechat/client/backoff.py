"""Reconnect delays: exponential growth with full jitter."""

from __future__ import annotations

import random


class Backoff:
    """Delay before attempt n (0-based) is uniform in ``[0, min(max_s, initial_s * factor**n)]``.

    Full jitter spreads a crowd of clients that lost the same server over the whole window, so a
    restarted server sees a ramp rather than every viewer in one millisecond; the cap bounds how
    long a client waits once the server is back. ``reset()`` after a connection that worked.
    """

    __slots__ = ("_attempt", "_factor", "_initial", "_max", "_rng")

    def __init__(
        self, initial_s: float, max_s: float, factor: float, rng: random.Random | None = None
    ) -> None:
        if not (initial_s > 0 and max_s >= initial_s and factor >= 1):
            raise ValueError(
                f"backoff needs 0 < initial ({initial_s}) <= max ({max_s}) and factor ({factor}) >= 1"
            )
        self._initial = initial_s
        self._max = max_s
        self._factor = factor
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Attempts made since the last reset."""
        return self._attempt

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` can draw."""
        # Exponent capped so a long outage never overflows a float.
        return min(self._max, self._initial * self._factor ** min(attempt, 64))

    def next_delay(self) -> float:
        delay = self._rng.uniform(0.0, self.ceiling(self._attempt))
        self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0
