"""Idempotent appends on (stream, client_msg_id) for the Kafka comment log.

Kafka's idempotent producer only removes the repeats of its own retries; a client that retries a
post (on this edge or another) is a new send. So the log keeps a window of the keys it appended:

- ``LocalWindow``: in this process, capped at ``LOCAL_WINDOW_MAX`` keys (the oldest go first).
  Alone (no ``dedupe=`` in the URL) the window is per edge: the same key sent to two edges is
  appended twice.
- ``RedisDedupe``: shared by every edge, one Redis key per (topic id, stream, client_msg_id):

  1. **Claim** before producing: ``SET key "P"+owner NX PX PENDING_TTL GET`` for each key, in
     one Lua script call per Kafka partition per round (the keys carry the partition as their
     hash tag, so they share a slot; calls for different partitions run concurrently). No old
     value: this append owns the key. ``D…``: appended before, the value holds the original
     offset and payload (a duplicate). ``P…``: another append of the same key is in flight;
     the caller waits for it (``wait_pending``) and fails the batch with BackendUnavailable if
     it neither finishes nor gives up within ``PENDING_WAIT_S``.
  2. **Confirm** after the broker acknowledged: ``SET key "D"+offset+payload PX window``.
  3. **Release** when the produce failed: delete the key if it still holds our claim, so the
     author's retry can claim it at once.

  The crash rule: a process that dies between claim and confirm leaves a pending claim that
  expires after ``PENDING_TTL_S`` (longer than any append may take, ``APPEND_TIMEOUT_S``); until
  then a retry of that key waits ``PENDING_WAIT_S`` and gets BackendUnavailable (retry later),
  afterwards it claims the key again. If the dead process's record had landed, the log then holds
  the key twice; the readers' repeat rule (``CommentLog`` docstring) covers it.

  Redis unreachable: appends go on with the local window only (fail open: the log stays
  writable, a cross-edge retry during the outage may be appended twice) and Redis is tried again
  after ``REDIS_RETRY_S``. Counted in ``stats``.

  Memory: the window keeps the payload to re-ack the author with the original record, so Redis
  holds about (key ~60 B + payload + ~70 B overhead) per comment with a client_msg_id for
  ``dedupe_window_s``: at 15 000 comments/s of 200 B and a 600 s window, ~3 GB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from livechat.backends.kafka_connect import APPEND_TIMEOUT_S, partition_of
from livechat.backends.redis_connect import (
    REDIS_ERRORS,
    REPLY_TIMEOUT_S,
    RedisClient,
    RedisTarget,
    open_client,
    translate,
)
from livechat.ports.errors import BackendError, BackendUnavailable

log = logging.getLogger("livechat.backends.kafka")

Key = tuple[str, str]

# Keys the local window keeps at most (~300 B each with a 200 B payload: ~60 MB).
LOCAL_WINDOW_MAX = 200_000
# A claim not confirmed within this is taken for abandoned (its owner crashed).
PENDING_TTL_S = 3 * APPEND_TIMEOUT_S
# A batch meeting another edge's claim in flight waits this long for it to be confirmed.
PENDING_WAIT_S = APPEND_TIMEOUT_S
PENDING_POLL_S = 0.02
# After a Redis failure, appends use the local window alone for this long before trying again.
REDIS_RETRY_S = 1.0

_OFFSET = struct.Struct(">q")
# One call per partition and round. SET's nil (key was free) is false in Lua, nil in the reply.
_SCRIPTS = {
    "claim": """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2], 'GET')
end
return out""",
    "confirm": """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[1])
end
return #KEYS""",
    "release": """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then n = n + redis.call('DEL', key) end
end
return n""",
}


@dataclass(frozen=True, slots=True)
class Original:
    """The first append of a key: what a repeat answers with."""

    offset: int
    payload: bytes


class Pending:
    """Another append holds the claim (see the module docstring)."""


PENDING = Pending()


@dataclass(slots=True)
class DedupeStats:
    claims: int = 0
    duplicates: int = 0
    pending_waits: int = 0
    redis_failures: int = 0
    last_error: str | None = field(default=None)


class LocalWindow:
    """Keys appended by this process within the window (see the module docstring)."""

    def __init__(self, window_s: float, max_keys: int = LOCAL_WINDOW_MAX) -> None:
        self._window = window_s
        self._max = max_keys
        # key -> (expires at, original), oldest first.
        self._keys: OrderedDict[Key, tuple[float, Original]] = OrderedDict()

    def get(self, key: Key, now: float) -> Original | None:
        found = self._keys.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._keys[key]
            return None
        return found[1]

    def put(self, key: Key, original: Original, now: float) -> None:
        self._keys[key] = (now + self._window, original)
        self._keys.move_to_end(key)
        self._expire(now)

    def _expire(self, now: float) -> None:
        keys = self._keys
        while keys:
            key, (expires, _) = next(iter(keys.items()))
            if expires > now and len(keys) <= self._max:
                return
            del keys[key]


