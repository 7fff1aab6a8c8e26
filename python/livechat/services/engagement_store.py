"""The durable copy of engagement totals: deltas batched into the MetaStore in the background.

``Engagement`` hands every delta it counts for this edge (reactions, comments posted or deleted
here, likes and unlikes) to ``EngagementWriter.add``. Every ``WRITE_EVERY_S`` (and at ``aclose``)
each changed stream's batch is written with one ``MetaStore.add_engagement`` (one transaction)
as a background task: a slow or failing MetaStore never holds up a flush or a tick. A batch is
tried ``WRITE_ATTEMPTS`` times, ``RETRY_DELAY_S`` apart, then dropped and logged (the task's
failure is counted in ``livechat_background_failures_total``). A crash loses at most the last
``WRITE_EVERY_S`` of counts (docs/operations.md §7).

``load`` gives a stream's totals as stored plus what is not stored yet: while it reads, the
stream's batches wait (so nothing is counted twice or missed between the read and the pending
deltas), and it first waits for a write of that stream already under way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from livechat.ports.meta import EngagementTotals, MetaStore
from livechat.services.background import Background

log = logging.getLogger(__name__)

#: Seconds between two writes of a stream's deltas: what a crash can lose.
WRITE_EVERY_S: Final = 2.0
#: Tries of one batch before it is dropped (a MetaStore down longer loses those counts, not the edge).
WRITE_ATTEMPTS: Final = 3
RETRY_DELAY_S: Final = 0.5


@dataclass(slots=True)
class Deltas:
    """Not yet stored changes of one stream."""

    reactions: dict[str, int] = field(default_factory=dict)
    comments: int = 0
    likes: dict[int, int] = field(default_factory=dict)

    def merge(self, other: Deltas) -> None:
        for emoji, n in other.reactions.items():
            self.reactions[emoji] = self.reactions.get(emoji, 0) + n
        self.comments += other.comments
        for cid, n in other.likes.items():
            self.likes[cid] = self.likes.get(cid, 0) + n


class EngagementWriter:
    """Batches this edge's engagement deltas into ``meta`` (see the module docstring)."""

    __slots__ = ("_background", "_inflight", "_loading", "_meta", "_pending", "_task", "dropped")

    def __init__(self, meta: MetaStore, background: Background) -> None:
        self._meta = meta
        self._background = background
        self._pending: dict[str, Deltas] = {}
        # stream -> its batch being written (at most one per stream at a time).
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Streams whose totals are being read: their batches wait for the next round.
        self._loading: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        # Batches given up after WRITE_ATTEMPTS.
        self.dropped = 0

    def _deltas(self, stream: str) -> Deltas:
        deltas = self._pending.get(stream)
        if deltas is None:
            deltas = self._pending[stream] = Deltas()
        return deltas

    def react(self, stream: str, emoji: str, n: int = 1) -> None:
        reactions = self._deltas(stream).reactions
        reactions[emoji] = reactions.get(emoji, 0) + n

    def comments(self, stream: str, n: int) -> None:
        self._deltas(stream).comments += n

    def like(self, stream: str, comment_id: int, n: int) -> None:
        likes = self._deltas(stream).likes
        likes[comment_id] = likes.get(comment_id, 0) + n

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(WRITE_EVERY_S)
            self.write_pending()

    def write_pending(self) -> None:
        """Start a background write of every changed stream not being written or read already."""
        for stream in list(self._pending):
            if stream in self._inflight or stream in self._loading:
                continue  # the next round takes it (merged with what arrives meanwhile)
            deltas = self._pending.pop(stream)
            task = self._background.spawn(self._write(stream, deltas), "engagement write")
            self._inflight[stream] = task

    async def _write(self, stream: str, deltas: Deltas) -> None:
        try:
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                try:
                    await self._meta.add_engagement(stream, deltas.reactions, deltas.comments, deltas.likes)
                    return
                except Exception as exc:
                    if attempt == WRITE_ATTEMPTS:
                        self.dropped += 1
                        log.warning(
                            "engagement of %s not stored after %d tries, dropped (%d comments, %d "
                            "reactions, %d like changes): %r",
                            stream,
                            attempt,
                            deltas.comments,
                            sum(deltas.reactions.values()),
                            len(deltas.likes),
                            exc,
                        )
                        raise
                    await asyncio.sleep(RETRY_DELAY_S)
        finally:
            del self._inflight[stream]

    async def load(self, stream: str, like_ids: Sequence[int] | None) -> EngagementTotals:
        """The stream's totals: stored plus not yet stored (likes for ``like_ids``). Raises what
        the MetaStore raises."""
        self._loading[stream] = self._loading.get(stream, 0) + 1
        try:
            while (task := self._inflight.get(stream)) is not None:
                await asyncio.wait([task])
            totals = await self._meta.engagement(stream, like_ids)
            pending = self._pending.get(stream)
            if pending is not None:
                for emoji, n in pending.reactions.items():
                    totals.reactions[emoji] = totals.reactions.get(emoji, 0) + n
                wanted = None if like_ids is None else set(like_ids)
                for cid, n in pending.likes.items():
                    if wanted is None or cid in wanted:
                        totals.likes[cid] = totals.likes.get(cid, 0) + n
                totals = totals._replace(comments=totals.comments + pending.comments)
            return totals
        finally:
            left = self._loading[stream] - 1
            if left:
                self._loading[stream] = left
            else:
                del self._loading[stream]

    async def aclose(self) -> None:
        """Stop the rounds and write what is pending (waiting for it: the edge is stopping)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._pending or self._inflight:
            self.write_pending()
            if self._inflight:
                await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            else:
                await asyncio.sleep(0.01)  # only streams being read are left: their load ends soon
