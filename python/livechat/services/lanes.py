"""Per-connection lanes: a request that waits on a backend holds up its own connection only.

The edge hands client frames over in batches and ``ChatService.on_messages`` used to await each
request in turn, so one join waiting on a slow store (PostgreSQL 500 ms away, Kafka unreachable)
held up every other connection's requests on the edge until it finished (a poster saw no answer
for 10 s while a join on another connection waited for the log; tests/faults).

Rules:
- A request that awaits a backend (join, history, report, moderator ops) starts a lane for its
  connection: a task that runs it and then every later message of that connection, in order.
- While a connection's lane runs, its later messages (posts too) queue in the lane; other
  connections' messages are handled at once. Per-connection order is kept; there is no order
  between connections (there never was one a client could see).
- ``settle`` waits up to ``inline_s`` for the lanes a batch started: a request answered in
  ~1 ms (every store healthy) completes before ``on_messages`` returns, as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]

#: How long ``settle`` waits for the requests of a batch before returning (they go on in their
#: lanes). Healthy stores answer a join in ~1-3 ms here.
INLINE_S: Final = 0.05


class Lanes:
    __slots__ = ("_inline_s", "_lanes", "_tasks")

    def __init__(self, inline_s: float = INLINE_S) -> None:
        self._inline_s = inline_s
        # conn -> jobs waiting behind the one running (the lane exists while its task runs).
        self._lanes: dict[int, collections.deque[Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def busy(self, conn: int) -> bool:
        return conn in self._lanes

    def __len__(self) -> int:
        return len(self._lanes)

    def queue(self, conn: int, job: Job) -> None:
        """Run ``job`` after the jobs already in ``conn``'s lane (which must be busy)."""
        self._lanes[conn].append(job)

    def start(self, conn: int, job: Job) -> asyncio.Task[None]:
        """Open ``conn``'s lane with ``job`` (the connection must not be busy)."""
        self._lanes[conn] = collections.deque()
        task = asyncio.get_running_loop().create_task(self._run(conn, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, conn: int, job: Job) -> None:
        try:
            while True:
                try:
                    await job()
                except Exception:  # the job answers its own errors; a bug must not stop the lane
                    log.exception("a request of connection %d failed", conn)
                lane = self._lanes.get(conn)
                if not lane:
                    return
                job = lane.popleft()
        finally:
            self._lanes.pop(conn, None)

    def drop(self, conn: int) -> None:
        """The connection closed: its queued jobs are not run (the one running finishes)."""
        lane = self._lanes.get(conn)
        if lane is not None:
            lane.clear()

    async def settle(self, started: list[asyncio.Task[None]]) -> None:
        if started:
            await asyncio.wait(started, timeout=self._inline_s)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