class RedisDedupe:
    """The shared window in Redis (see the module docstring)."""

    def __init__(self, target: RedisTarget, name: str, prefix: str, window_s: float) -> None:
        self._target = target
        self._name = name
        self._client: RedisClient | None = None
        self._prefix = prefix
        self._window_ms = max(1, int(window_s * 1000))
        # Our claims carry this owner id, so a release never deletes another process's claim.
        self._owner = b"P" + uuid.uuid4().bytes
        self._down_until = 0.0
        self._topic_id = ""
        self._partitions = 1
        self._scripts: dict[str, Any] = {}
        self.stats = DedupeStats()

    @classmethod
    async def open(
        cls, url: str, topic_id: str, partitions: int, prefix: str, window_s: float
    ) -> RedisDedupe:
        """The index for ``topic_id``. Redis being down does not fail the open (the log stays
        writable, fail open as below); it is connected again on a later claim."""
        index = cls(
            RedisTarget.parse(url), f"livechat-log-dedupe-{topic_id[:8]}", f"{prefix}logdedupe:", window_s
        )
        index._topic_id = topic_id
        index._partitions = partitions
        with contextlib.suppress(BackendError):
            await index._connected()
        return index

    async def _connected(self) -> RedisClient:
        if self._client is None:
            try:
                client = await open_client(self._target, self._name)
            except BackendError as exc:
                raise self._failed(exc, "connect") from exc
            self._client = client
            self._scripts = {name: client.register_script(lua) for name, lua in _SCRIPTS.items()}
        return self._client

    def key_name(self, key: Key) -> str:
        """The Redis key of (stream, client_msg_id). The hash tag is the topic id and the stream's
        partition, so a partition's keys share one slot (one script call per partition and
        round, on one Redis Cluster master) and the index shards like the log."""
        stream, cmid = key
        partition = partition_of(stream, self._partitions)
        # The length keeps (a:b, c) and (a, b:c) apart.
        return f"{self._prefix}{{{self._topic_id}:{partition}}}:{len(stream)}:{stream}:{cmid}"

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException, what: str) -> BackendError:
        error = translate(exc, what)
        self.stats.redis_failures += 1
        self.stats.last_error = str(error)
        self._down_until = time.monotonic() + REDIS_RETRY_S
        log.warning("log dedupe index unavailable (%s): local window only for %.1f s", error, REDIS_RETRY_S)
        return error

    async def _per_partition(
        self, script: str, keys: Sequence[Key], args: Sequence[Any], per_key: Sequence[Any] = ()
    ) -> list[Any]:
        """Run ``script`` once per partition over its keys (concurrently); the replies per key,
        in the order of ``keys``. ``per_key`` values follow ``args`` in each call's ARGV."""
        await self._connected()
        groups: dict[int, list[int]] = {}
        for index, (stream, _) in enumerate(keys):
            groups.setdefault(partition_of(stream, self._partitions), []).append(index)
        call = self._scripts[script]
        order = list(groups.values())
        # A black-holed Redis must not hold appends up: the round trip is bounded like every
        # other Redis call (``redis_connect``: no socket timeouts; a cut read drops its connection).
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            replies = await asyncio.gather(
                *(
                    call(
                        keys=[self.key_name(keys[i]) for i in indexes],
                        args=[*args, *(per_key[i] for i in indexes)] if per_key else list(args),
                    )
                    for indexes in order
                )
            )
        out: list[Any] = [None] * len(keys)
        for indexes, reply in zip(order, replies, strict=True):
            values = reply if isinstance(reply, list) else [reply] * len(indexes)
            for i, value in zip(indexes, values, strict=True):
                out[i] = value
        return out

    async def claim(self, keys: Sequence[Key]) -> list[Original | Pending | None]:
        """Per key: None when this append now owns it, the original, or PENDING. Raises
        BackendError when Redis cannot answer (then nothing was claimed for sure)."""
        try:
            replies = await self._per_partition("claim", keys, [self._owner, int(PENDING_TTL_S * 1000)])
        except (*REDIS_ERRORS, OSError) as exc:
            raise self._failed(exc, "claim") from exc
        self.stats.claims += len(keys)
        return [_decode(reply) for reply in replies]

    async def confirm(self, originals: Sequence[tuple[Key, Original]]) -> None:
        """Mark keys appended, with their original (errors are logged: the claims then expire).
        Skipped while Redis is down: the keys of that time are then per edge only."""
        if not originals or not self.available:
            return
        values = [b"D" + _OFFSET.pack(o.offset) + o.payload for _, o in originals]
        try:
            await self._per_partition("confirm", [k for k, _ in originals], [self._window_ms], values)
        except (*REDIS_ERRORS, OSError, BackendError) as exc:
            self._failed(exc, "confirm")

    async def release(self, keys: Sequence[Key]) -> None:
        """Drop our claims on keys whose append failed (errors are logged: the claims expire)."""
        if not keys or not self.available:
            return
        try:
            await self._per_partition("release", keys, [self._owner])
        except (*REDIS_ERRORS, OSError, BackendError) as exc:
            self._failed(exc, "release")

    async def wait_pending(self, key: Key) -> Original:
        """Wait for another append's claim on ``key`` to be confirmed; BackendUnavailable when it
        is released, expires or stays pending longer than ``PENDING_WAIT_S``."""
        self.stats.pending_waits += 1
        deadline = time.monotonic() + PENDING_WAIT_S
        name = self.key_name(key)
        while True:
            try:
                client = await self._connected()
                async with asyncio.timeout(REPLY_TIMEOUT_S):
                    reply = await client.get(name)
            except (*REDIS_ERRORS, OSError) as exc:
                raise self._failed(exc, "get") from exc
            found = _decode(reply)
            if isinstance(found, Original):
                return found
            if found is None or time.monotonic() >= deadline:
                raise BackendUnavailable(
                    f"another append of client_msg_id {key[1]!r} in stream {key[0]!r} did not finish: retry"
                )
            await asyncio.sleep(PENDING_POLL_S)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _decode(reply: object) -> Original | Pending | None:
    if reply is None:
        return None
    if not isinstance(reply, bytes) or not reply:
        raise BackendError(f"unexpected value in the log dedupe index: {reply!r}")
    if reply[:1] == b"D":
        (offset,) = _OFFSET.unpack_from(reply, 1)
        return Original(offset, reply[1 + _OFFSET.size :])
    return PENDING
