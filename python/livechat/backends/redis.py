"""Redis 7 backends: ``RedisBroker`` (sharded pub/sub between edges) and ``RedisRegistry``.

Keys and channels, under a configurable prefix (default ``lc:``), each naming one stream / user /
rate key so a Redis Cluster can shard them:

- ``{p}s:{stream}``         shard channel of a stream's events (SPUBLISH / SSUBSCRIBE)
- ``{p}ctl``, ``{p}ctl:{edge}``  control channels: broadcast and one per edge (PUBLISH / SUBSCRIBE)
- ``{p}conn:user:{id}``     hash ``{edge}|{conn}`` -> unix seconds of registration
- ``{p}rate:{key}``         sorted set of event times (µs, server clock) of one sliding window
- ``{p}recent:{stream}``    list of ``comment id (8 bytes, big-endian) + payload``, newest first
- ``{p}viewers:{stream}``   HyperLogLog of viewer ids
- ``{p}ctr:{key}``          integer counter

Every broker payload on the wire is ``len(edge_id) (1 byte) + edge_id + payload``; a receiver drops
payloads carrying its own edge id (the port's no-echo rule).

Both classes speak RESP through ``livechat.backends.resp`` (pipelined, one connection each) rather
than redis-py; that module's docstring has the measurements behind that choice.

Cluster note: SPUBLISH routes by the channel's hash slot; this broker keeps one subscribe
connection, which is right for a single Redis (or one shard). A Redis Cluster needs one subscribe
connection per shard node, keyed by ``CLUSTER KEYSLOT`` of each channel; that is the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from livechat.backends.resp import (
    LuaScript,
    RedisAddress,
    RedisClient,
    RespConnection,
    RespError,
    RespValue,
    encode_command,
)
from livechat.ports.broker import BrokerHandler
from livechat.ports.errors import BackendError, BackendUnavailable, ClosedError
from livechat.ports.registry import ConnectionRef

log = logging.getLogger("livechat.backends.redis")

DEFAULT_PREFIX = "lc:"
# A subscribe or reconnect step that takes longer than this counts as "Redis unavailable".
CONFIRM_TIMEOUT_S = 5.0
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0


def _edge_tag(edge_id: str) -> bytes:
    raw = edge_id.encode()
    if not 0 < len(raw) < 256:
        raise ValueError(f"edge id must be 1..255 bytes of UTF-8, got {len(raw)}")
    return bytes([len(raw)]) + raw


class RedisBroker:
    """Broker over Redis 7 sharded pub/sub. One publish connection (SPUBLISH pipelined, replies
    matched in order, so one edge's events keep their order) and one subscribe connection (every
    stream channel plus the two control channels). A lost subscribe connection is re-established
    with backoff; every stream is re-subscribed and then reported through ``on_gap``."""

    def __init__(self, address: RedisAddress, edge_id: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._address = address
        self._edge_id = edge_id
        self._tag = _edge_tag(edge_id)
        self._stream_prefix = f"{prefix}s:".encode()
        self._ctl_all = f"{prefix}ctl".encode()
        self._ctl_mine = f"{prefix}ctl:{edge_id}".encode()
        self._ctl_prefix = f"{prefix}ctl:".encode()
        self._handler: BrokerHandler | None = None
        self._refs: dict[str, int] = {}
        # channel bytes -> stream, for subscribed streams only (a message on any other is dropped)
        self._channels: dict[bytes, str] = {}
        # Subscribe confirmations in flight, FIFO per (kind, channel): Redis answers in order.
        self._confirms: dict[tuple[bytes, bytes], deque[asyncio.Future[None]]] = {}
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._sub: RespConnection | None = None
        self._pub = RedisClient(address, reply_timeout=CONFIRM_TIMEOUT_S)
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: str, edge_id: str, prefix: str = DEFAULT_PREFIX) -> RedisBroker:
        broker = cls(RedisAddress.parse(url), edge_id, prefix)
        try:
            await broker._connect_subscriber()
            await broker._pub.call("PING")
        except BaseException:
            await broker.aclose()
            raise
        return broker

    @property
    def edge_id(self) -> str:
        return self._edge_id

    def set_handler(self, handler: BrokerHandler) -> None:
        if self._handler is not None:
            raise RuntimeError("broker handler is already set")
        self._handler = handler

    def subscription_count(self, stream: str) -> int:
        return self._refs.get(stream, 0)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("broker is closed")

    def _channel(self, stream: str) -> bytes:
        return self._stream_prefix + stream.encode()

    # -- subscribe connection -----------------------------------------------------------------
    async def _connect_subscriber(self) -> None:
        conn = await RespConnection.open(self._address, on_push=self._on_push, timeout=CONFIRM_TIMEOUT_S)
        self._sub = conn
        conn.lost_callback = self._on_subscriber_lost
        waits = [self._expect(b"subscribe", self._ctl_all), self._expect(b"subscribe", self._ctl_mine)]
        conn.send(encode_command("SUBSCRIBE", self._ctl_all, self._ctl_mine))
        channels = list(self._channels)
        if channels:
            waits += [self._expect(b"ssubscribe", ch) for ch in channels]
            conn.send(encode_command("SSUBSCRIBE", *channels))
        await self._await_confirms(waits)

    def _expect(self, kind: bytes, channel: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirms.setdefault((kind, channel), deque()).append(fut)
        return fut

    async def _await_confirms(self, waits: Sequence[asyncio.Future[None]]) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*waits), CONFIRM_TIMEOUT_S)
        except TimeoutError as exc:
            raise BackendUnavailable("redis did not confirm a subscription in time") from exc

    def _on_push(self, value: list[RespValue]) -> None:
        kind = value[0] if value else None
        if kind == b"smessage":
            stream = self._channels.get(value[1])  # type: ignore[arg-type]
            data = value[2]
            if stream is None or not isinstance(data, bytes) or data.startswith(self._tag):
                return
            handler = self._handler
            if handler is not None:
                try:
                    handler.on_message(stream, data[1 + data[0] :])
                except Exception:
                    log.exception("broker handler failed on stream %r", stream)
        elif kind == b"message":
            data = value[2]
            if not isinstance(data, bytes) or data.startswith(self._tag) or self._handler is None:
                return
            try:
                self._handler.on_control(data[1 + data[0] :])
            except Exception:
                log.exception("broker handler failed on a control message")
        elif kind in (b"ssubscribe", b"subscribe") and isinstance(value[1], bytes):
            waiters = self._confirms.get((kind, value[1]))
            if waiters:
                fut = waiters.popleft()
                if not waiters:
                    del self._confirms[(kind, value[1])]
                if not fut.done():
                    fut.set_result(None)
        elif isinstance(kind, RespError):
            log.error("redis subscribe connection error: %s", kind)

    def _on_subscriber_lost(self) -> None:
        self._sub = None
        error = BackendUnavailable("redis subscribe connection lost")
        for waiters in self._confirms.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(error)
        self._confirms.clear()
        if not self._closed and self._reconnect_task is None:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = RECONNECT_MIN_S
        try:
            while not self._closed:
                await asyncio.sleep(delay)
                try:
                    await self._connect_subscriber()
                except (BackendError, OSError) as exc:
                    log.warning("redis broker reconnect failed (retrying in %.2fs): %s", delay, exc)
                    if self._sub is not None:
                        self._sub.lost_callback = None
                        self._sub.close()
                        self._sub = None
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
                log.info("redis broker reconnected; %d streams resubscribed", len(self._refs))
                break
        finally:
            self._reconnect_task = None
        if not self._closed and self._handler is not None and self._refs:
            try:
                self._handler.on_gap(list(self._refs))
            except Exception:
                log.exception("broker handler failed in on_gap")

    async def subscribe(self, stream: str) -> bool:
        self._check_open()
        if self._handler is None:
            raise RuntimeError("set_handler must be called before subscribe")
        refs = self._refs.get(stream, 0)
        if refs:
            self._refs[stream] = refs + 1
            pending = self._pending.get(stream)
            if pending is not None:
                try:
                    await asyncio.shield(pending)
                except BaseException:
                    self._release(stream)
                    raise
            return False
        sub = self._sub
        if sub is None or not sub.is_open:
            raise BackendUnavailable("redis subscribe connection is down (reconnecting)")
        channel = self._channel(stream)
        self._refs[stream] = 1
        self._channels[channel] = stream
        confirmed = self._expect(b"ssubscribe", channel)
        self._pending[stream] = confirmed
        try:
            sub.send(encode_command("SSUBSCRIBE", channel))
            await self._await_confirms([confirmed])
        except BaseException:
            self._release(stream)
            raise
        finally:
            if self._pending.get(stream) is confirmed:
                del self._pending[stream]
        return True

    def _release(self, stream: str) -> bool:
        """Drop one reference; on the last, forget the channel and tell Redis. True if last."""
        refs = self._refs.get(stream, 0)
        if refs > 1:
            self._refs[stream] = refs - 1
            return False
        if refs == 0:
            return False
        del self._refs[stream]
        channel = self._channel(stream)
        self._channels.pop(channel, None)
        sub = self._sub
        if sub is not None and sub.is_open:
            sub.send(encode_command("SUNSUBSCRIBE", channel))
        return True

    async def unsubscribe(self, stream: str) -> bool:
        self._check_open()
        return self._release(stream)

    # -- publish connection -------------------------------------------------------------------
    async def _send(self, command: bytes) -> None:
        try:
            await self._pub.send(command)
        except RespError as exc:
            raise BackendError(f"redis rejected a publish: {exc}") from exc

    async def publish(self, stream: str, payload: bytes) -> None:
        self._check_open()
        await self._send(encode_command("SPUBLISH", self._channel(stream), self._tag + payload))

    async def publish_many(self, events: Sequence[tuple[str, bytes]]) -> None:
        self._check_open()
        if not events:
            return
        tag = self._tag
        replies = await self._pub.send_many(
            [encode_command("SPUBLISH", self._channel(stream), tag + payload) for stream, payload in events]
        )
        for reply in replies:
            if isinstance(reply, RespError):
                raise BackendError(f"redis rejected a publish: {reply}")

    async def publish_control(self, payload: bytes, edge_id: str | None = None) -> None:
        self._check_open()
        channel = self._ctl_all if edge_id is None else self._ctl_prefix + edge_id.encode()
        await self._send(encode_command("PUBLISH", channel, self._tag + payload))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
        self._refs.clear()
        self._channels.clear()
        await self._pub.aclose()
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.lost_callback = None
            sub.close()
            await sub.wait_closed()


# -- registry ---------------------------------------------------------------------------------

# Sliding-window log on the server's clock. ARGV: limit, window in µs. Returns 1 when allowed.
_ALLOW = LuaScript.of("""
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
local member = string.format('%.0f', now)
while redis.call('ZSCORE', KEYS[1], member) do
  now = now + 1
  member = string.format('%.0f', now)
