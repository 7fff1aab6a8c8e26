"""POSTing notifications to an HTTP webhook: a bounded queue, a few senders, retries with backoff.

Each body is POSTed as ``application/json`` (urllib on a worker thread: no HTTP client dependency,
TLS and proxies as the standard library does them). A 2xx answer delivers it. A connection error, a
timeout, a 5xx, 408 or 429 is retried after a delay doubling from ``RETRY_MIN_S`` to ``RETRY_MAX_S``,
up to ``WEBHOOK_ATTEMPTS`` attempts; any other 4xx is final (the receiver refuses that body). A body
that was not delivered is logged and counted as ``webhook_dropped``: the notifications topic still
holds it for a consumer that must see every one.

``deliver`` returns when every body it was given is delivered or dropped; while the queue is full
it waits, so a slow webhook slows the worker down instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence

from livechat.workers.metrics import WorkerMetrics
from livechat.workers.retry import Retrier, Stopped
from livechat.workers.settings import (
    RETRY_MAX_S,
    RETRY_MIN_S,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_CONCURRENCY,
    WEBHOOK_QUEUE,
    WEBHOOK_TIMEOUT_S,
)

log = logging.getLogger("livechat.workers")

# Answers worth another attempt besides 5xx: request timeout, too many requests.
_RETRY_STATUS = frozenset({408, 429})


def post_json(url: str, body: bytes, timeout_s: float) -> int:
    """POST ``body``; the HTTP status, or 0 when no answer came (connection refused, timeout)."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(OSError):
            exc.read()
        return int(exc.code)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        log.debug("webhook %s: %s", url, exc)
        return 0


class WebhookSender:
    """Delivers JSON bodies to one URL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        metrics: WorkerMetrics,
        retrier: Retrier,
        *,
        queue: int = WEBHOOK_QUEUE,
        concurrency: int = WEBHOOK_CONCURRENCY,
        timeout_s: float = WEBHOOK_TIMEOUT_S,
        attempts: int = WEBHOOK_ATTEMPTS,
    ) -> None:
        self.url = url
        self._metrics = metrics
        self._retrier = retrier
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[bool]]] = asyncio.Queue(queue)
        loop = asyncio.get_running_loop()
        self._senders = [loop.create_task(self._send_loop()) for _ in range(concurrency)]

    async def deliver(self, bodies: Sequence[bytes]) -> list[bool]:
        """POST every body; per body, True when delivered, False when dropped."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bool]] = []
        for body in bodies:
            future: asyncio.Future[bool] = loop.create_future()
            await self._queue.put((body, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def _send_loop(self) -> None:
        while True:
            body, future = await self._queue.get()
            try:
                delivered = await self._post(body)
            except Stopped as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(delivered)

    async def _post(self, body: bytes) -> bool:
        delay = RETRY_MIN_S
        status = 0
        for attempt in range(1, self._attempts + 1):
            status = await asyncio.to_thread(post_json, self.url, body, self._timeout_s)
            if 200 <= status < 300:
                self._metrics.event("webhook_sent")
                return True
            if 400 <= status < 500 and status not in _RETRY_STATUS:
                break
            if attempt < self._attempts:
                self._metrics.retry("webhook")
                await self._retrier.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        self._metrics.event("webhook_dropped")
        log.warning(
            "notify worker: webhook %s refused a notification (status %s after %d attempt(s)); "
            "it stays in the notifications topic",
            self.url,
            status or "no answer",
            attempt,
            extra={"event": "webhook_dropped", "status": status},
        )
        return False

    async def aclose(self) -> None:
        for task in self._senders:
            task.cancel()
        for task in self._senders:
            with contextlib.suppress(asyncio.CancelledError):
                await task
