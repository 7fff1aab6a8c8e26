"""Connecting to Redis with redis-py: URLs, client settings, error mapping and command batching.

Both Redis backends (``redis_broker``, ``redis_registry``) open their clients here, so every
timeout and retry rule lives in one place:

- ``redis://[user:password@]host:port[/db]``: one server, ``redis.asyncio.Redis``.
- ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster through
  ``redis.asyncio.cluster.RedisCluster``; the hosts are seeds, the library discovers the rest and
  routes every command by hash slot (nothing here computes a slot).

No retries (``Retry(NoBackoff(), 0)``): every write the backends make is non-idempotent (SPUBLISH
is at-most-once, INCR and the rate-window script count), so a command whose reply was lost must
fail rather than run twice. redis-py's default (10 retries with jittered backoff) turned one
black-holed request into 26 s; here an outage surfaces as ``BackendUnavailable`` within
``CONNECT_TIMEOUT_S + REPLY_TIMEOUT_S`` (1.5 s). A stale pooled connection (server restarted) is
still replaced on checkout by the pool's own liveness check, so no retry is needed for that.

Timeouts bound whole round trips (``asyncio.timeout`` around a pipeline), not socket operations:
redis-py's ``socket_timeout`` wraps every write in ``wait_for`` (a task each) and every reply in a
timer, which doubled the client CPU of a pipelined command here (12 -> 6 µs) and of a lone call
(60 -> 40 µs). A round trip cut short by the timeout closes its connection (redis-py drops a
connection whose read was cancelled), so no late reply is ever taken for another command's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import unquote

from redis import exceptions as rex
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from livechat.ports.errors import BackendError, BackendUnavailable, ConfigurationError

DEFAULT_PREFIX = "lc:"
# A round trip slower than this means "Redis unavailable" (loopback round trips are ~0.1 ms).
REPLY_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 0.5
# Subscription confirmations: SSUBSCRIBE answered within this, or the subscribe fails.
CONFIRM_TIMEOUT_S = 2.0
# A subscribe connection PINGs this often; no PONG within REPLY_TIMEOUT_S counts as lost (a
# black-holed connection never reports EOF, and its subscriptions would be lost silently).
HEALTH_INTERVAL_S = 1.0
# Resubscribing after a lost subscriber connection: backoff between attempts.
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0
# Commands per pipeline round trip (a burst larger than this takes several round trips).
MAX_BATCH = 2000
# Commands in flight per cluster node: the batcher keeps one pipeline in flight, so this only
# bounds the rare direct calls (script reloads); redis-py raises MaxConnectionsError beyond it.
CLUSTER_MAX_CONNECTIONS = 32

RedisClient: TypeAlias = "Redis | RedisCluster"
# Everything redis-py raises (cluster errors do not derive from RedisError).
REDIS_ERRORS = (rex.RedisError, rex.RedisClusterException)

SCHEMES = ("redis", "redis+cluster")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Redis URL."""

    cluster: bool
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in SCHEMES:
            raise ConfigurationError(f"not a redis:// or redis+cluster:// URL: {url!r}")
        netloc, _, path = rest.partition("/")
        path = path.strip("/")
        username = password = None
        if "@" in netloc:
            userinfo, _, netloc = netloc.rpartition("@")
            user, has_password, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if has_password else None
        nodes = tuple(_host_port(part, url) for part in netloc.split(",") if part)
        if not nodes:
            raise ConfigurationError(f"redis URL names no host: {url!r}")
        if path and not path.isdigit():
            raise ConfigurationError(f"redis URL database must be a number, got {path!r}")
        db = int(path or 0)
        cluster = scheme == "redis+cluster"
        if cluster and db:
            raise ConfigurationError(f"a Redis Cluster has only database 0: {url!r}")
        if not cluster and len(nodes) > 1:
            raise ConfigurationError(f"redis:// takes one host; use redis+cluster:// for several: {url!r}")
        return cls(cluster, nodes, db, username, password)


def _host_port(part: str, url: str) -> tuple[str, int]:
    host, sep, port = part.rpartition(":")
    if not sep:
        host, port = part, "6379"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"bad host:port {part!r} in redis URL {url!r}")
    return host, int(port)


def no_retry() -> Retry:
    """Fail on the first error (see the module docstring for why)."""
    return Retry(NoBackoff(), 0)


def _common(target: RedisTarget, name: str) -> dict[str, Any]:
    return {
        # CLIENT LIST shows which edge holds which connection (names may not contain spaces).
        "client_name": "".join(c if c.isprintable() and not c.isspace() else "_" for c in name),
        "username": target.username,
        "password": target.password,
        "socket_timeout": None,  # see the module docstring: callers bound round trips
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "retry": no_retry(),
    }


