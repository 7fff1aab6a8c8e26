"""A small RESP2 client for Redis: pipelined commands, Lua scripts and a push-message reader.

Why not redis-py: measured on this 2-core box with uvloop, 500 concurrent INCRBY calls cost
60 µs of client CPU each through redis-py's pool (and its default async pool raises "Too many
connections" under such a burst), 15 µs each through one pipelined connection here (67k/s vs
11k/s). Its pub/sub reader also builds a dict and awaits a metrics hook per message. A chat edge
makes several Redis calls per comment, so this is where Python's budget goes.

Model: one TCP connection per ``RedisClient``; commands are written at once and their replies
matched first-in-first-out, so many coroutines share the connection without waiting on each other
and one caller's commands reach Redis in call order. A reply slower than ``reply_timeout`` aborts
the connection (every waiter gets BackendUnavailable); the next call reconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast
from urllib.parse import unquote, urlsplit

from livechat.ports.errors import BackendError, BackendUnavailable, ConfigurationError


class RespError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


RespValue: TypeAlias = "bytes | int | list[RespValue] | RespError | None"
Arg: TypeAlias = "bytes | str | int | float"


class _Incomplete(Exception):
    pass


_INCOMPLETE = _Incomplete()


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ConfigurationError(f"not a redis:// URL: {url!r}")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ConfigurationError(f"redis URL database must be a number, got {path!r}")
        try:
            port = parts.port or 6379
        except ValueError as exc:
            raise ConfigurationError(f"bad port in {url!r}") from exc
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            db=int(path) if path else 0,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def encode_command(*args: Arg) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(b"\r\n")
    return b"".join(out)


def _parse(buf: bytearray, pos: int) -> tuple[RespValue, int]:
    """Parse one RESP2 value at ``pos``; raises _Incomplete when the buffer ends first."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _INCOMPLETE
    kind = buf[pos]
    if kind == 0x24:  # $ bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        start = end + 2
        stop = start + size
        if len(buf) < stop + 2:
            raise _INCOMPLETE
        return bytes(buf[start:stop]), stop + 2
    if kind == 0x2A:  # * array
        count = int(buf[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items: list[RespValue] = []
        pos = end + 2
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 0x3A:  # : integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 0x2B:  # + simple string
        return bytes(buf[pos + 1 : end]), end + 2
    if kind == 0x2D:  # - error
        return RespError(buf[pos + 1 : end].decode(errors="replace")), end + 2
    raise ValueError(f"unexpected RESP type byte {kind!r}")


class RespConnection(asyncio.Protocol):
    """One Redis connection. Replies to commands resolve futures in FIFO order; when ``on_push``
    is given (a subscribe connection), every array that arrives goes to it instead."""

    # Publishers wait once this much is queued in the socket buffer (Redis not keeping up).
    HIGH_WATER = 4 * 1024 * 1024

    def __init__(self, on_push: Callable[[list[RespValue]], None] | None, reply_timeout: float) -> None:
        self._on_push = on_push
        self._reply_timeout = reply_timeout
        self._buf = bytearray()
        self._waiters: deque[tuple[asyncio.Future[RespValue], float]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.lost_callback: Callable[[], None] | None = None

    @classmethod
    async def open(
        cls,
        address: RedisAddress,
        on_push: Callable[[list[RespValue]], None] | None = None,
        timeout: float = 5.0,
    ) -> RespConnection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: cls(on_push, timeout), address.host, address.port), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"cannot connect to redis {address.host}:{address.port}: {exc}") from exc
        try:
            if address.password is not None:
                auth: tuple[str, ...] = (address.password,)
                if address.username is not None:
                    auth = (address.username, address.password)
                await conn.call("AUTH", *auth)
            if address.db:
                await conn.call("SELECT", address.db)
        except RespError as exc:
            conn.close()
            raise ConfigurationError(f"redis refused the connection setup: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._closed = asyncio.get_running_loop().create_future()
        self._transport.set_write_buffer_limits(high=self.HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A quiet subscribe connection must still notice a dead peer (default Linux probes).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        size = len(buf)
        try:
            while pos < size:
                value, pos = _parse(buf, pos)
                self._dispatch(value)
        except _Incomplete:
            pass
        del buf[:pos]

    def _dispatch(self, value: RespValue) -> None:
        if self._on_push is not None and isinstance(value, list):
            self._on_push(value)
            return
        if not self._waiters:
            if self._on_push is not None:
                self._on_push([value])
            return
        waiter = self._waiters.popleft()[0]
        if waiter.done():
            return
        if isinstance(value, RespError):
            waiter.set_exception(value)
        else:
            waiter.set_result(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        error = BackendUnavailable(f"redis connection lost: {exc or 'closed'}")
        while self._waiters:
            waiter = self._waiters.popleft()[0]
            if not waiter.done():
                waiter.set_exception(error)
        self._writable.set()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self.lost_callback is not None:
            self.lost_callback()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- commands -------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes) -> None:
        """Write encoded commands whose replies arrive as pushes (subscribe-mode commands)."""
        if self._transport is None or self._transport.is_closing():
            raise BackendUnavailable("redis connection is closed")
        self._transport.write(data)

    def call_nowait(self, data: bytes) -> asyncio.Future[RespValue]:
        """Write one encoded command; returns the future of its reply (pipelined, FIFO)."""
        if self._transport is None or self._transport.is_closing():
            raise BackendUnavailable("redis connection is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[RespValue] = loop.create_future()
        self._waiters.append((waiter, time.monotonic()))
        self._transport.write(data)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._reply_timeout / 2, self._check_replies)
        return waiter

    def call_many_nowait(self, commands: Sequence[bytes]) -> list[asyncio.Future[RespValue]]:
        """``call_nowait`` of each encoded command, written with one ``write``."""
        if self._transport is None or self._transport.is_closing():
            raise BackendUnavailable("redis connection is closed")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        waiters: list[asyncio.Future[RespValue]] = []
        for _ in commands:
            waiter: asyncio.Future[RespValue] = loop.create_future()
            self._waiters.append((waiter, now))
            waiters.append(waiter)
        self._transport.write(b"".join(commands))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._reply_timeout / 2, self._check_replies)
        return waiters

    def _check_replies(self) -> None:
        self._watchdog = None
        if not self._waiters or self._transport is None:
            return
        if time.monotonic() - self._waiters[0][1] > self._reply_timeout:
            # Redis stopped answering: fail every waiter now rather than hang them.
            self._transport.abort()
            return
        self._watchdog = asyncio.get_running_loop().call_later(self._reply_timeout / 2, self._check_replies)

    async def call(self, *args: Arg) -> RespValue:
        waiter = self.call_nowait(encode_command(*args))
        await self.wait_writable()
        return await waiter

    async def wait_writable(self) -> None:
        if not self._writable.is_set():
            await self._writable.wait()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await self._closed


@dataclass(frozen=True, slots=True)
class LuaScript:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


class RedisClient:
    """A reconnecting, pipelined command connection (see the module docstring)."""

    def __init__(self, address: RedisAddress, reply_timeout: float = 5.0) -> None:
        self._address = address
        self._reply_timeout = reply_timeout
        self._conn: RespConnection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def _connection(self) -> RespConnection:
        conn = self._conn
        if conn is not None and conn.is_open:
            return conn
        async with self._lock:
            if self._closed:
                raise BackendUnavailable("redis client is closed")
            conn = self._conn
            if conn is None or not conn.is_open:
                conn = self._conn = await RespConnection.open(self._address, timeout=self._reply_timeout)
            return conn

    async def send(self, command: bytes) -> RespValue:
        """Send one encoded command; returns its reply. RespError for an error reply."""
        conn = self._conn
        if conn is None or not conn.is_open:
            conn = await self._connection()
        waiter = conn.call_nowait(command)
        # Written before any wait, so call order is wire order even under backpressure.
        await conn.wait_writable()
        return await waiter

    async def send_many(self, commands: Sequence[bytes]) -> list[RespValue | RespError]:
        """Send encoded commands in one write; their replies in order (an error reply as a
        RespError value, not raised). BackendUnavailable when the connection fails."""
        conn = self._conn
        if conn is None or not conn.is_open:
            conn = await self._connection()
        waiters = conn.call_many_nowait(commands)
        await conn.wait_writable()
        replies: list[RespValue | RespError] = []
        for waiter in waiters:
            try:
                replies.append(await waiter)
            except RespError as exc:
                replies.append(exc)
        return replies

    async def call(self, *args: Arg) -> RespValue:
        try:
            return await self.send(encode_command(*args))
        except RespError as exc:
            raise BackendError(f"redis {args[0]!r} failed: {exc}") from exc

    async def eval(self, script: LuaScript, keys: Sequence[Arg], args: Sequence[Arg]) -> RespValue:
        """Run a Lua script by its SHA; loads it (EVAL) when the server does not know it yet."""
        try:
            return await self.send(encode_command("EVALSHA", script.sha, len(keys), *keys, *args))
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise BackendError(f"redis script failed: {exc}") from exc
        try:
            return await self.send(encode_command("EVAL", script.source, len(keys), *keys, *args))
        except RespError as exc:
            raise BackendError(f"redis script failed: {exc}") from exc

    async def aclose(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()
