"""The rooms this edge has open (``livechat.services.room.Room``), loaded, shared and dropped.

A room is loaded once per stream from the MetaStore and HistoryStore when the first local viewer
joins, then kept current by ``Room.apply`` (this edge's actions and other edges' events alike).
It is dropped when the last local viewer has been gone for ``RoomConfig.idle_drop_s`` (60 s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from livechat.config import RoomConfig
from livechat.ids import first_id_at
from livechat.ports.broker import Broker
from livechat.ports.comment_log import CommentLog
from livechat.ports.errors import BackendError
from livechat.ports.history import HistoryStore
from livechat.ports.log_follower import LogFollower, LogHandler
from livechat.ports.meta import GLOBAL_STREAM, MetaStore
from livechat.services.clock import Clock
from livechat.services.moderation.hold import policy_of
from livechat.services.room import HIGHLIGHTS_KEPT, Room, ban_in_force

log = logging.getLogger(__name__)

#: Log records read per call when a room catches up at open.
REPLAY_PAGE: Final = 1000


class RoomDirectory:
    """Loads, caches and drops rooms; owns the edge's broker subscriptions or, with a shared log,
    its follows of the log (one per open room)."""

    def __init__(
        self,
        config: RoomConfig,
        meta: MetaStore,
        history: HistoryStore,
        clock: Clock,
        broker: Broker | None = None,
        follower: LogFollower | None = None,
    ) -> None:
        """``follower``: with a shared log, each open room follows its stream from history's
        watermark (and ``broker`` is not subscribed)."""
        self._config = config
        self._meta = meta
        self._history = history
        self._clock = clock
        self._broker = broker if follower is None else None
        self._follower = follower
        # With a follower: the log to catch a room up from, and where its records go (set by the
        # ChatService: ``LogEvents.on_records``, the follower's handler too).
        self.log: CommentLog | None = None
        self.replay: LogHandler | None = None
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Future[Room]] = {}
        self.global_bans: dict[str, float | None] = {}
        # Called while a room loads with its stream and recent window's comment ids (set by the
        # ChatService: ``Engagement.open``, which reads the stored totals); its failure fails the open.
        self.on_load: Callable[[str, list[int]], Awaitable[None]] | None = None

    async def load_global_bans(self) -> None:
        now = self._clock.time()
        self.global_bans = {
            ban.user_id: ban.expires_at for ban in await self._meta.list_bans(GLOBAL_STREAM, now)
        }

    def get(self, stream: str) -> Room | None:
        return self._rooms.get(stream)

    def rooms(self) -> list[Room]:
        return list(self._rooms.values())

    async def open(self, stream: str) -> Room:
        """The loaded room; concurrent first joins share one load. Raises BackendError on failure."""
        room = self._rooms.get(stream)
        if room is not None:
            return room
        pending = self._loading.get(stream)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Room] = asyncio.get_running_loop().create_future()
        self._loading[stream] = future
        try:
            watermark, from_history = -1, True
            if self._follower is not None:
                watermark, from_history = await self._start_position(stream)
            room = await self._load(stream, from_history)
            # In the directory before the follow starts: records handed over from then on find it.
            self._rooms[stream] = room
            if self._follower is not None:
                await self._follow(stream, watermark)
        except BaseException as exc:
            self._rooms.pop(stream, None)
            future.set_exception(exc)
            future.exception()  # mark retrieved: joiners waiting on it re-raise it themselves
            raise
        finally:
            del self._loading[stream]
        future.set_result(room)
        return room

    async def _follow(self, stream: str, watermark: int) -> None:
        """Catch the room up with the log after ``watermark`` (read BEFORE history was loaded, so
        what history lacks is in the log, and what it had is skipped by id), then follow it live
        from the last record read: the first snapshot is complete, and nothing falls between."""
        follower = self._follower
        assert follower is not None and self.log is not None and self.replay is not None
        after = watermark
        while True:
            records = await self.log.read(stream, after, REPLAY_PAGE)
            if records:
                self.replay(records)
                after = records[-1].offset
            if len(records) < REPLAY_PAGE:
                break
        if follower.position(stream) is not None:
            await follower.unfollow(stream)  # a prune of the same stream still finishing
        await follower.follow(stream, after)

    async def _start_position(self, stream: str) -> tuple[int, bool]:
        """Where a room following the log starts: history's watermark, or, while history cannot
        answer (docs/operations.md, failure policies: Cassandra down), the log's end: the room
        then opens with an empty recent window marked incomplete, so a rejoin's recovery past it
        says ``gap: true`` and the client pages history once it is back."""
        try:
            return await self._history.watermark(stream), True
        except BackendError as exc:
            assert self.log is not None
            log.warning("opening %s from the log's end, without history: %s", stream, exc)
            return await self.log.end_offset(stream), False

    async def _load(self, stream: str, from_history: bool = True) -> Room:
        meta = self._meta
        now = self._clock.time()
        info = await meta.get_stream(stream)
        room = Room(
            stream,
            info.owner_id if info is not None else stream,
            self._config.recent_buffer,
            first_id_at(int(now * 1000)),
        )
        room.modes = await meta.get_modes(stream)
        room.hold = policy_of(room.modes)
        room.pin = await meta.get_pin(stream, now)
        room.highlights.extend(await meta.list_highlights(stream, HIGHLIGHTS_KEPT))
        for ban in await meta.list_bans(stream, now):
            room.apply_ban(ban)
        capacity = self._config.recent_buffer
        if from_history:
            stored = await self._history.recent(stream, capacity)
            room.recent.load(
                [(c.comment_id, c.user_id, c.payload) for c in stored], complete=len(stored) < capacity
            )
        # Else the buffer stays empty with its floor at "now" (``first_id_at``): nothing older is
        # claimed, so recovery from before the open says gap: true.
        if self.on_load is not None:
            await self.on_load(stream, [cid for cid, _ in room.recent.latest(capacity)])
        if self._broker is not None:
            await self._broker.subscribe(stream)
        return room

    def ban_of(self, room: Room, user_id: str, now: float) -> tuple[bool, float | None]:
        """(banned, expiry) counting the stream's and the site-wide bans; the later expiry wins."""
        if user_id not in room.bans and user_id not in self.global_bans:
            return False, None
        banned, expires = ban_in_force(room.bans, user_id, now)
        global_banned, global_expires = ban_in_force(self.global_bans, user_id, now)
        if not global_banned:
            return banned, expires
        if not banned:
            return True, global_expires
        if expires is None or global_expires is None:
            return True, None
        return True, max(expires, global_expires)

    async def prune(self) -> list[str]:
        """Drop rooms idle (no local viewer) for ``idle_drop_s``; returns their streams."""
        now = self._clock.monotonic()
        dropped = []
        for stream, room in list(self._rooms.items()):
            if room.viewers > 0:
                room.idle_since = None
            elif room.idle_since is None:
                room.idle_since = now
            elif now - room.idle_since >= self._config.idle_drop_s:
                del self._rooms[stream]
                dropped.append(stream)
                if self._broker is not None:
                    await self._broker.unsubscribe(stream)
                if self._follower is not None:
                    await self._follower.unfollow(stream)
        return dropped