async def open_client(target: RedisTarget, name: str) -> RedisClient:
    """A command client named ``name``, checked with one round trip; BackendUnavailable when
    unreachable."""
    client: RedisClient
    if target.cluster:
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=CLUSTER_MAX_CONNECTIONS,
            **_common(target, name),
        )
    else:
        host, port = target.nodes[0]
        client = Redis(host=host, port=port, db=target.db, **_common(target, name))
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S + REPLY_TIMEOUT_S):
            if isinstance(client, RedisCluster):
                await client.initialize()
            else:
                await client.ping()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await client.aclose()
        if isinstance(exc, Exception):
            raise translate(exc, "connect") from exc
        raise
    return client


def node_client(target: RedisTarget, host: str, port: int, name: str) -> Redis:
    """A client for one server, used for its subscribe connection only. Errors are not retried
    at all (not even the reconnect redis-py's PubSub makes inside a failed read): a lost
    subscriber connection is the broker's to handle, with a gap report."""
    settings = _common(target, name)
    settings["retry"] = Retry(NoBackoff(), 0, supported_errors=())
    return Redis(host=host, port=port, db=target.db, **settings)


def translate(exc: BaseException, what: str) -> BackendError:
    """The port's error for a redis-py exception: unreachable/timeouts/cluster down ->
    BackendUnavailable, anything the server refused -> BackendError."""
    if isinstance(exc, BackendError):
        return exc
    unavailable = (
        rex.ConnectionError,  # MaxConnectionsError is one too
        rex.TimeoutError,
        rex.ClusterDownError,
        rex.TryAgainError,
        rex.SlotNotCoveredError,
        rex.BusyLoadingError,
        OSError,
        asyncio.TimeoutError,
    )
    if isinstance(exc, unavailable):
        return BackendUnavailable(f"redis {what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, rex.RedisClusterException) and "connect" in str(exc).lower():
        return BackendUnavailable(f"redis {what}: {exc}")
    return BackendError(f"redis {what}: {type(exc).__name__}: {exc}")


class CommandBatcher:
    """Concurrent commands share one pipeline round trip (redis-py does not multiplex a
    connection): while a command is in flight, calls queue theirs; one drain task at a time sends
    everything queued as a non-transactional pipeline and hands each caller its own reply or
    error. A call made while nothing else is in flight goes straight out (a pipeline and a task
    for one command cost ~30 µs more).

    Effects: a burst of N calls costs ~N/MAX_BATCH round trips, not N; client CPU per command is
    a pipeline's, not a full request's; and a burst never exceeds the connection pool (at most one
    pipeline and one lone command in flight: two connections per node).
    """

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._pending: list[tuple[tuple[tuple[Any, ...], dict[str, Any]], asyncio.Future[Any]]] = []
        self._drain: asyncio.Task[None] | None = None
        self._direct = False
        self._closed = False

    def submit(self, *args: Any, **options: Any) -> asyncio.Future[Any]:
        """Queue one command for the next pipeline; await the result (redis-py's errors as
        raised by redis-py). Commands one caller queues run in the order it queued them.
        ``options`` go to redis-py's reply parsing (e.g. ``get=True`` for SET ... GET)."""
        if self._closed:
            raise RuntimeError("command batcher is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append(((args, options), fut))
        if self._drain is None:
            self._drain = loop.create_task(self._run())
        return fut

    async def call(self, *args: Any, **options: Any) -> Any:
        """One command's reply, alone when nothing else is in flight, else in the next pipeline.
        A redis-py error is raised as the port's BackendError; redis-py's NoScriptError passes
        through (the caller loads the script)."""
        try:
            if self._direct or self._drain is not None or self._closed:
                return await self.submit(*args, **options)
            self._direct = True
            try:
                async with asyncio.timeout(REPLY_TIMEOUT_S):
                    return await self._client.execute_command(*args, **options)
            finally:
                self._direct = False
        except rex.NoScriptError:
            raise
        except (*REDIS_ERRORS, TimeoutError) as exc:
            raise translate(exc, str(args[0]).lower()) from exc

    async def _run(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._send(batch)
        finally:
            self._drain = None

    async def _send(
        self, batch: Sequence[tuple[tuple[tuple[Any, ...], dict[str, Any]], asyncio.Future[Any]]]
    ) -> None:
        pipe = self._client.pipeline(transaction=False)
        for (args, options), _ in batch:
            pipe.execute_command(*args, **options)
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                results: Sequence[Any] = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the whole round trip failed (TimeoutError included)
            results = [exc] * len(batch)
        except BaseException:  # cancelled (aclose): nobody may wait forever
            fail_all(batch, BackendUnavailable("redis client closed"))
            raise
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def aclose(self) -> None:
        """Fail whatever is queued and stop; the client itself is the caller's to close."""
        self._closed = True
        drain, self._drain = self._drain, None
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        pending, self._pending = self._pending, []
        fail_all(pending, BackendUnavailable("redis client closed"))


def fail_all(batch: Sequence[tuple[Any, asyncio.Future[Any]]], error: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(error)
