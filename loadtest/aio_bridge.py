"""An asyncio event loop on a real OS thread inside a locust (gevent) process.

Locust runs users as greenlets; livechat's client (picows) runs on asyncio. One uvloop loop per
locust process owns every WebSocket; greenlets hand it coroutines and wait for the results on a
gevent ``AsyncResult``. The only cross-thread wake-up is gevent's async watcher, which its docs name
as the thread-safe way to wake a hub from another thread (an AsyncResult itself is not thread-safe,
so it is only ever touched on the gevent side).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.monkey
import uvloop

T = TypeVar("T")


class AsyncioThread:
    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._results: deque[tuple[gevent.event.AsyncResult, bool, Any]] = deque()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._deliver)
        # The original (unpatched) thread start: a gevent "thread" would be a greenlet. Callbacks
        # submitted before the loop runs wait in its queue.
        start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")
        start_new_thread(self._run, ())

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> gevent.event.AsyncResult:
        """Run ``coro`` on the loop; the returned AsyncResult is for greenlets to wait on."""
        result = gevent.event.AsyncResult()

        def start() -> None:
            task = self.loop.create_task(coro)
            task.add_done_callback(lambda t: self._finished(result, t))

        self.loop.call_soon_threadsafe(start)
        return result

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` and wait for it from a greenlet (other greenlets keep running)."""
        value: T = self.submit(coro).get(timeout=timeout)
        return value

    def _finished(self, result: gevent.event.AsyncResult, task: asyncio.Task[Any]) -> None:
        # On the asyncio thread: queue the outcome, then wake the gevent hub.
        if task.cancelled():
            self._results.append((result, False, asyncio.CancelledError()))
        elif task.exception() is not None:
            self._results.append((result, False, task.exception()))
        else:
            self._results.append((result, True, task.result()))
        self._watcher.send()

    def _deliver(self) -> None:
        # On the gevent hub.
        while self._results:
            result, ok, value = self._results.popleft()
            if ok:
                result.set(value)
            else:
                result.set_exception(value)

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)


_bridge: AsyncioThread | None = None


def bridge() -> AsyncioThread:
    """The process's asyncio thread (started on first use, from a greenlet)."""
    global _bridge
    if _bridge is None:
        _bridge = AsyncioThread()
    return _bridge
