"""``RedisBroker``: the Broker port on Redis 7 sharded pub/sub, one server or a Redis Cluster.

Channels, under a configurable prefix (default ``lc:``), all sharded (SPUBLISH / SSUBSCRIBE):

- ``{p}s:{stream}``   a stream's events
- ``{p}ctl``          control messages for every edge
- ``{p}ctl:{edge}``   control messages for one edge

On a cluster each channel lives on the master that owns its hash slot. The broker keeps one
subscribe connection per master that carries one of its channels (as redis-py's ClusterPubSub
does) and asks redis-py which master that is (``RedisCluster.get_node_from_key``); publishes go
through redis-py's cluster pipeline, which routes each SPUBLISH by slot and follows MOVED.

Wire format of one message: ``len(edge_id) (1 byte) + edge_id`` then one or more frames
``len(payload) (4 bytes, big-endian) + payload``. Events queued while the previous round trip
was in flight leave together, and the events of one stream among them share one message (up to
``MAX_MESSAGE_BYTES``): at 100 events per tick that is one SPUBLISH, one pub/sub message and one
parse per stream instead of 100. A receiver drops messages carrying its own edge id (the port's
no-echo rule) and messages on channels it is no longer subscribed to.

A lost subscribe connection (server restart, failover, killed client) is re-established with
backoff on whichever master now owns each of its channels; the streams it carried are then
reported through ``on_gap``. So is a channel whose slot migrated away (the server says
``sunsubscribe`` without being asked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis import exceptions as rex
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from livechat.backends.redis_connect import (
    CONFIRM_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    DEFAULT_PREFIX,
    HEALTH_INTERVAL_S,
    RECONNECT_MAX_S,
    RECONNECT_MIN_S,
    REDIS_ERRORS,
    REPLY_TIMEOUT_S,
    RedisClient,
    RedisTarget,
    node_client,
    open_client,
    translate,
)
from livechat.ports.broker import BrokerHandler
from livechat.ports.errors import BackendError, BackendUnavailable, ClosedError

log = logging.getLogger("livechat.backends.redis")

# Events of one stream share a message up to this size (Redis takes up to 512 MB; this keeps one
# message's parse short and a slow subscriber's output buffer small).
MAX_MESSAGE_BYTES = 256 * 1024
# A subscribe that meets MOVED (a slot that just moved) refreshes the topology and tries again.
SUBSCRIBE_ATTEMPTS = 3


def _edge_tag(edge_id: str) -> bytes:
    raw = edge_id.encode()
    if not 0 < len(raw) < 256:
        raise ValueError(f"edge id must be 1..255 bytes of UTF-8, got {len(raw)}")
    return bytes([len(raw)]) + raw


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def _frames(data: bytes, start: int) -> Iterator[bytes]:
    end = len(data)
    while start < end:
        size = int.from_bytes(data[start : start + 4], "big")
        start += 4
        if start + size > end:
            raise ValueError(f"truncated broker frame ({size} bytes announced, {end - start} left)")
        yield data[start : start + size]
        start += size


class _Topology:
    """Which server carries a channel: the one server, or (cluster) the master owning its slot,
    as redis-py's slot cache says."""

    def __init__(self, target: RedisTarget, client: RedisClient) -> None:
        self._target = target
        self._client = client

    def node_for(self, channel: bytes) -> tuple[str, str, int]:
        """(name, host, port) of the server for ``channel``."""
        if isinstance(self._client, RedisCluster):
            node = self._client.get_node_from_key(channel.decode("utf-8", "surrogateescape"))
            if node is None:
                raise BackendUnavailable(f"no cluster node serves {channel!r}")
            return node.name, node.host, int(node.port)
        host, port = self._target.nodes[0]
        return f"{host}:{port}", host, port

    async def refresh(self) -> None:
        """Re-read the slot map (cluster), e.g. after a failover; a no-op for one server."""
        if isinstance(self._client, RedisCluster):
            async with asyncio.timeout(CONNECT_TIMEOUT_S + REPLY_TIMEOUT_S):
                await self._client.nodes_manager.initialize()