end
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
return 1
""")

# ARGV: field, value, ttl ms.
_ADD_CONNECTION = LuaScript.of("""
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
""")

# ARGV: entry, max length.
_RECENT_PUSH = LuaScript.of("""
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
""")

# Drop recent-list entries whose first 8 bytes (the comment id) are among ARGV.
_RECENT_REMOVE = LuaScript.of("""
local drop = {}
for i = 1, #ARGV do drop[ARGV[i]] = true end
local removed = 0
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if drop[string.sub(item, 1, 8)] then
    removed = removed + redis.call('LREM', KEYS[1], 1, item)
  end
end
return removed
""")

# ARGV: delta, ttl ms. Only the increment that creates the counter sets its expiry (fixed window).
_INCR_WITH_TTL = LuaScript.of("""
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return tonumber(ARGV[1])
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
""")


def _id_bytes(comment_id: int) -> bytes:
    return comment_id.to_bytes(8, "big", signed=True)


def _int(value: RespValue) -> int:
    if not isinstance(value, int):
        raise BackendError(f"redis returned {value!r} where an integer was expected")
    return value


def _bulk_list(value: RespValue) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise BackendError(f"redis returned {value!r} where a list of strings was expected")
    return cast(list[bytes], value)


class RedisRegistry:
    """Registry on one Redis: one pipelined connection, every multi-step write a Lua script."""

    def __init__(self, client: RedisClient, prefix: str = DEFAULT_PREFIX) -> None:
        self._r = client
        self._p = prefix
        self._closed = False

    @classmethod
    async def open(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RedisRegistry:
        client = RedisClient(RedisAddress.parse(url), reply_timeout=CONFIRM_TIMEOUT_S)
        try:
            await client.call("PING")
        except BaseException:
            await client.aclose()
            raise
        return cls(client, prefix)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("registry is closed")

    async def add_connection(self, user_id: str, ref: ConnectionRef, ttl_s: float) -> None:
        self._check_open()
        await self._r.eval(
            _ADD_CONNECTION,
            [f"{self._p}conn:user:{user_id}"],
            [f"{ref.edge_id}|{ref.conn_id}", int(time.time()), max(1, int(ttl_s * 1000))],
        )

    async def remove_connection(self, user_id: str, ref: ConnectionRef) -> bool:
        self._check_open()
        removed = await self._r.call("HDEL", f"{self._p}conn:user:{user_id}", f"{ref.edge_id}|{ref.conn_id}")
        return _int(removed) == 1

    async def connections_of(self, user_id: str) -> list[ConnectionRef]:
        self._check_open()
        refs = []
        for field in _bulk_list(await self._r.call("HKEYS", f"{self._p}conn:user:{user_id}")):
            edge, _, conn = field.decode().rpartition("|")
            refs.append(ConnectionRef(edge, int(conn)))
        refs.sort(key=lambda r: (r.edge_id, r.conn_id))
        return refs

    async def allow(self, key: str, limit: int, window_s: float) -> bool:
        self._check_open()
        window_us = max(1, int(window_s * 1_000_000))
        return _int(await self._r.eval(_ALLOW, [f"{self._p}rate:{key}"], [limit, window_us])) == 1

    async def recent_push(self, stream: str, comment_id: int, payload: bytes, max_len: int) -> None:
        self._check_open()
        await self._r.eval(
            _RECENT_PUSH, [f"{self._p}recent:{stream}"], [_id_bytes(comment_id) + payload, max_len]
        )

    async def recent_get(self, stream: str, limit: int) -> list[tuple[int, bytes]]:
        self._check_open()
        if limit <= 0:
            return []
        items = _bulk_list(await self._r.call("LRANGE", f"{self._p}recent:{stream}", 0, limit - 1))
        return [(int.from_bytes(item[:8], "big", signed=True), item[8:]) for item in items]

    async def recent_remove(self, stream: str, comment_ids: Sequence[int]) -> int:
        self._check_open()
        if not comment_ids:
            return 0
        args = [_id_bytes(cid) for cid in comment_ids]
        return _int(await self._r.eval(_RECENT_REMOVE, [f"{self._p}recent:{stream}"], args))

    async def viewers_add(self, stream: str, viewer_ids: Sequence[str]) -> bool:
        self._check_open()
        if not viewer_ids:
            return False
        return _int(await self._r.call("PFADD", f"{self._p}viewers:{stream}", *viewer_ids)) == 1

    async def viewers_count(self, stream: str) -> int:
        self._check_open()
        return _int(await self._r.call("PFCOUNT", f"{self._p}viewers:{stream}"))

    async def incr(self, key: str, delta: int = 1, ttl_s: float | None = None) -> int:
        self._check_open()
        name = f"{self._p}ctr:{key}"
        if ttl_s is None:
            return _int(await self._r.call("INCRBY", name, delta))
        return _int(await self._r.eval(_INCR_WITH_TTL, [name], [delta, max(1, int(ttl_s * 1000))]))

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        self._check_open()
        if not keys:
            return []
        values = await self._r.call("MGET", *(f"{self._p}ctr:{k}" for k in keys))
        if not isinstance(values, list):
            raise BackendError(f"redis MGET returned {values!r}")
        return [0 if v is None else int(cast(bytes, v)) for v in values]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._r.aclose()


if TYPE_CHECKING:
    from livechat.ports.broker import Broker
    from livechat.ports.registry import Registry

    def _check_broker(b: RedisBroker) -> Broker:
        return b

    def _check_registry(r: RedisRegistry) -> Registry:
        return r
