"""Which @handles of a comment name a user that exists: the ``m`` of a comment event.

``extract_mentions`` finds the handles in the text; ``MentionResolver.existing`` keeps those that
``MetaStore.find_user_by_name`` resolves to exactly one user (a handle naming nobody, or several
users, is left out of ``m``: it notifies and highlights nobody). Users are recorded in the
MetaStore when they join a stream (``livechat.services.membership``); with a MetaStore per edge
(SQLite under each edge of a Redis-brokered cluster) a user is known on the edges they joined,
with a shared one (PostgreSQL) everywhere.

Answers are cached per handle: a user that exists for POSITIVE_TTL_S, "nobody" for NEGATIVE_TTL_S
(a new user's name works everywhere within that long). A lookup that fails or is late keeps the
handle (fail open: a mention of a real user is never lost to a store outage; ``m`` is then as it
was before mentions were checked).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Final

from livechat.ports.errors import BackendError
from livechat.ports.meta import MetaStore
from livechat.services.clock import Clock

log = logging.getLogger(__name__)

#: How long "this handle names a user" is believed (users are not deleted while they chat).
POSITIVE_TTL_S: Final = 600.0
#: How long "nobody has this handle" is believed: the delay before a new user can be mentioned.
NEGATIVE_TTL_S: Final = 10.0
#: Handles cached (~150 bytes each); the oldest answer goes first.
CACHE_SIZE: Final = 50_000
#: A batch waits at most this long for its lookups (a MetaStore read is ~1 ms); late ones keep
#: their handle. Bounded well under the 1 s a post may take before a client retries.
LOOKUP_TIMEOUT_S: Final = 0.5


class MentionResolver:
    __slots__ = ("_cache", "_clock", "_meta", "counters")

    def __init__(self, meta: MetaStore, clock: Clock) -> None:
        self._meta = meta
        self._clock = clock
        # handle -> (names a user, monotonic expiry)
        self._cache: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self.counters = {"lookups": 0, "unknown": 0, "failed": 0}

    def _cached(self, handle: str, now: float) -> bool | None:
        hit = self._cache.get(handle)
        if hit is None:
            return None
        exists, expires = hit
        if expires <= now:
            del self._cache[handle]
            return None
        return exists

    def _remember(self, handle: str, exists: bool, now: float) -> None:
        self._cache[handle] = (exists, now + (POSITIVE_TTL_S if exists else NEGATIVE_TTL_S))
        self._cache.move_to_end(handle)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def _lookup(self, handle: str) -> bool:
        self.counters["lookups"] += 1
        return await self._meta.find_user_by_name(handle) is not None

    async def existing(self, mention_lists: Sequence[Sequence[str]]) -> list[list[str]]:
        """Each list of handles without those that name no user (order kept). One lookup per
        handle not cached, all at once; never raises (a failed or late lookup keeps the handle)."""
        now = self._clock.monotonic()
        unknown = {h for handles in mention_lists for h in handles if self._cached(h, now) is None}
        verdicts: dict[str, bool] = {}
        if unknown:
            verdicts = await self._resolve(sorted(unknown))
        out = []
        for handles in mention_lists:
            kept = []
            for handle in handles:
                exists = verdicts.get(handle)
                if exists is None:
                    exists = self._cached(handle, now)
                if exists is None or exists:
                    kept.append(handle)
                else:
                    self.counters["unknown"] += 1
            out.append(kept)
        return out

    async def _resolve(self, handles: Iterable[str]) -> dict[str, bool]:
        names = list(handles)
        tasks = [asyncio.ensure_future(self._lookup(h)) for h in names]
        done, pending = await asyncio.wait(tasks, timeout=LOOKUP_TIMEOUT_S)
        for task in pending:
            task.cancel()
        now = self._clock.monotonic()
        verdicts: dict[str, bool] = {}
        for handle, task in zip(names, tasks, strict=True):
            if task not in done:
                self.counters["failed"] += 1
                continue
            error = task.exception()
            if error is not None:
                self.counters["failed"] += 1
                if not isinstance(error, BackendError):
                    log.error("resolving @%s failed", handle, exc_info=error)
                continue
            verdicts[handle] = task.result()
            self._remember(handle, verdicts[handle], now)
        if len(verdicts) < len(names):
            log.warning(
                "%d of %d @mentions not resolved: kept as written", len(names) - len(verdicts), len(names)
            )
        return verdicts