@dataclass(slots=True)
class _Sent:
    """A SSUBSCRIBE/SUNSUBSCRIBE/PING written to a shard, awaiting its reply (Redis answers in
    order)."""

    kind: bytes
    channel: bytes
    done: asyncio.Future[None] | None


@dataclass(eq=False)
class _Shard:
    """One subscribe connection to one server and the channels it carries."""

    name: str
    client: Redis
    pubsub: PubSub
    channels: set[bytes] = field(default_factory=set)
    sent: deque[_Sent] = field(default_factory=deque)
    outbox: deque[_Sent] = field(default_factory=deque)
    reader: asyncio.Task[None] | None = None
    writer: asyncio.Task[None] | None = None
    pinger: asyncio.Task[None] | None = None
    alive: bool = True

    def send(self, kind: bytes, channel: bytes, wait: bool) -> asyncio.Future[None] | None:
        """Queue SSUBSCRIBE/SUNSUBSCRIBE of ``channel`` (or a PING); writes keep queue order."""
        done = asyncio.get_running_loop().create_future() if wait else None
        self.outbox.append(_Sent(kind, channel, done))
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())
        return done

    async def _write(self) -> None:
        try:
            while self.outbox and self.alive:
                sent = self.outbox.popleft()
                self.sent.append(sent)  # before the write: the reply may come before we resume
                if sent.kind == b"ssubscribe":
                    await self.pubsub.ssubscribe(sent.channel)
                elif sent.kind == b"sunsubscribe":
                    await self.pubsub.sunsubscribe(sent.channel)
                else:
                    await self.pubsub.ping()
        except Exception as exc:  # the reader sees the same broken connection and reports it
            log.debug("redis subscribe write to %s failed: %s", self.name, exc)
        finally:
            self.writer = None

    def reply(self, kind: bytes, channel: bytes) -> bool:
        """Match a confirmation to the oldest command; False when nobody asked for it."""
        if self.sent and self.sent[0].kind == kind and self.sent[0].channel == channel:
            sent = self.sent.popleft()
            if sent.done is not None and not sent.done.done():
                sent.done.set_result(None)
            return True
        return False

    def error(self, exc: Exception) -> None:
        """An error reply answers the oldest command."""
        if not self.sent:
            log.error("redis subscribe connection %s: unexpected error reply: %s", self.name, exc)
            return
        sent = self.sent.popleft()
        if sent.done is not None and not sent.done.done():
            sent.done.set_exception(exc)
        else:
            log.warning("redis %s of %r on %s failed: %s", sent.kind.decode(), sent.channel, self.name, exc)

    def fail(self, error: BackendError) -> None:
        self.alive = False
        for sent in [*self.sent, *self.outbox]:
            if sent.done is not None and not sent.done.done():
                sent.done.set_exception(error)
        self.sent.clear()
        self.outbox.clear()

    async def close(self) -> None:
        self.alive = False
        current = asyncio.current_task()
        for task in (self.reader, self.writer, self.pinger):
            if task is not None and task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()
        with contextlib.suppress(Exception):
            await self.client.aclose()


