"""``RedisRegistry``: the Registry port on Redis 7 or a Redis Cluster, through redis-py.

Keys, under a configurable prefix (default ``lc:``). The part in braces is the Redis Cluster hash
tag: a multi-key script names keys with one tag, so they live in one slot; everything else is one
key per user / stream / caller key, which spreads over the shards.

- ``{p}conn:{user}``            hash ``edge|conn`` -> registration time (server clock, s)
- ``{p}rate:{key}``             sorted set of event times (µs, server clock) of one sliding window
- ``{p}recent:{stream}``        list of ``comment id (8 bytes, big-endian) + payload``, newest first
- ``{p}viewers:{stream}``       HyperLogLog of viewer (user) ids
- ``{p}ctr:{key}``              integer counter
- ``{p}hctr:{key}``             hash of integer counters (per-emoji totals)
- ``{p}claim:{key}``            idempotency claim (SET NX GET with a TTL)
- ``{p}contrib:{key}:v`` / ``:d`` per-edge values and their deadlines (ms, server clock), one tag
- ``{p}node-lease:{nodes}`` / ``{p}node-owner:{nodes}``  node id -> deadline / holder, one tag

Every multi-step write is a Lua script (``register_script``), so it is atomic, and every time
comes from the server's ``TIME`` inside the script, never from the edge. Concurrent calls share
pipelined round trips (``CommandBatcher``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as rex
from redis.commands.core import AsyncScript

from livechat.backends.redis_connect import (
    DEFAULT_PREFIX,
    REDIS_ERRORS,
    REPLY_TIMEOUT_S,
    CommandBatcher,
    RedisClient,
    RedisTarget,
    open_client,
    translate,
)
from livechat.ports.errors import BackendError, ClosedError
from livechat.ports.registry import ConnectionRef

#: A stream's unique-viewer estimate lapses this long after the last add or read (edges with the
#: stream open read it every flush, so only streams nobody has open expire).
UNIQUE_VIEWERS_IDLE_S = 86_400

# Sliding-window log on the server's clock. ARGV: limit, window in µs. Returns 1 when allowed.
_ALLOW = """
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
"""

# ARGV: field, ttl ms. The value is the server's clock (informational).
_ADD_CONNECTION = """
redis.call('HSET', KEYS[1], ARGV[1], redis.call('TIME')[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# ARGV: entry, max length.
_RECENT_PUSH = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
"""

# Drop recent-list entries whose first 8 bytes (the comment id) are among ARGV.
_RECENT_REMOVE = """
local drop = {}
for i = 1, #ARGV do drop[ARGV[i]] = true end
local removed = 0
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if drop[string.sub(item, 1, 8)] then
    removed = removed + redis.call('LREM', KEYS[1], 1, item)
  end
end
return removed
"""

# ARGV: delta, ttl ms. Only the increment that creates the counter sets its expiry (fixed window).
_INCR_WITH_TTL = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return tonumber(ARGV[1])
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""

# ARGV: field, delta, field, delta, ... Returns the whole hash after the increments.
_HINCR_MANY = """
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return redis.call('HGETALL', KEYS[1])
"""

# Shared by the lease and contribution scripts: the server clock in ms, and dropping members of
# a deadline set (KEYS[dl]) whose deadline passed, with their entries in the value hash (KEYS[h]).
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_PURGE = """
local function purge(dl, h)
  local gone = redis.call('ZRANGEBYSCORE', dl, '-inf', now)
  for i = 1, #gone, 500 do
    redis.call('HDEL', h, unpack(gone, i, math.min(i + 499, #gone)))
  end
  redis.call('ZREMRANGEBYSCORE', dl, '-inf', now)
end
local function keep_until_last(dl, h)
  local last = redis.call('ZRANGE', dl, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', dl, h)
  else
    local ms = math.max(1, tonumber(last[2]) - now + 1000)
    redis.call('PEXPIRE', dl, ms)
    redis.call('PEXPIRE', h, ms)
  end
end
"""

# KEYS: lease zset (node -> deadline ms), owner hash (node -> edge). ARGV: edge, max nodes, ttl ms.
# The edge's live lease if it has one (renewed), else the smallest free node id; -1 when full.
_LEASE_NODE = (
    _NOW_MS
    + _PURGE
    + """
purge(KEYS[1], KEYS[2])
local edge, max_nodes, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local chosen = -1
local owners = redis.call('HGETALL', KEYS[2])
for i = 1, #owners, 2 do
  if owners[i + 1] == edge and tonumber(owners[i]) < max_nodes then
    chosen = tonumber(owners[i])
    break
  end
end
if chosen < 0 then
  for node = 0, max_nodes - 1 do
    if not redis.call('ZSCORE', KEYS[1], node) then
      chosen = node
      break
    end
  end
end
if chosen < 0 then return -1 end
redis.call('ZADD', KEYS[1], now + ttl, chosen)
redis.call('HSET', KEYS[2], chosen, edge)
keep_until_last(KEYS[1], KEYS[2])
return chosen
"""
)

# ARGV: edge, node, ttl ms. 1 when the edge still held a live lease on the node (now renewed).
_RENEW_NODE = (
    _NOW_MS
    + _PURGE
    + """
purge(KEYS[1], KEYS[2])
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[1] then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
keep_until_last(KEYS[1], KEYS[2])
return 1
"""
)

# ARGV: edge, node. 1 when the edge held the node (now free).
_RELEASE_NODE = (
    _NOW_MS
    + _PURGE
    + """
purge(KEYS[1], KEYS[2])
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
keep_until_last(KEYS[1], KEYS[2])
return 1
"""
)

# KEYS: values hash (edge -> value), deadlines zset (edge -> ms). ARGV: edge, value, ttl ms.
_SET_CONTRIBUTION = (
    _NOW_MS
    + _PURGE
    + """
purge(KEYS[2], KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
keep_until_last(KEYS[2], KEYS[1])
return 1
"""
)

# Read-only: the sum of values whose deadline is still ahead.
_SUM_CONTRIBUTIONS = (
    _NOW_MS
    + """
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
local sum = 0
for i = 1, #live, 500 do
  local values = redis.call('HMGET', KEYS[1], unpack(live, i, math.min(i + 499, #live)))
  for _, v in ipairs(values) do
    if v then sum = sum + tonumber(v) end
  end
end
return sum
"""
)

NODE_TAG = "nodes"


def _id_bytes(comment_id: int) -> bytes:
    return comment_id.to_bytes(8, "big", signed=True)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BackendError(f"redis returned {value!r} where an integer was expected")
    return value


def _bytes_list(value: Any) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise BackendError(f"redis returned {value!r} where a list of strings was expected")
    return value


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisRegistry:
    """Registry on Redis (one server or a cluster): one command client, calls batched into
    pipelines, every multi-step write a Lua script keyed within one hash slot."""

    def __init__(self, client: RedisClient, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._batch = CommandBatcher(client)
        self._p = prefix
        self._closed = False
        scripts = {
            name: client.register_script(text)
            for name, text in (
                ("allow", _ALLOW),
                ("add_connection", _ADD_CONNECTION),
                ("recent_push", _RECENT_PUSH),
                ("recent_remove", _RECENT_REMOVE),
                ("incr_ttl", _INCR_WITH_TTL),
                ("hincr_many", _HINCR_MANY),
                ("lease", _LEASE_NODE),
                ("renew", _RENEW_NODE),
                ("release", _RELEASE_NODE),
                ("set_contribution", _SET_CONTRIBUTION),
                ("sum_contributions", _SUM_CONTRIBUTIONS),
            )
        }
        self._scripts: dict[str, AsyncScript] = scripts

    @classmethod
    async def open(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RedisRegistry:
        return cls(await open_client(RedisTarget.parse(url), "livechat-registry"), prefix)

    def _key(self, kind: str, name: str) -> str:
        return f"{self._p}{kind}:{{{name}}}"

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("registry is closed")

    async def _call(self, *args: Any, **options: Any) -> Any:
        self._check_open()
        return await self._batch.call(*args, **options)

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script in the shared pipeline (EVALSHA). A server that does not
        know it yet (restart, SCRIPT FLUSH, a new cluster node) gets it loaded by redis-py."""
        self._check_open()
        script = self._scripts[name]
        try:
            return await self._batch.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            pass
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                return await script(keys=list(keys), args=list(args))
        except (*REDIS_ERRORS, TimeoutError) as exc:
            raise translate(exc, name) from exc

    # -- connections ----------------------------------------------------------------------------
    async def add_connection(self, user_id: str, ref: ConnectionRef, ttl_s: float) -> None:
        await self._eval("add_connection", [self._key("conn", user_id)], [_field(ref), _ms(ttl_s)])

    async def remove_connection(self, user_id: str, ref: ConnectionRef) -> bool:
        return _int(await self._call("HDEL", self._key("conn", user_id), _field(ref))) == 1

    async def connections_of(self, user_id: str) -> list[ConnectionRef]:
        refs = []
        for field in _bytes_list(await self._call("HKEYS", self._key("conn", user_id))):
            edge, _, conn = field.decode().rpartition("|")
            refs.append(ConnectionRef(edge, int(conn)))
        refs.sort(key=lambda r: (r.edge_id, r.conn_id))
        return refs

    # -- rate windows ---------------------------------------------------------------------------
    async def allow(self, key: str, limit: int, window_s: float) -> bool:
        window_us = max(1, int(window_s * 1_000_000))
        return _int(await self._eval("allow", [self._key("rate", key)], [limit, window_us])) == 1

    # -- recent comments ------------------------------------------------------------------------
    async def recent_push(self, stream: str, comment_id: int, payload: bytes, max_len: int) -> None:
        entry = _id_bytes(comment_id) + payload
        await self._eval("recent_push", [self._key("recent", stream)], [entry, max_len])

    async def recent_get(self, stream: str, limit: int) -> list[tuple[int, bytes]]:
        self._check_open()
        if limit <= 0:
            return []
        items = _bytes_list(await self._call("LRANGE", self._key("recent", stream), 0, limit - 1))
        return [(int.from_bytes(item[:8], "big", signed=True), item[8:]) for item in items]

    async def recent_remove(self, stream: str, comment_ids: Sequence[int]) -> int:
        self._check_open()
        if not comment_ids:
            return 0
        args = [_id_bytes(cid) for cid in comment_ids]
        return _int(await self._eval("recent_remove", [self._key("recent", stream)], args))

    # -- unique viewers -------------------------------------------------------------------------
    async def viewers_add(self, stream: str, viewer_ids: Sequence[str]) -> bool:
        self._check_open()
        if not viewer_ids:
            return False
        key = self._key("viewers", stream)
        # One pipeline round trip (the batcher joins concurrent calls): the estimate (12 KiB in
        # Redis) lives while some edge adds to or reads it, then lapses instead of staying forever.
        added, _ = await asyncio.gather(
            self._call("PFADD", key, *viewer_ids), self._call("EXPIRE", key, UNIQUE_VIEWERS_IDLE_S)
        )
        return _int(added) == 1

    async def viewers_count(self, stream: str) -> int:
        key = self._key("viewers", stream)
        count, _ = await asyncio.gather(
            self._call("PFCOUNT", key), self._call("EXPIRE", key, UNIQUE_VIEWERS_IDLE_S)
        )
        return _int(count)

    # -- counters -------------------------------------------------------------------------------
    async def incr(self, key: str, delta: int = 1, ttl_s: float | None = None) -> int:
        name = self._key("ctr", key)
        if ttl_s is None:
            return _int(await self._call("INCRBY", name, delta))
        return _int(await self._eval("incr_ttl", [name], [delta, _ms(ttl_s)]))

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        self._check_open()
        # One GET per key in one round trip: an MGET would cross slots on a cluster.
        futures = [self._batch.submit("GET", self._key("ctr", k)) for k in keys]
        values = []
        for fut in futures:
            try:
                value = await fut
            except REDIS_ERRORS as exc:
                raise translate(exc, "get") from exc
            values.append(0 if value is None else int(value))
        return values

    async def hincr_many(self, key: str, deltas: Mapping[str, int]) -> dict[str, int]:
        args: list[Any] = []
        for field, delta in deltas.items():
            args += [field, delta]
        flat = _bytes_list(await self._eval("hincr_many", [self._key("hctr", key)], args))
        return {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    # -- idempotency claims ---------------------------------------------------------------------
    async def claim(self, key: str, value: bytes, ttl_s: float) -> bytes | None:
        old = await self._call("SET", self._key("claim", key), value, "NX", "GET", "PX", _ms(ttl_s), get=True)
        if old is not None and not isinstance(old, bytes):
            raise BackendError(f"redis SET NX GET returned {old!r}")
        return old

    async def set_claim(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call("SET", self._key("claim", key), value, "PX", _ms(ttl_s))

    async def release_claim(self, key: str) -> None:
        await self._call("DEL", self._key("claim", key))

    # -- live contributions ---------------------------------------------------------------------
    def _contribution_keys(self, key: str) -> list[str]:
        base = self._key("contrib", key)
        return [f"{base}:v", f"{base}:d"]

    async def set_contribution(self, key: str, edge_id: str, value: int, ttl_s: float) -> None:
        await self._eval("set_contribution", self._contribution_keys(key), [edge_id, int(value), _ms(ttl_s)])

    async def sum_contributions(self, key: str) -> int:
        return _int(await self._eval("sum_contributions", self._contribution_keys(key), []))

    # -- node-id leases -------------------------------------------------------------------------
    def _node_keys(self) -> list[str]:
        return [self._key("node-lease", NODE_TAG), self._key("node-owner", NODE_TAG)]

    async def lease_node(self, edge_id: str, max_nodes: int, ttl_s: float) -> int:
        node = _int(await self._eval("lease", self._node_keys(), [edge_id, max_nodes, _ms(ttl_s)]))
        if node < 0:
            raise BackendError(f"all {max_nodes} node ids are leased by live edges")
        return node

    async def renew_node(self, edge_id: str, node: int, ttl_s: float) -> bool:
        return _int(await self._eval("renew", self._node_keys(), [edge_id, node, _ms(ttl_s)])) == 1

    async def release_node(self, edge_id: str, node: int) -> None:
        await self._eval("release", self._node_keys(), [edge_id, node])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._batch.aclose()
        await self._client.aclose()


def _field(ref: ConnectionRef) -> str:
    return f"{ref.edge_id}|{ref.conn_id}"


if TYPE_CHECKING:
    from livechat.ports.registry import Registry

    def _check_registry(r: RedisRegistry) -> Registry:
        return r
