"""ChatService: one edge's chat domain behind four entry points.

- ``on_open(conn, path_and_query, authorization)``: JWT check; refused connections get an error and
  the matching close code.
- ``on_messages([(conn, data), ...])``: a batch of client frames in arrival order. Posts are admitted
  one by one and stored with one durable write per batch; other operations run in order.
- ``on_close(conn)``.
- ``on_remote(stream, payload)`` (via ``RemoteEvents``, the Broker handler): events from other edges.

``on_edge_events`` adapts ``Edge.drain()`` batches to these. Output goes to the ``Outbox`` (the edge)
and, in cluster mode, to the Broker; storage goes through the ports. ``start``/``aclose`` run the
periodic work (tiers, engagement state slots, expiry) and the moderation review workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from livechat.auth import AuthError, TokenVerifier, stronger
from livechat.config import ChatConfig
from livechat.ids import CommentIdGenerator, id_timestamp_ms
from livechat.ports.broker import Broker
from livechat.ports.comment_log import CommentLog
from livechat.ports.errors import BackendError
from livechat.ports.history import HistoryStore
from livechat.ports.meta import MetaStore
from livechat.ports.registry import Registry
from livechat.protocol import (
    ClientDecoder,
    ErrorCode,
    EventKind,
    History,
    Join,
    Leave,
    Like,
    ModeratorMessage,
    Ping,
    Post,
    ProtocolError,
    Raw,
    RawArray,
    React,
    Report,
    StateKey,
    encode_direct,
    encode_error,
    encode_history,
    encode_ok,
    encode_pong,
    modes_fields,
    pack_map,
    packb,
    tier_fields,
    unpackb,
)
from livechat.services.actions import ModeratorActions
from livechat.services.background import Background
from livechat.services.clock import Clock, SystemClock
from livechat.services.comments import CommentPipeline
from livechat.services.context import ChatContext
from livechat.services.engagement import Engagement
from livechat.services.fanout import TAG_BROADCAST, TAG_PRIORITY, TAG_SAMPLED, Fanout
from livechat.services.idempotency import IdempotencyCache
from livechat.services.limits import ErrorBudget, WriteLimits
from livechat.services.moderation import STRIKES, Classifier, HttpClassifier, ModerationPipeline, ReviewQueue
from livechat.services.outbox import Outbox
from livechat.services.remote import modes_from, pin_from, store_remote
from livechat.services.rooms import Room, RoomDirectory
from livechat.services.sampling import Sampler
from livechat.services.sessions import Member, Session, SessionTable, member_for

log = logging.getLogger(__name__)

#: Housekeeping that need not run every engagement flush (expiry, pruning), in seconds.
PRUNE_EVERY_S = 5.0


class ChatService:
    def __init__(
        self,
        config: ChatConfig,
        outbox: Outbox,
        *,
        log: CommentLog,
        history: HistoryStore,
        meta: MetaStore,
        registry: Registry | None = None,
        broker: Broker | None = None,
        classifier: Classifier | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``classifier`` defaults to an HttpClassifier on ``config.moderation.classifier_url`` (when
        set); ``registry`` makes engagement totals cluster-wide; ``broker`` fans events out to other
        edges (register ``RemoteEvents(chat)`` as its handler)."""
        clock = clock if clock is not None else SystemClock()
        if classifier is None and config.moderation.classifier_url is not None:
            classifier = HttpClassifier(
                config.moderation.classifier_url, config.moderation.classifier_concurrency
            )
        background = Background()
        self._config = config
        self._verifier = TokenVerifier(config.auth)
        self._classifier = classifier
        self._ctx = ctx = ChatContext(
            config=config,
            outbox=outbox,
            log=log,
            history=history,
            meta=meta,
            clock=clock,
            sessions=SessionTable(),
            rooms=RoomDirectory(config.rooms, meta, history, clock, broker),
            limits=WriteLimits(config.limits),
            error_budget=ErrorBudget(config.limits.max_errors_per_minute),
            idempotency=IdempotencyCache(
                config.limits.idempotency_window_s, config.limits.idempotency_max_entries
            ),
            sampler=Sampler(config.sampling),
            moderation=ModerationPipeline(config.moderation, clock, classifier),
            engagement=Engagement(config.rooms, registry),
            fanout=Fanout(outbox, broker, background),
            background=background,
            # node_id -1 ("auto") is resolved by LiveChatServer for clusters; alone, it is node 0.
            ids=CommentIdGenerator(max(config.node_id, 0), lambda: int(clock.time() * 1000)),
        )
        self._decoder = ClientDecoder(config.limits)
        self._actions = ModeratorActions(ctx)
        self._reviews = (
            ReviewQueue(
                ctx.moderation,
                self._actions.retro,
                clock,
                config.moderation.classifier_concurrency,
                config.moderation.classifier_timeout_s,
            )
            if classifier is not None
            else None
        )
        self._comments = CommentPipeline(ctx, self._reviews)
        self._tiers: dict[str, tuple[int, float]] = {}
        # The last remote priority event being applied (they run in arrival order).
        self._remote_tail: asyncio.Task[None] | None = None
        self._last_prune = clock.monotonic()
        self._periodic: asyncio.Task[None] | None = None
        # Joins that subscribed a connection to a stream (a repeated join only resends a snapshot).
        self.joins = 0
        # Connections refused at open, by error code (auth_invalid, auth_expired, auth_required).
        self.auth_refused: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def context(self) -> ChatContext:
        return self._ctx

    @property
    def reviews(self) -> ReviewQueue | None:
        return self._reviews

    async def start(self, periodic: bool = True) -> None:
        """Load site-wide bans, start the review workers and (``periodic``) the housekeeping task;
        without it the caller runs ``housekeeping`` itself."""
        await self._ctx.rooms.load_global_bans()
        if self._reviews is not None:
            self._reviews.start()
        if periodic and self._periodic is None:
            self._periodic = asyncio.create_task(self._run_periodic())

    async def aclose(self) -> None:
        """Store what is pending, stop the workers, wait for background writes."""
        if self._periodic is not None:
            self._periodic.cancel()
            await asyncio.gather(self._periodic, return_exceptions=True)
            self._periodic = None
        await self._comments.flush()
        if self._reviews is not None:
            await self._reviews.aclose()
        await self._ctx.background.drain()
        if self._classifier is not None:
            await self._classifier.aclose()

    async def _run_periodic(self) -> None:
        interval = self._config.rooms.engagement_flush_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.housekeeping()
            except Exception:
                log.exception("chat housekeeping failed")

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for /metrics (``livechat.server.metrics``); snapshots, not live views."""
        ctx = self._ctx
        now = ctx.clock.monotonic()
        return {
            "sessions": len(ctx.sessions),
            "rooms": len(ctx.rooms.rooms()),
            "joins": self.joins,
            "auth_refused": dict(self.auth_refused),
            "comments": dict(self._comments.counters),
            "comments_pending": self._comments.pending,
            "posts_refused": dict(ctx.posts_refused),
            "errors_sent": dict(ctx.errors_sent),
            "moderation": dict(ctx.moderation.counters),
            "moderation_verdicts": dict(ctx.moderation.verdicts),
            "moderation_latency": ctx.moderation.latency.snapshot(),
            "breaker": str(ctx.moderation.breaker.state),
            # stream -> (tier level, comments per second), for streams with recent comments.
            "tiers": {
                stream: (tier.level, tier.rate)
                for stream in ctx.sampler.streams()
                for tier in (ctx.sampler.tier(stream, now),)
            },
            "idempotency_entries": len(ctx.idempotency),
            "background_failures": ctx.background.failures,
        }

    # -- edge events -------------------------------------------------------------------------------

    async def on_edge_events(
        self, events: Sequence[tuple[int, int, Any]], open_kind: int, message_kind: int, close_kind: int
    ) -> None:
        """Handle one ``Edge.drain()`` batch (the kinds are ``livechat._edge.EVENT_*``)."""
        messages: list[tuple[int, bytes | str]] = []
        for kind, conn, data in events:
            if kind == message_kind:
                messages.append((conn, data))
                continue
            if messages:
                await self.on_messages(messages)
                messages = []
            if kind == open_kind:
                path_and_query, _peer, authorization = data
                self.on_open(conn, path_and_query, authorization)
            elif kind == close_kind:
                self.on_close(conn)
        if messages:
            await self.on_messages(messages)

    def on_open(self, conn_id: int, path_and_query: str, authorization: str | None) -> bool:
        """Authenticate a new connection. False (and the connection is being closed) when refused."""
        ctx = self._ctx
        try:
            principal = self._verifier.authenticate(path_and_query, authorization)
        except AuthError as exc:
            self.auth_refused[exc.code.value] = self.auth_refused.get(exc.code.value, 0) + 1
            ctx.outbox.send(conn_id, encode_error(exc.code, exc.message))
            ctx.outbox.close(conn_id, exc.close_code, exc.message)
            return False
        ctx.sessions.add(Session(conn_id, principal))
        return True

    def on_close(self, conn_id: int) -> None:
        ctx = self._ctx
        session = ctx.sessions.remove(conn_id)
        ctx.error_budget.forget(conn_id)
        if session is None:
            return
        for stream in session.streams:
            self._viewer_left(stream)

    async def on_messages(self, batch: Sequence[tuple[int, bytes | str]]) -> None:
        """Handle client frames in order. Posts are admitted here and stored by the writer task
        (one write per batch, see ``livechat.services.comments``); this returns without waiting
        for storage unless more than ``comments.HIGH_WATER`` comments are waiting."""
        ctx = self._ctx
        sessions = ctx.sessions
        decode = self._decoder.decode
        # Consecutive posts are admitted together (one call per phase); any other message first
        # settles the posts before it, so each connection's messages take effect in order.
        posts: list[tuple[Session, Post]] = []
        for conn, data in batch:
            session = sessions.get(conn)
            if session is None:
                continue
            try:
                msg = decode(data)
            except ProtocolError as error:
                ctx.reply_error(conn, error)
                continue
            if type(msg) is Post:
                posts.append((session, msg))
                continue
            if posts:
                self._admit(posts)
                posts = []
            try:
                await self._dispatch(session, msg)
            except Exception:
                # A bug must cost one reply, not the rest of the batch.
                log.exception("handling %s from connection %d failed", type(msg).__name__, conn)
                ctx.reply_error(
                    conn, ProtocolError(ErrorCode.INTERNAL, "internal error", getattr(msg, "rid", None))
                )
        if posts:
            self._admit(posts)
        await self._comments.backpressure()

    def _admit(self, posts: list[tuple[Session, Post]]) -> None:
        try:
            self._comments.admit_batch(posts)
        except Exception:
            # A bug must cost these posts an error reply, not the rest of the batch.
            log.exception("admitting %d posts failed", len(posts))
            for session, post in posts:
                self._ctx.reply_error(
                    session.conn,
                    ProtocolError(ErrorCode.INTERNAL, "internal error", post.rid, cmid=post.cmid),
                )

    async def flush(self) -> None:
        """Wait until every post handed in so far is stored and acknowledged (or refused)."""
        await self._comments.flush()

    async def _dispatch(self, session: Session, msg: Any) -> None:
        kind = type(msg)
        if kind is Join:
            await self._join(session, msg)
        elif kind is Leave:
            self._leave(session, msg)
        elif kind is React:
            self._react(session, msg)
        elif kind is Like:
            self._like(session, msg)
        elif kind is History:
            await self._history(session, msg)
        elif kind is Ping:
            self._ctx.outbox.send(session.conn, encode_pong(msg.rid, int(self._ctx.clock.time() * 1000)))
        elif kind is Report:
            await self._actions.report(session, msg)
        else:
            moderator_msg: ModeratorMessage = msg
            await self._actions.handle(session, moderator_msg)

    # -- join / leave / snapshot -------------------------------------------------------------------

    async def _member(self, session: Session, room: Room) -> Member:
        principal = session.principal
        role = principal.role_in(room.stream)
        user = principal.user_id
        if user is None:
            return member_for(role, None)
        meta = self._ctx.meta
        stored_role, follow_since = await asyncio.gather(
            meta.get_role(room.stream, user), meta.followed_since(room.owner_id, user)
        )
        if not session.strikes_loaded:
            reputation = await meta.get_reputation(user)
            session.strikes = max(session.strikes, reputation.get(STRIKES))
            session.strikes_loaded = True
        return member_for(stronger(role, stored_role), follow_since)

    async def _join(self, session: Session, msg: Join) -> None:
        ctx = self._ctx
        stream = msg.stream
        member = session.streams.get(stream)
        if member is None and len(session.streams) >= self._config.limits.max_streams_per_connection:
            ctx.reply_error(
                session.conn,
                ProtocolError(ErrorCode.TOO_MANY_STREAMS, "leave a stream before joining another", msg.rid),
            )
            return
        try:
            room = await ctx.rooms.open(stream)
            if member is None:
                member = await self._member(session, room)
        except BackendError as exc:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.UNAVAILABLE, f"storage unavailable: {exc}", msg.rid)
            )
            return
        if ctx.sessions.get(session.conn) is not session:
            return  # closed while loading
        if stream not in session.streams:
            session.streams[stream] = member
            # Subscribe before the snapshot is built: nothing published from now on is missed (a
            # client may see an event both in the snapshot and in a tick; ids tell them apart).
            ctx.outbox.subscribe(session.conn, stream)
            room.viewers += 1
            self.joins += 1
            ctx.engagement.viewers(stream, 1)
        ctx.outbox.send(session.conn, await self._snapshot(member, room, msg))

    async def _snapshot(self, member: Member, room: Room, msg: Join) -> bytes:
        ctx = self._ctx
        config = self._config.rooms
        stream = room.stream
        recent = room.recent.latest(config.snapshot_comments)
        engagement = ctx.engagement.snapshot(stream, [cid for cid, _ in recent])
        tier = ctx.sampler.tier(stream, ctx.clock.monotonic())
        modes = room.modes
        fields: dict[str, Any] = {
            "t": "snapshot",
            "s": stream,
            "role": str(member.role),
            "recent": RawArray([payload for _, payload in recent]),
            "pin": Raw(room.pin.payload) if room.pin is not None else None,
            "hl": list(room.highlights),
            StateKey.COUNTS.value: engagement[StateKey.COUNTS],
            StateKey.REACTIONS.value: engagement[StateKey.REACTIONS],
            StateKey.LIKES.value: engagement[StateKey.LIKES],
            "modes": modes_fields(modes.slow_seconds, modes.followers_only_min_age_s, modes.comments_off),
            StateKey.TIER.value: tier_fields(tier.level, tier.keep_ppm, tier.rate),
            "last": room.recent.newest_id(),
        }
        if msg.last_id is not None:
            missed, deleted = await self._recover(room, msg.last_id)
            fields["gap"] = missed is None
            if missed is not None:
                fields["missed"] = RawArray(missed)
                fields["del"] = deleted
        if msg.rid is not None:
            fields["rid"] = msg.rid
        return pack_map(fields)

    async def _recover(self, room: Room, last_id: int) -> tuple[list[bytes] | None, list[int]]:
        """(comments after ``last_id`` oldest first, or None for a gap; ids deleted since)."""
        limit = self._config.rooms.recover_max
        missed = room.recent.after(last_id, limit)
        history = self._ctx.history
        try:
            if missed is None:
                stored = await history.after(room.stream, last_id, limit + 1)
                if len(stored) > limit:
                    return None, []
                missed = [comment.payload for comment in stored]
            tombstones = await history.tombstones_since(room.stream, id_timestamp_ms(last_id) / 1000.0, limit)
        except BackendError as exc:
            log.warning("recovery of %s failed, signalling a gap: %s", room.stream, exc)
            return None, []
        return missed, [tombstone.comment_id for tombstone in tombstones]

    def _leave(self, session: Session, msg: Leave) -> None:
        ctx = self._ctx
        if session.streams.pop(msg.stream, None) is None:
            ctx.reply_error(session.conn, ProtocolError(ErrorCode.NOT_JOINED, "not in this stream", msg.rid))
            return
        ctx.outbox.unsubscribe(session.conn, msg.stream)
        self._viewer_left(msg.stream)
        if msg.rid is not None:
            ctx.outbox.send(session.conn, encode_ok(msg.rid, "leave"))

    def _viewer_left(self, stream: str) -> None:
        room = self._ctx.rooms.get(stream)
        if room is not None:
            room.viewers -= 1
        self._ctx.engagement.viewers(stream, -1)

    # -- engagement and reads ----------------------------------------------------------------------

    def _writer(self, session: Session, stream: str, rid: int | None) -> str | None:
        """The user id when this session may write to ``stream``; else replies the error."""
        ctx = self._ctx
        if stream not in session.streams:
            ctx.reply_error(session.conn, ProtocolError(ErrorCode.NOT_JOINED, "join the stream first", rid))
            return None
        user = session.principal.user_id
        if user is None:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.READ_ONLY, "anonymous viewers are read-only", rid)
            )
            return None
        if not ctx.limits.take_reaction(user, ctx.clock.monotonic()):
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.RATE_LIMITED, "too many reactions", rid, retry_ms=1000)
            )
            return None
        return user

    def _react(self, session: Session, msg: React) -> None:
        if self._writer(session, msg.stream, msg.rid) is None:
            return
        self._ctx.engagement.react(msg.stream, msg.emoji)
        if msg.rid is not None:
            self._ctx.outbox.send(session.conn, encode_ok(msg.rid, "react"))

    def _like(self, session: Session, msg: Like) -> None:
        user = self._writer(session, msg.stream, msg.rid)
        if user is None:
            return
        changed = self._ctx.engagement.like(msg.stream, msg.comment_id, user, msg.on)
        if changed is None:
            self._ctx.reply_error(
                session.conn,
                ProtocolError(
                    ErrorCode.NOT_FOUND, f"comment {msg.comment_id} is unknown or too old to like", msg.rid
                ),
            )
            return
        if msg.rid is not None:
            self._ctx.outbox.send(session.conn, encode_ok(msg.rid, "like" if msg.on else "unlike"))

    async def _history(self, session: Session, msg: History) -> None:
        ctx = self._ctx
        if msg.stream not in session.streams:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.NOT_JOINED, "join the stream first", msg.rid)
            )
            return
        limit = min(msg.limit, self._config.limits.history_page_max)
        try:
            stored = await ctx.history.page(msg.stream, msg.before, limit + 1)
        except BackendError as exc:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.UNAVAILABLE, f"storage unavailable: {exc}", msg.rid)
            )
            return
        items = [comment.payload for comment in stored[:limit]]
        ctx.outbox.send(session.conn, encode_history(msg.rid, msg.stream, items, len(stored) > limit))

    # -- events from other edges -------------------------------------------------------------------

    def on_remote(self, stream: str, payload: bytes) -> None:
        """Apply one event another edge published (see ``livechat.services.fanout``)."""
        if len(payload) < 2:
            return
        ctx = self._ctx
        tag = payload[0]
        event_bytes = payload[1:]
        event = unpackb(event_bytes)
        room = ctx.rooms.get(stream)
        if tag == TAG_PRIORITY:
            # In arrival order, each after the previous one's storage work (see _remote_priority).
            previous = self._remote_tail
            self._remote_tail = ctx.background.spawn(
                self._remote_priority(previous, stream, event, event_bytes), "remote priority event"
            )
            return
        if tag not in (TAG_BROADCAST, TAG_SAMPLED) or event.get("k") != EventKind.COMMENT:
            log.warning("dropping a remote event with tag %r on %s", tag, stream)
            return
        comment_id = int(event["id"])
        user = str(event["u"])
        ctx.sampler.observe(stream, ctx.clock.monotonic())
        ctx.engagement.comment_posted(stream, comment_id, count=not ctx.engagement.shared)
        if tag == TAG_BROADCAST:
            ctx.outbox.publish(stream, event_bytes)
            if room is not None:
                room.recent.append(comment_id, user, event_bytes)
            return
        targets = ctx.sessions.conns_in(user, stream)
        mentions = event.get("m")
        if isinstance(mentions, list):
            targets.extend(ctx.sessions.mentioned_conns([str(m) for m in mentions], stream))
        if targets:
            ctx.outbox.send_many(sorted(set(targets)), encode_direct(stream, [event_bytes]))

    async def _remote_priority(
        self, previous: asyncio.Task[Any] | None, stream: str, event: dict[str, Any], event_bytes: bytes
    ) -> None:
        """Apply one priority event from another edge, then publish it to this edge's viewers.

        It is written to this edge's stores first (``livechat.services.remote``), so a viewer told
        about a tombstone never gets the comment back from history, and bans, modes and pins
        survive a restart of this edge. Events run one after the other, in broker order.
        """
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        ctx = self._ctx
        kind = event.get("k")
        try:
            await store_remote(ctx, stream, event)
        except BackendError as exc:
            log.warning("remote %s on %s not stored on this edge: %s", kind, stream, exc)
        room = ctx.rooms.get(stream)
        if room is not None:
            self._apply_priority(room, event)
        ctx.outbox.publish(stream, event_bytes, priority=True)
        if kind == EventKind.BAN:
            until = event.get("until")
            self._actions.enforce_ban(stream, str(event["u"]), until if isinstance(until, int) else None)
        elif kind == EventKind.UNBAN:
            self._actions.enforce_unban(stream, str(event["u"]))

    def _apply_priority(self, room: Room, event: dict[str, Any]) -> None:
        ctx = self._ctx
        kind = event.get("k")
        # With a Registry the deleting edge already lowered the shared comment count.
        count = not ctx.engagement.shared
        if kind == EventKind.DELETE:
            room.recent.remove(int(event["id"]))
            ctx.engagement.forget(room.stream, [int(event["id"])], count=count)
        elif kind == EventKind.PURGE:
            ctx.engagement.forget(room.stream, room.recent.remove_user(str(event["u"])), count=count)
        elif kind == EventKind.BAN:
            until = event.get("until")
            room.bans[str(event["u"])] = until / 1000.0 if isinstance(until, int) else None
        elif kind == EventKind.UNBAN:
            room.bans.pop(str(event["u"]), None)
        elif kind == EventKind.PIN:
            comment = event.get("c")
            room.pin = None if comment is None else pin_from(room.stream, comment, ctx.clock.time())
        elif kind == EventKind.HIGHLIGHT:
            room.highlights.append(int(event["id"]))
        elif kind == EventKind.MODES:
            room.modes = modes_from(room.modes, event)

    def on_gap(self, streams: Sequence[str]) -> None:
        """The broker may have lost events of these streams: refill memory from history and tell
        clients to resync (a priority ``gap`` event: rejoin with the last id seen)."""
        for stream in streams:
            room = self._ctx.rooms.get(stream)
            if room is None:
                continue
            self._ctx.outbox.publish(stream, packb({"k": EventKind.GAP.value}), priority=True)
            self._ctx.background.spawn(self._refill(room), "refill after broker gap")

    async def _refill(self, room: Room) -> None:
        capacity = self._config.rooms.recent_buffer
        stored = await self._ctx.history.recent(room.stream, capacity)
        room.recent.load(
            [(c.comment_id, c.user_id, c.payload) for c in stored], complete=len(stored) < capacity
        )

    # -- periodic ----------------------------------------------------------------------------------

    async def housekeeping(self) -> None:
        """Tier changes and engagement totals into state slots; every PRUNE_EVERY_S, expiry."""
        ctx = self._ctx
        now = ctx.clock.monotonic()
        for stream in ctx.sampler.streams():
            tier = ctx.sampler.tier(stream, now)
            last = self._tiers.get(stream)
            if (
                last is None
                or last[0] != tier.level
                or (tier.level and abs(tier.rate - last[1]) > 0.1 * last[1])
            ):
                self._tiers[stream] = (tier.level, tier.rate)
                ctx.outbox.set_state(
                    stream, StateKey.TIER, packb(tier_fields(tier.level, tier.keep_ppm, tier.rate))
                )
        try:
            await ctx.engagement.flush(ctx.outbox)
        except BackendError as exc:
            log.warning("engagement totals not shared this round: %s", exc)
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            ctx.idempotency.expire(now)
            ctx.limits.prune(now)
            for stream in await ctx.rooms.prune():
                ctx.engagement.drop(stream)
                ctx.sampler.forget(stream)
                self._tiers.pop(stream, None)


class RemoteEvents:
    """The Broker handler of one edge: hands other edges' events to the ChatService."""

    __slots__ = ("_chat",)

    def __init__(self, chat: ChatService) -> None:
        self._chat = chat

    def on_message(self, stream: str, payload: bytes) -> None:
        self._chat.on_remote(stream, payload)

    def on_control(self, payload: bytes) -> None:
        log.debug("ignoring a control message of %d bytes", len(payload))

    def on_gap(self, streams: Sequence[str]) -> None:
        self._chat.on_gap(streams)
