"""``LiveChatClient``: a typed asyncio client of the livechat protocol (docs/protocol.md).

    async with LiveChatClient("ws://127.0.0.1:8765/live", token) as client:
        await client.join("s1")
        ack = await client.post("s1", "hello")
        async for event in client.events():
            ...

What it does for you:

- **Requests with replies.** Every call carries a ``rid`` and returns the typed reply (``Ack``,
  ``Snapshot``, ``HistoryPage``...) or raises ``ServerError`` with the documented code.
- **Reconnect.** A dropped connection is re-opened with exponential backoff and full jitter
  (``ClientConfig.reconnect_*``). Every joined stream is re-joined with ``last_id`` = the newest
  comment id held; the missed comments come out as ``Comment(source="missed")`` events and deletes
  as ``Deleted`` events, or the ``Snapshot`` says ``gap=True`` when the server cannot list them.
- **Posts survive a reconnect.** A post whose ack was not received is resent once reconnected with
  the same ``cmid``; the server stores it once and returns the first ack (``duplicate=True``).
  Other requests that were in flight raise ``ConnectionLost`` (it is unknown whether they took
  effect); requests made while disconnected wait and go out once reconnected.
- **Duplicates dropped.** A comment seen once (snapshot, tick, ``ev``, ``missed``) is not emitted again.

One client belongs to one event loop. Events go to ``on_event`` when given, else to a buffer read by
``events()`` / ``next_event()`` (one reader).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgpack  # type: ignore[import-untyped]

from livechat.client.backoff import Backoff
from livechat.client.errors import AuthRejected, ClientClosed, ConnectionLost, ServerError
from livechat.client.events import (
    Ack,
    Comment,
    Deleted,
    Disconnected,
    Event,
    Gap,
    HistoryPage,
    Notice,
    Reconnected,
    Reconnecting,
    ServerErrorEvent,
    Snapshot,
    TopPage,
    state_changed,
    stream_event,
)
from livechat.client.moderation import ModerationQueue
from livechat.client.streams import SeenIds, StreamView
from livechat.client.transport import Connector, Transport, TransportName
from livechat.client.transport_factory import connector
from livechat.config import ClientConfig
from livechat.protocol.audience import KICKED_NOTICE
from livechat.protocol.codes import REPLY_TYPES, CloseCode, MessageType, Op
from livechat.protocol.rules import REVIEW_ACTIONS, RID_MAX, TOP_LIMIT_DEFAULT

log = logging.getLogger(__name__)

#: Close codes after which reconnecting with the same token cannot help (docs/protocol.md §7).
_REFUSED_TOKEN = frozenset({CloseCode.AUTH_REQUIRED, CloseCode.AUTH_INVALID})

TokenProvider = Callable[[], Awaitable[str]]


@dataclass(slots=True)
class _Pending:
    """A request waiting for its reply. ``make`` builds the message when it is (re)sent, so a
    re-join carries the ``last_id`` of that moment."""

    make: Callable[[], dict[str, Any]]
    future: asyncio.Future[Any]
    # Resent after a reconnect instead of failing with ConnectionLost: posts (same cmid) and joins.
    resend: bool
    join_stream: str | None = None
    sent: bool = False


#: A token is refreshed this long before its ``exp`` (or half its remaining life when shorter).
REFRESH_AHEAD_S = 60.0


def _unverified_claims(token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_subject(token: str | None) -> str | None:
    """The ``sub`` claim of a JWT, read without verifying it (the server verifies; the client only
    needs to know which comments are its own)."""
    sub = _unverified_claims(token).get("sub")
    return sub if isinstance(sub, str) else None


def token_expiry(token: str | None) -> float | None:
    """The ``exp`` claim of a JWT (Unix seconds), read without verifying it; None without one."""
    exp = _unverified_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class LiveChatClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        token_provider: TokenProvider | None = None,
        config: ClientConfig | None = None,
        transport: TransportName = "websockets",
        on_event: Callable[[Event], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``url``: the edge's WebSocket URL (``ws://host:port/live``). ``token``: a JWT, sent as
        ``Authorization: Bearer``; None = anonymous (read-only). ``token_provider`` is awaited for a
        fresh token on every (re)connect, so an expired token (close 4003) is replaced, and ahead of
        each token's ``exp`` (``REFRESH_AHEAD_S``), sent as a ``refresh`` op on the open
        connection (docs/protocol.md, "Token lifetime")."""
        if token is not None and token_provider is not None:
            raise ValueError("give either token or token_provider, not both")
        self._url = url
        self._token = token
        self._token_provider = token_provider
        self._config = config if config is not None else ClientConfig()
        self._connector: Connector = connector(transport)
        self._on_event = on_event
        self._backoff = Backoff(
            self._config.reconnect_initial_s,
            self._config.reconnect_max_s,
            self._config.reconnect_factor,
            rng,
        )
        self.user_id = token_subject(token)
        self._transport: Transport | None = None
        self._generation = 0
        # True once the connection is authenticated and every stream re-joined: user requests go out.
        self._ready = False
        self._opening = False
        self._closing = False
        self._final: BaseException | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        # Background re-joins after a server "gap" event (referenced so they are not collected).
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed_transport = asyncio.Event()
        self._next_rid = 0
        self._pending: dict[int, _Pending] = {}
        self._views: dict[str, StreamView] = {}
        self._last_error: tuple[str, str] | None = None
        self._events: deque[Event] = deque()
        self._events_ready = asyncio.Event()
        self.dropped_events = 0
        self.reconnects = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> LiveChatClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ready and self._transport is not None

    async def connect(self) -> None:
        """Open the connection; returns once the server accepted the token. Raises AuthRejected,
        OSError / TimeoutError / a handshake error when it cannot (no retry: a first connect that
        fails is the caller's to handle; later drops are retried by the client)."""
        if self._transport is not None or self._opening or self._reconnect_task is not None:
            raise RuntimeError("already connected")
        if self._final is not None:
            raise ClientClosed("this client was closed; make a new one")
        self._opening = True
        try:
            await self._open()
        except BaseException:
            self._drop_transport()
            raise
        finally:
            self._opening = False
        self._ready = True

    async def close(self) -> None:
        """Leave cleanly: close 1000, stop reconnecting, fail what is pending with ClientClosed."""
        if self._final is not None:
            return
        self._closing = True
        self._schedule_refresh(None)
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            await asyncio.gather(self._reconnect_task, return_exceptions=True)
        transport = self._transport
        if transport is not None:
            self._closed_transport.clear()
            transport.close(CloseCode.NORMAL, "")
            try:
                await asyncio.wait_for(self._closed_transport.wait(), self._config.connect_timeout_s)
            except TimeoutError:
                transport.abort()
        self._transport = None
        self._finish(ClientClosed("the client was closed"))

    async def _open(self) -> None:
        """One connection attempt: open the WebSocket, then a ping proves the token was accepted
        (the server handles a connection's open before its messages)."""
        token = self._token
        if self._token_provider is not None:
            token = await self._token_provider()
            self.user_id = token_subject(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._generation += 1
        self._last_error = None
        on_close = partial(self._on_transport_closed, self._generation)
        self._transport = await self._connector(self._url, headers, self._on_message, on_close, self._config)
        rid, future = await self._submit(lambda: {"op": Op.PING}, resend=False, now=True)
        await self._wait(rid, future, self._config.connect_timeout_s)
        self._schedule_refresh(token)

    def _schedule_refresh(self, token: str | None) -> None:
        """Refresh ``token`` ahead of its expiry (with a ``token_provider`` only); None: stop."""
        task, self._refresh_task = self._refresh_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        exp = token_expiry(token)
        if token is None or exp is None or self._token_provider is None or self._closing:
            return
        left = exp - time.time()
        delay = max(0.0, left - min(REFRESH_AHEAD_S, left / 2))
        self._refresh_task = asyncio.create_task(self._refresh_after(delay), name="livechat-client-refresh")

    async def _refresh_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        assert self._token_provider is not None
        try:
            token = await self._token_provider()
            await self._request(lambda: {"op": Op.REFRESH, "token": token})
        except Exception as exc:
            # The connection stays on its old token; at its expiry the reconnect takes a new one.
            log.warning("token refresh refused: %r", exc)
            return
        self.user_id = token_subject(token)
        self._schedule_refresh(token)

    def _drop_transport(self) -> None:
        """Abandon the current connection (a failed attempt): its close callback becomes stale."""
        transport, self._transport = self._transport, None
        self._ready = False
        self._generation += 1
        if transport is not None:
            transport.abort()
            self._lose_pending(None, CloseCode.ABNORMAL, "abandoned by the client")

    def _lose_pending(self, final: BaseException | None, code: int, reason: str) -> None:
        """The connection is gone: fail what cannot be resent, mark the rest to be sent again."""
        lost = ConnectionLost(code, reason)
        for rid, pending in list(self._pending.items()):
            if final is not None or (pending.sent and not pending.resend):
                del self._pending[rid]
                if not pending.future.done():
                    pending.future.set_exception(final if final is not None else lost)
            else:
                pending.sent = False

    def _on_transport_closed(self, generation: int, code: int, reason: str) -> None:
        if generation != self._generation:
            return
        self._transport = None
        self._ready = False
        self._closed_transport.set()
        final: BaseException | None = None
        if self._closing:
            final = ClientClosed("the client was closed")
        elif code in _REFUSED_TOKEN or (code == CloseCode.AUTH_EXPIRED and self._token_provider is None):
            error_code, message = self._last_error or (None, reason)
            final = AuthRejected(code, error_code, message)
        self._lose_pending(final, code, reason)
        self._emit(Disconnected(code, reason, final is not None))
        if final is not None:
            if not self._closing:
                self._finish(final)
            return
        if not self._opening and self._reconnect_task is None:
            self._reconnect_task = asyncio.create_task(self._reconnect(), name="livechat-client-reconnect")

    async def _reconnect(self) -> None:
        self._opening = True
        attempts = 0
        try:
            while not self._closing and self._final is None:
                delay = self._backoff.next_delay()
                attempts += 1
                self._emit(Reconnecting(attempts, delay))
                await asyncio.sleep(delay)
                try:
                    await self._open()
                    await self._restore()
                except AuthRejected as exc:
                    self._drop_transport()
                    self._finish(exc)
                    return
                except Exception as exc:
                    log.debug("reconnect attempt %d failed: %r", attempts, exc)
                    self._drop_transport()
                    continue
                if self._transport is None:
                    continue
                self._backoff.reset()
                self.reconnects += 1
                self._emit(Reconnected(attempts))
                return
        finally:
            self._opening = False
            self._reconnect_task = None

    async def _restore(self) -> None:
        """Re-join every stream (the user's own pending joins are resent as they are), then send
        what waited for the connection, posts with their original cmid."""
        user_joins = {p.join_stream for p in self._pending.values() if p.join_stream is not None}
        waits: list[tuple[int, asyncio.Future[Any]]] = []
        for rid, pending in sorted(self._pending.items()):
            if pending.join_stream is not None and not pending.sent:
                await self._send(rid, pending)
        for stream, view in list(self._views.items()):
            if stream not in user_joins and view.joined:
                waits.append(await self._submit(partial(self._join_message, stream), resend=False, now=True))
        results = await asyncio.gather(
            *(self._wait(rid, future, self._config.request_timeout_s) for rid, future in waits),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._ready = True
        for rid, pending in sorted(self._pending.items()):
            if not pending.sent and self._transport is not None:
                await self._send(rid, pending)

    def _finish(self, reason: BaseException) -> None:
        self._final = reason
        self._schedule_refresh(None)
        self._ready = False
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(reason)
        self._pending.clear()
        self._events_ready.set()

    # -- requests ----------------------------------------------------------------------------------

    async def _submit(
        self,
        make: Callable[[], dict[str, Any]],
        *,
        resend: bool,
        join_stream: str | None = None,
        now: bool = False,
    ) -> tuple[int, asyncio.Future[Any]]:
        """Register a request and send it when the connection is ready (``now``: as soon as a
        transport is open, for the client's own handshake and re-joins)."""
        if self._final is not None:
            raise ClientClosed("this client is closed") from self._final
        self._next_rid = self._next_rid + 1 if self._next_rid < RID_MAX else 1
        rid = self._next_rid
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = _Pending(make, future, resend, join_stream)
        self._pending[rid] = pending
        if self._transport is not None and (self._ready or now):
            await self._send(rid, pending)
        return rid, future

    async def _send(self, rid: int, pending: _Pending) -> None:
        transport = self._transport
        if transport is None:
            return
        message = pending.make()
        message["rid"] = rid
        pending.sent = True
        try:
            await transport.send(msgpack.packb(message))
        except ConnectionError:
            # Closed under us: the close callback decides (resend or ConnectionLost).
            pass

    async def _wait(self, rid: int, future: asyncio.Future[Any], timeout: float) -> Any:
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(rid, None)

    async def _request(
        self, make: Callable[[], dict[str, Any]], *, resend: bool = False, timeout: float | None = None
    ) -> Any:
        rid, future = await self._submit(make, resend=resend)
        return await self._wait(
            rid, future, timeout if timeout is not None else self._config.request_timeout_s
        )

    def _join_message(self, stream: str) -> dict[str, Any]:
        view = self._views.get(stream)
        last_id = view.rejoin_from() if view is not None else None
        if last_id is None:
            return {"op": Op.JOIN, "stream": stream}
        return {"op": Op.JOIN, "stream": stream, "last_id": last_id}

    # -- everyone ----------------------------------------------------------------------------------

    async def join(self, stream: str, *, timeout: float | None = None) -> Snapshot:
        """Join ``stream`` (or get a fresh snapshot of one already joined). The stream is re-joined
        after every reconnect until ``leave``."""
        view = self._views.get(stream)
        if view is None:
            view = self._views[stream] = StreamView(stream, SeenIds(self._config.dedupe_ids))
        rid, future = await self._submit(partial(self._join_message, stream), resend=True, join_stream=stream)
        try:
            snapshot: Snapshot = await self._wait(rid, future, timeout or self._config.request_timeout_s)
        except BaseException:
            if not view.joined:
                self._views.pop(stream, None)
            raise
        return snapshot

    async def leave(self, stream: str) -> None:
        """Leave ``stream``: its events stop, and it is not re-joined after a reconnect."""
        self._views.pop(stream, None)
        await self._request(lambda: {"op": Op.LEAVE, "stream": stream})

    def view(self, stream: str) -> StreamView | None:
        """The latest state of a joined stream (counts, reactions, tier, modes, pin, last id)."""
        return self._views.get(stream)

    async def history(self, stream: str, *, before: int | None = None, limit: int = 50) -> HistoryPage:
        message: dict[str, Any] = {"op": Op.HISTORY, "stream": stream, "limit": limit}
        if before is not None:
            message["before"] = before
        reply = await self._request(lambda: dict(message))
        items = tuple(Comment.from_wire(stream, raw, "tick") for raw in reply.get("items") or [])
        return HistoryPage(stream, items, bool(reply.get("more")))

    async def top(self, stream: str, *, limit: int = TOP_LIMIT_DEFAULT) -> TopPage:
        """The joined ``stream``'s top comments, best first (at most ``limit``, 1..50): its newest 500
        visible comments ranked by likes, replies, badge and the author's strikes; those scoring 0
        or less are left out, so the page may be empty. Anonymous viewers may ask too."""
        reply = await self._request(lambda: {"op": Op.TOP, "stream": stream, "limit": limit})
        return TopPage.from_wire(reply)

    async def ping(self) -> int:
        """The server's clock in Unix ms (a round trip through the whole server)."""
        reply = await self._request(lambda: {"op": Op.PING})
        return int(reply.get("ts", 0))

    # -- signed-in users ---------------------------------------------------------------------------

    async def post(
        self, stream: str, text: str, *, reply_to: int | None = None, cmid: str | None = None
    ) -> Ack:
        """Post a comment; returns once it is stored. ``cmid`` (default: a fresh uuid) makes a retry
        safe: the same cmid is stored once and answered with the first ack."""
        message: dict[str, Any] = {
            "op": Op.POST,
            "stream": stream,
            "text": text,
            "cmid": cmid or uuid.uuid4().hex,
        }
        if reply_to is not None:
            message["reply_to"] = reply_to
        reply = await self._request(lambda: dict(message), resend=True)
        return Ack(
            str(reply["s"]),
            str(reply["cmid"]),
            int(reply["id"]),
            int(reply.get("ts", 0)),
            bool(reply.get("dup")),
        )

    async def react(self, stream: str, emoji: str) -> None:
        """One of ``heart``, ``laugh``, ``wow``, ``sad``, ``angry``; totals come back in state slots."""
        await self._request(lambda: {"op": Op.REACT, "stream": stream, "emoji": emoji})

    async def like(self, stream: str, comment_id: int) -> None:
        await self._request(lambda: {"op": Op.LIKE, "stream": stream, "id": comment_id})

    async def unlike(self, stream: str, comment_id: int) -> None:
        await self._request(lambda: {"op": Op.UNLIKE, "stream": stream, "id": comment_id})

    async def report(
        self, stream: str, *, comment_id: int | None = None, user: str | None = None, reason: str = ""
    ) -> None:
        """Report a comment and/or a user to the stream's moderators (their ``queue``); 3 distinct
        reporters of one comment flag it for review."""
        message: dict[str, Any] = {"op": Op.REPORT, "stream": stream, "reason": reason}
        if comment_id is not None:
            message["id"] = comment_id
        if user is not None:
            message["user"] = user
        await self._request(lambda: dict(message))

    async def follow(self, stream: str) -> None:
        """Follow the channel ``stream`` belongs to (stored: followers-only mode counts from now)."""
        await self._request(lambda: {"op": Op.FOLLOW, "stream": stream})

    async def unfollow(self, stream: str) -> None:
        """Stop following; a later ``follow`` starts the follow age again from then."""
        await self._request(lambda: {"op": Op.UNFOLLOW, "stream": stream})

    # -- moderators and the broadcaster ------------------------------------------------------------

    async def _moderate(self, op: Op, stream: str, **fields: Any) -> None:
        await self._request(lambda: {"op": op, "stream": stream, **fields})

    async def delete(self, stream: str, comment_id: int) -> None:
        await self._moderate(Op.DELETE, stream, id=comment_id)

    async def purge(self, stream: str, user: str) -> None:
        await self._moderate(Op.PURGE, stream, user=user)

    async def timeout(self, stream: str, user: str, seconds: int, reason: str = "") -> None:
        await self._moderate(Op.TIMEOUT, stream, user=user, seconds=seconds, reason=reason)

    async def ban(self, stream: str, user: str, reason: str = "") -> None:
        await self._moderate(Op.BAN, stream, user=user, reason=reason)

    async def unban(self, stream: str, user: str) -> None:
        await self._moderate(Op.UNBAN, stream, user=user)

    async def pin(self, stream: str, comment_id: int) -> None:
        await self._moderate(Op.PIN, stream, id=comment_id)

    async def unpin(self, stream: str) -> None:
        await self._moderate(Op.UNPIN, stream)

    async def highlight(self, stream: str, comment_id: int) -> None:
        await self._moderate(Op.HIGHLIGHT, stream, id=comment_id)

    async def set_slow_mode(self, stream: str, seconds: int) -> None:
        """0 turns slow mode off."""
        await self._moderate(Op.SLOW, stream, seconds=seconds)

    async def set_followers_only(self, stream: str, min_age_s: int | None) -> None:
        """None turns followers-only off; 0 = any follower."""
        await self._moderate(Op.FOLLOWERS_ONLY, stream, min_age=min_age_s)

    async def set_comments(self, stream: str, enabled: bool) -> None:
        await self._moderate(Op.COMMENTS, stream, enabled=enabled)

    async def kick(self, stream: str, user: str) -> None:
        """Close ``user``'s connections in ``stream`` on every edge (no ban)."""
        await self._moderate(Op.KICK, stream, user=user)

    async def queue(self, stream: str, *, limit: int = 50, before: int | None = None) -> ModerationQueue:
        """A page of the moderation queue: pending flagged comments and reports."""
        message: dict[str, Any] = {"op": Op.QUEUE, "stream": stream, "limit": limit}
        if before is not None:
            message["before"] = before
        return ModerationQueue.from_wire(await self._request(lambda: dict(message)))

    async def review(self, stream: str, comment_id: int, *, approve: bool) -> None:
        """Resolve a flagged comment: approve (it stays) or not (it is deleted)."""
        action = REVIEW_ACTIONS[0] if approve else REVIEW_ACTIONS[1]
        await self._moderate(Op.REVIEW, stream, id=comment_id, action=action)

    # -- events ------------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("on_event raised for %s", type(event).__name__)
            return
        if len(self._events) >= self._config.event_buffer:
            self._events.popleft()
            self.dropped_events += 1
        self._events.append(event)
        self._events_ready.set()

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in order, until the client is closed (or gives up for good)."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._final is not None:
                return
            self._events_ready.clear()
            await self._events_ready.wait()

    async def next_event(self, timeout: float) -> Event:
        """The next event; TimeoutError after ``timeout`` s, ClientClosed once closed and drained."""
        async with asyncio.timeout(timeout):
            while not self._events:
                if self._final is not None:
                    raise ClientClosed("this client is closed") from self._final
                self._events_ready.clear()
                await self._events_ready.wait()
        return self._events.popleft()

    # -- inbound -----------------------------------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        try:
            message = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception:
            log.warning("dropping a server message that is not msgpack (%d bytes)", len(data))
            return
        if not isinstance(message, dict):
            return
        kind = message.get("t")
        if kind == MessageType.TICK:
            self._on_events(message, "tick")
        elif kind == MessageType.DIRECT:
            self._on_events(message, "direct")
        elif kind == MessageType.SNAPSHOT:
            self._on_snapshot(message)
        elif kind == MessageType.ERROR:
            self._on_error(message)
        elif kind == MessageType.NOTICE:
            until = message.get("until")
            reason = message.get("reason")
            if message.get("code") == KICKED_NOTICE:
                # Kicked: the connection is being closed; coming back must be the user's choice.
                self._views.pop(str(message.get("s", "")), None)
            self._emit(
                Notice(
                    str(message.get("s", "")),
                    str(message.get("code", "")),
                    str(message.get("msg", "")),
                    until if type(until) is int else None,
                    reason if isinstance(reason, str) else None,
                )
            )
        elif type(kind) is str and kind in REPLY_TYPES:
            self._resolve(message.get("rid"), message)
        else:
            log.debug("ignoring a server message of type %r", kind)

    def _resolve(self, rid: Any, result: Any) -> None:
        pending = self._pending.get(rid) if type(rid) is int else None
        if pending is not None and not pending.future.done():
            pending.future.set_result(result)

    def _on_events(self, message: Mapping[str, Any], source: Any) -> None:
        stream = str(message.get("s", ""))
        view = self._views.get(stream)
        if view is None:
            return  # left (or never joined): late frames of the stream are dropped
        for raw in message.get("e") or ():
            if not isinstance(raw, Mapping):
                continue
            event = stream_event(stream, raw, source)
            if type(event) is Comment:
                if not view.seen.add(event.id):
                    continue
                view.saw(event.id)
            elif type(event) is Gap:
                self._emit(event)
                self._rejoin(stream)
                continue
            else:
                view.apply(event)
            self._emit(event)
        slots = message.get("st")
        if isinstance(slots, Mapping) and slots:
            changed = state_changed(stream, slots)
            view.apply(changed)
            self._emit(changed)

    def _on_snapshot(self, message: Mapping[str, Any]) -> None:
        snapshot = Snapshot.from_wire(message)
        view = self._views.get(snapshot.stream)
        if view is not None:
            if snapshot.gap:
                view.seen.clear()
            fresh = [c for c in snapshot.missed if view.seen.add(c.id)]
            for comment in snapshot.recent:
                view.seen.add(comment.id)
                view.saw(comment.id)
            for comment in snapshot.missed:
                view.saw(comment.id)
            view.apply_snapshot(snapshot)
            self._emit(snapshot)
            for comment in fresh:
                self._emit(comment)
            for comment_id in snapshot.deleted:
                self._emit(Deleted(snapshot.stream, comment_id))
        self._resolve(message.get("rid"), snapshot)

    def _on_error(self, message: Mapping[str, Any]) -> None:
        code = str(message.get("code", ""))
        text = str(message.get("msg", ""))
        fields = {k: v for k, v in message.items() if k not in ("t", "code", "msg", "rid")}
        rid = message.get("rid")
        pending = self._pending.get(rid) if type(rid) is int else None
        if pending is None:
            self._last_error = (code, text)
            self._emit(ServerErrorEvent(code, text, fields))
            return
        if pending.join_stream is not None:
            view = self._views.get(pending.join_stream)
            if view is not None and not view.joined:
                del self._views[pending.join_stream]
        if not pending.future.done():
            pending.future.set_exception(ServerError(code, text, fields))

    def _rejoin(self, stream: str) -> None:
        """The server signalled a gap: re-join with the last id (the Snapshot event carries the result)."""

        async def rejoin() -> None:
            with contextlib.suppress(Exception):
                rid, future = await self._submit(partial(self._join_message, stream), resend=False)
                await self._wait(rid, future, self._config.request_timeout_s)

        task = asyncio.get_running_loop().create_task(rejoin(), name=f"livechat-client-rejoin-{stream}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
