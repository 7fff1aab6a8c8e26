"""Circuit breaker around the moderation classifier.

CLOSED: calls go through; ``failure_threshold`` consecutive failures open it. OPEN: calls are
refused (the pipeline falls back to rules only) for ``open_s``. HALF_OPEN: one trial call is let
through; success closes the breaker, failure opens it again for another ``open_s``.
"""

from __future__ import annotations

from enum import StrEnum

from livechat.services.clock import Clock


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    __slots__ = ("_clock", "_failures", "_open_s", "_opened_at", "_state", "_threshold", "_trial_out")

    def __init__(self, failure_threshold: int, open_s: float, clock: Clock) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self._threshold = failure_threshold
        self._open_s = open_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_out = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock.monotonic() - self._opened_at >= self._open_s:
            self._state = BreakerState.HALF_OPEN
            self._trial_out = False
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now (in HALF_OPEN only the one trial call)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._trial_out = False

    def record_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock.monotonic()
        self._failures = 0
        self._trial_out = False
