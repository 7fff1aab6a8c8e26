"""Retrying a step until it succeeds or the worker stops: the workers never skip a batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from livechat.workers.metrics import WorkerMetrics
from livechat.workers.settings import RETRY_MAX_S, RETRY_MIN_S

log = logging.getLogger("livechat.workers")

T = TypeVar("T")


class Stopped(Exception):
    """The worker was asked to stop while a step was waiting to be retried."""


class Retrier:
    """Runs steps again after a failure, with a delay doubling from ``RETRY_MIN_S`` to
    ``RETRY_MAX_S``, until they succeed; raises ``Stopped`` once ``stop`` is set."""

    def __init__(self, stop: asyncio.Event, metrics: WorkerMetrics) -> None:
        self._stop = stop
        self._metrics = metrics

    def check(self) -> None:
        if self._stop.is_set():
            raise Stopped

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or raise ``Stopped`` as soon as the worker stops."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return
        raise Stopped

    async def run(
        self,
        step: str,
        fn: Callable[[], Awaitable[T]],
        retry_on: tuple[type[BaseException], ...],
    ) -> T:
        """``await fn()``; on one of ``retry_on``, log, wait and call it again."""
        delay = RETRY_MIN_S
        attempt = 0
        while True:
            self.check()
            try:
                return await fn()
            except retry_on as exc:
                attempt += 1
                self._metrics.retry(step)
                log.warning(
                    "%s worker: %s failed (attempt %d, again in %.1f s): %s",
                    self._metrics.worker,
                    step,
                    attempt,
                    delay,
                    exc,
                    extra={"event": "worker_retry", "step": step, "attempt": attempt},
                )
            await self.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