class _Publisher:
    """The one ordered publish path of a broker: calls queue (channel, frame) pairs in call order;
    one task at a time sends everything queued as one pipeline of SPUBLISH, frames of one channel
    joined into messages. Per channel, frames keep queue order within and across round trips."""

    def __init__(self, client: RedisClient, tag: bytes) -> None:
        self._client = client
        self._tag = tag
        self._queue: list[tuple[bytes, bytes, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def send(self, items: Sequence[tuple[bytes, bytes]]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.extend((channel, frame, done) for channel, frame in items)
        if self._task is None:
            self._task = loop.create_task(self._run())
        return done

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._flush(batch)
        finally:
            self._task = None

    def _messages(
        self, batch: Sequence[tuple[bytes, bytes, asyncio.Future[None]]]
    ) -> list[tuple[bytes, bytes, list[asyncio.Future[None]]]]:
        by_channel: dict[bytes, list[tuple[bytes, asyncio.Future[None]]]] = {}
        for channel, frame, done in batch:
            by_channel.setdefault(channel, []).append((frame, done))
        messages = []
        for channel, items in by_channel.items():
            waiters: list[asyncio.Future[None]] = []
            parts, size = [self._tag], len(self._tag)
            for frame, done in items:
                if len(parts) > 1 and size + len(frame) > MAX_MESSAGE_BYTES:
                    messages.append((channel, b"".join(parts), waiters))
                    parts, size, waiters = [self._tag], len(self._tag), []
                parts.append(frame)
                size += len(frame)
                waiters.append(done)
            messages.append((channel, b"".join(parts), waiters))
        return messages

    async def _flush(self, batch: Sequence[tuple[bytes, bytes, asyncio.Future[None]]]) -> None:
        messages = self._messages(batch)
        pipe = self._client.pipeline(transaction=False)
        for channel, message, _ in messages:
            pipe.execute_command("SPUBLISH", channel, message)
        results: Sequence[Any]
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            results = [exc] * len(messages)
        except BaseException:
            self._fail(batch, BackendUnavailable("broker closed"))
            raise
        for (_, _, waiters), result in zip(messages, results, strict=True):
            if isinstance(result, BaseException):
                error = translate(result, "publish")
                for done in waiters:
                    if not done.done():
                        done.set_exception(error)
        for _, _, done in batch:
            if not done.done():
                done.set_result(None)

    @staticmethod
    def _fail(batch: Sequence[tuple[bytes, bytes, asyncio.Future[None]]], error: BaseException) -> None:
        for _, _, done in batch:
            if not done.done():
                done.set_exception(error)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        queue, self._queue = self._queue, []
        self._fail(queue, ClosedError("broker is closed"))


class RedisBroker:
    """Broker over Redis 7 sharded pub/sub (one server or a cluster). See the module docstring."""

    def __init__(self, target: RedisTarget, client: RedisClient, edge_id: str, prefix: str) -> None:
        self._target = target
        self._client = client
        self._topology = _Topology(target, client)
        self._edge_id = edge_id
        self._tag = _edge_tag(edge_id)
        self._stream_prefix = f"{prefix}s:"
        self._ctl_all = f"{prefix}ctl".encode()
        self._ctl_mine = f"{prefix}ctl:{edge_id}".encode()
        self._ctl_prefix = f"{prefix}ctl:"
        self._publisher = _Publisher(client, self._tag)
        self._handler: BrokerHandler | None = None
        self._refs: dict[str, int] = {}
        # Channels this edge wants: every subscribed stream's, plus the two control channels.
        self._channels: dict[bytes, str] = {}
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._shards: dict[str, _Shard] = {}
        self._connecting: dict[str, asyncio.Future[_Shard]] = {}
        self._home: dict[bytes, _Shard] = {}  # channel -> the shard carrying (or subscribing) it
        self._lost: set[bytes] = set()  # wanted channels awaiting resubscription
        self._repair: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: str, edge_id: str, prefix: str = DEFAULT_PREFIX) -> RedisBroker:
        target = RedisTarget.parse(url)
        _edge_tag(edge_id)
        client = await open_client(target, f"livechat-pub:{edge_id}")
        broker = cls(target, client, edge_id, prefix)
        try:
            for channel in (broker._ctl_all, broker._ctl_mine):
                await broker._attach(channel)
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
        return (self._stream_prefix + stream).encode()

    def _wanted(self, channel: bytes) -> bool:
        return channel in self._channels or channel in (self._ctl_all, self._ctl_mine)

    # -- subscribe connections --------------------------------------------------------------------
    async def _shard(self, name: str, host: str, port: int) -> _Shard:
        """The live subscribe connection to ``name``, opened on first use (one per server)."""
        shard = self._shards.get(name)
        if shard is not None and shard.alive:
            return shard
        pending = self._connecting.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        opening: asyncio.Future[_Shard] = loop.create_future()
        opening.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._connecting[name] = opening
        try:
            client = node_client(self._target, host, port, f"livechat-sub:{self._edge_id}")
            pubsub = client.pubsub()
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S + REPLY_TIMEOUT_S):
                    await pubsub.connect()  # type: ignore[no-untyped-call]
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await client.aclose()
                raise translate(exc, f"subscribe connection to {name}") from exc
            if self._closed:
                await pubsub.aclose()
                await client.aclose()
                raise ClosedError("broker is closed")
            shard = _Shard(name, client, pubsub)
            shard.reader = loop.create_task(self._read(shard), name=f"livechat-redis-sub-{name}")
            shard.pinger = loop.create_task(self._ping(shard), name=f"livechat-redis-ping-{name}")
            self._shards[name] = shard
            opening.set_result(shard)
            return shard
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                opening.cancel()
            elif not opening.done():
                opening.set_exception(exc)
            raise
        finally:
            del self._connecting[name]

    async def _attach(self, channel: bytes) -> None:
        """Subscribe ``channel`` on the server that owns it and wait for the confirmation."""
        for attempt in range(SUBSCRIBE_ATTEMPTS):
            try:
                name, host, port = self._topology.node_for(channel)
            except REDIS_ERRORS as exc:
                raise translate(exc, "subscribe") from exc
            shard = await self._shard(name, host, port)
            shard.channels.add(channel)
            self._home[channel] = shard
            done = shard.send(b"ssubscribe", channel, wait=True)
            assert done is not None
            try:
                await asyncio.wait_for(asyncio.shield(done), CONFIRM_TIMEOUT_S)
                return
            except (rex.MovedError, rex.AskError) as exc:
                self._detach(channel, shard)
                if attempt + 1 == SUBSCRIBE_ATTEMPTS:
                    raise BackendUnavailable(f"redis kept redirecting the subscription: {exc}") from exc
                await self._refresh_topology()
            except TimeoutError as exc:
                # A server that does not confirm in time is treated as lost: what it carries is
                # resubscribed elsewhere (and reported as a gap).
                self._detach(channel, shard)
                self._lose(shard, BackendUnavailable(f"redis {name} did not confirm a subscription"))
                raise BackendUnavailable(f"redis {name} did not confirm a subscription in time") from exc
            except BaseException:
                self._detach(channel, shard)
                raise
        raise AssertionError("unreachable")

    def _detach(self, channel: bytes, shard: _Shard) -> None:
        shard.channels.discard(channel)
        if self._home.get(channel) is shard:
            del self._home[channel]

    async def _refresh_topology(self) -> None:
        try:
            await self._topology.refresh()
        except Exception as exc:
            log.warning("redis cluster topology refresh failed: %s", exc)

    async def _read(self, shard: _Shard) -> None:
        pubsub = shard.pubsub
        try:
            while True:
                try:
                    message = await pubsub.get_message(timeout=None)
                except rex.ResponseError as exc:  # an error reply, e.g. MOVED: the connection is fine
                    shard.error(exc)
                    continue
                if message is not None:
                    self._on_message(shard, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lose(shard, translate(exc, f"subscribe connection to {shard.name}"))

    async def _ping(self, shard: _Shard) -> None:
        """PING the subscribe connection every HEALTH_INTERVAL_S; no PONG in time = lost."""
        while shard.alive:
            await asyncio.sleep(HEALTH_INTERVAL_S)
            pong = shard.send(b"ping", b"", wait=True)
            assert pong is not None
            try:
                await asyncio.wait_for(asyncio.shield(pong), REPLY_TIMEOUT_S)
            except TimeoutError:
                self._lose(shard, BackendUnavailable(f"redis {shard.name} did not answer PING in time"))
                return
            except Exception:  # the connection failed; the reader reports it
                return

    def _on_message(self, shard: _Shard, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        if kind == "smessage":
            data = message["data"]
            if not isinstance(data, bytes) or not data or data[: data[0] + 1] == self._tag:
                return
            if channel in self._channels:
                self._deliver(self._channels[channel], data)
            elif channel in (self._ctl_all, self._ctl_mine):
                self._deliver(None, data)
        elif kind == "pong":
            shard.reply(b"ping", b"")
        elif kind in ("ssubscribe", "sunsubscribe"):
            if shard.reply(kind.encode(), channel):
                return
            if kind == "sunsubscribe" and self._home.get(channel) is shard and self._wanted(channel):
                # Unasked: the slot moved to another master. Resubscribe there and report a gap.
                log.info("redis moved channel %r away from %s; resubscribing", channel, shard.name)
                self._detach(channel, shard)
                self._lost.add(channel)
                self._start_repair()

    def _deliver(self, stream: str | None, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            frames = list(_frames(data, data[0] + 1))
        except ValueError:
            log.exception("dropped a malformed broker message")
            return
        for payload in frames:
            try:
                if stream is None:
                    handler.on_control(payload)
                else:
                    handler.on_message(stream, payload)
            except Exception:
                log.exception("broker handler failed on %s", stream or "a control message")
            if stream is not None and stream not in self._refs:
                return  # the handler unsubscribed: nothing more for this stream

    def _lose(self, shard: _Shard, error: BackendError) -> None:
        """A subscribe connection broke: everything it carried gets resubscribed (and a gap)."""
        if not shard.alive and self._shards.get(shard.name) is not shard:
            return
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        shard.fail(error)
        for channel in list(shard.channels):
            self._detach(channel, shard)
            if self._wanted(channel):
                self._lost.add(channel)
        if not self._closed:
            log.warning("redis subscribe connection %s lost: %s", shard.name, error)
            asyncio.get_running_loop().create_task(shard.close())
            self._start_repair()

    def _start_repair(self) -> None:
        if self._repair is None and self._lost and not self._closed:
            self._repair = asyncio.get_running_loop().create_task(self._resubscribe())

    async def _resubscribe(self) -> None:
        delay = RECONNECT_MIN_S
        try:
            while self._lost and not self._closed:
                await asyncio.sleep(delay)
                await self._refresh_topology()
                channels = [ch for ch in self._lost if self._wanted(ch)]
                self._lost.intersection_update(channels)
                results = await asyncio.gather(*(self._attach(ch) for ch in channels), return_exceptions=True)
                recovered: list[str] = []
                errors = []
                for channel, result in zip(channels, results, strict=True):
                    if isinstance(result, BaseException):
                        errors.append(result)
                        continue
                    self._lost.discard(channel)
                    if channel in self._channels:
                        recovered.append(self._channels[channel])
                if recovered:
                    log.info("redis broker resubscribed %d streams", len(recovered))
                    self._report_gap(recovered)
                if errors:
                    log.warning("redis broker resubscribe failed (retrying in %.2fs): %s", delay, errors[0])
                    delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self._repair = None

    def _report_gap(self, streams: list[str]) -> None:
        streams = [s for s in streams if s in self._refs]
        if self._closed or self._handler is None or not streams:
            return
        try:
            self._handler.on_gap(streams)
        except Exception:
            log.exception("broker handler failed in on_gap")

    # -- the port -----------------------------------------------------------------------------------
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
        channel = self._channel(stream)
        self._refs[stream] = 1
        self._channels[channel] = stream
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        confirmed.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending[stream] = confirmed
        try:
            await self._attach(channel)
            confirmed.set_result(None)
        except BaseException as exc:
            confirmed.set_exception(exc if isinstance(exc, Exception) else BackendUnavailable("cancelled"))
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
        self._lost.discard(channel)
        shard = self._home.pop(channel, None)
        if shard is not None:
            shard.channels.discard(channel)
            if shard.alive:
                shard.send(b"sunsubscribe", channel, wait=False)
        return True

    async def unsubscribe(self, stream: str) -> bool:
        self._check_open()
        return self._release(stream)

    async def _publish(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self._check_open()
        if items:
            await self._publisher.send(items)

    async def publish(self, stream: str, payload: bytes) -> None:
        await self._publish([(self._channel(stream), _frame(payload))])

    async def publish_many(self, events: Sequence[tuple[str, bytes]]) -> None:
        await self._publish([(self._channel(stream), _frame(payload)) for stream, payload in events])

    async def publish_control(self, payload: bytes, edge_id: str | None = None) -> None:
        channel = self._ctl_all if edge_id is None else (self._ctl_prefix + edge_id).encode()
        await self._publish([(channel, _frame(payload))])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._repair is not None:
            self._repair.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._repair
        self._refs.clear()
        self._channels.clear()
        self._lost.clear()
        self._home.clear()
        await self._publisher.aclose()
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            shard.fail(ClosedError("broker is closed"))
            await shard.close()
        with contextlib.suppress(Exception):
            await self._client.aclose()


if TYPE_CHECKING:
    from livechat.ports.broker import Broker

    def _check_broker(b: RedisBroker) -> Broker:
        return b
