"""ChatService: one edge's chat domain behind its entry points, each handing off to the part whose
job it is.

- ``on_open(conn, path_and_query, authorization)``: JWT check; refused connections get an error and
  the matching close code.
- ``on_messages([(conn, data), ...])``: a batch of client frames in arrival order. Posts go to the
  ``CommentPipeline`` (admitted one by one, stored with one durable write per batch); joins, leaves
  and history pages to ``Membership``; reactions and likes to ``Reactions``; moderator ops and
  reports to ``ModeratorActions``.
- ``on_close(conn)``.
- ``remote``: the Broker handler (``livechat.services.remote.RemoteEvents``) for other edges' events.

Output goes to the ``Outbox`` (the edge) and, in cluster mode, to the Broker; storage goes through
the ports. ``start``/``aclose`` run the periodic work (``Housekeeping``) and the review workers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Final

from livechat.auth import AuthError, TokenVerifier
from livechat.config import ChatConfig
from livechat.ids import CommentIdGenerator
from livechat.ports.broker import Broker
from livechat.ports.comment_log import CommentLog
from livechat.ports.history import HistoryStore
from livechat.ports.log_follower import LogFollower
from livechat.ports.meta import MetaStore
from livechat.ports.registry import Registry
from livechat.protocol import (
    ClientDecoder,
    ErrorCode,
    Follow,
    History,
    Join,
    Leave,
    Like,
    ModeratorMessage,
    Ping,
    Post,
    ProtocolError,
    React,
    Refresh,
    Report,
    Top,
    encode_error,
    encode_pong,
)
from livechat.services.actions import ModeratorActions
from livechat.services.background import Background
from livechat.services.clock import Clock, SystemClock
from livechat.services.comments import CommentPipeline
from livechat.services.context import ChatContext
from livechat.services.delivery import Delivery
from livechat.services.engagement import Engagement
from livechat.services.engagement_store import EngagementWriter
from livechat.services.fanout import Fanout
from livechat.services.housekeeping import Housekeeping
from livechat.services.idempotency import IdempotencyCache
from livechat.services.lanes import Lanes
from livechat.services.limits import ErrorBudget, WriteLimits, client_ip
from livechat.services.log_events import LogEvents
from livechat.services.membership import Membership
from livechat.services.moderation import Classifier, HttpClassifier, ModerationPipeline, ReviewQueue
from livechat.services.outbox import Outbox
from livechat.services.reactions import Reactions
from livechat.services.remote import RemoteEvents
from livechat.services.room_events import RoomEvents
from livechat.services.rooms import RoomDirectory
from livechat.services.sampling import Sampler
from livechat.services.sessions import Session, SessionTable
from livechat.services.shared_limits import SharedLimits
from livechat.services.stats import ChatStats
from livechat.services.token_expiry import TokenLifetime

log = logging.getLogger(__name__)

#: Messages handled without waiting on any store: never given a lane (a task each would cost more
#: than the message).
_IMMEDIATE: Final = frozenset({Leave, React, Like, Ping})


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
        follower: LogFollower | None = None,
        edge_id: str | None = None,
        cluster_limits: bool = False,
    ) -> None:
        """``classifier`` defaults to an HttpClassifier on ``config.moderation.classifier_url`` (when
        set); ``registry`` makes engagement totals cluster-wide; ``broker`` fans events out to other
        edges (register ``chat.remote`` as its handler). ``follower`` makes ``log`` the shared
        sequencer of every stream (``livechat.services.log_events``): events between edges travel
        through the log, not the broker, and history is written by ``livechat worker persist``.
        ``cluster_limits``: check comment budgets and slow mode in ``registry`` too (a registry
        shared by several edges; an in-process one would only repeat the local limits)."""
        clock = clock if clock is not None else SystemClock()
        # Alone (tests, tools) a random id: two services sharing a registry must not share one.
        edge_id = edge_id if edge_id is not None else uuid.uuid4().hex[:12]
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
            rooms=RoomDirectory(config.rooms, meta, history, clock, broker, follower),
            limits=WriteLimits(config.limits),
            error_budget=ErrorBudget(config.limits.max_errors_per_minute),
            idempotency=IdempotencyCache(
                config.limits.idempotency_window_s, config.limits.idempotency_max_entries
            ),
            sampler=Sampler(config.sampling),
            moderation=ModerationPipeline(config.moderation, clock, classifier),
            engagement=Engagement(config.rooms, registry, edge_id, EngagementWriter(meta, background)),
            fanout=Fanout(outbox, broker, background, log if follower is not None else None, edge_id),
            background=background,
            # node_id -1 ("auto") is resolved by LiveChatServer for clusters; alone, it is node 0.
            ids=CommentIdGenerator(max(config.node_id, 0), lambda: int(clock.time() * 1000)),
            edge_id=edge_id,
            shared_log=follower is not None,
            shared_limits=(
                SharedLimits(registry, config.limits) if cluster_limits and registry is not None else None
            ),
        )
        ctx.rooms.on_load = ctx.engagement.open
        self._decoder = ClientDecoder(config.limits)
        room_events = RoomEvents(ctx)
        self._actions = ModeratorActions(ctx, room_events)
        self._membership = Membership(ctx)
        self._reactions = Reactions(ctx)
        self._housekeeping = Housekeeping(ctx)
        self.tokens = TokenLifetime(ctx, self._verifier, config.auth.leeway_s)
        self.remote = RemoteEvents(ctx, room_events)
        self.delivery = Delivery(ctx)
        self.log_events = LogEvents(ctx, self.delivery, room_events)
        if follower is not None:
            follower.set_handler(self.log_events.on_records)
            ctx.rooms.log = log
            ctx.rooms.replay = self.log_events.on_records
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
        self._comments = CommentPipeline(ctx, self._reviews, self.delivery)
        # Requests that wait on a store run per connection (``livechat.services.lanes``).
        self._lanes = Lanes()
        self._periodic: asyncio.Task[None] | None = None
        # Connections refused at open, by error code (auth_invalid, auth_expired, auth_required).
        self.auth_refused: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def context(self) -> ChatContext:
        return self._ctx

    @property
    def reviews(self) -> ReviewQueue | None:
        return self._reviews

    @property
    def joins(self) -> int:
        """Joins that subscribed a connection to a stream (a repeated join only resends a snapshot)."""
        return self._membership.joins

    async def start(self, periodic: bool = True) -> None:
        """Load site-wide bans, start the review workers and (``periodic``) the housekeeping task
        and the engagement writer's rounds; without ``periodic`` the caller runs ``housekeeping``
        itself, and engagement is stored at ``aclose``."""
        await self._ctx.rooms.load_global_bans()
        writer = self._ctx.engagement.writer
        if writer is not None and periodic:
            writer.start()
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
        await self._lanes.aclose()
        await self._comments.flush()
        if self._reviews is not None:
            await self._reviews.aclose()
        writer = self._ctx.engagement.writer
        if writer is not None:
            await writer.aclose()  # after the last comments and deletions were counted
        await self._ctx.background.drain()
        if self._classifier is not None:
            await self._classifier.aclose()

    async def _run_periodic(self) -> None:
        interval = self._config.rooms.engagement_flush_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.tokens.sweep()
                await self._housekeeping.run()
            except Exception:
                log.exception("chat housekeeping failed")

    def stats(self) -> ChatStats:
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
            "hold": self._comments.hold_counters,
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
                path_and_query, peer, authorization = data
                self.on_open(conn, path_and_query, authorization, peer)
            elif kind == close_kind:
                self.on_close(conn)
        if messages:
            await self.on_messages(messages)

    def on_open(
        self, conn_id: int, path_and_query: str, authorization: str | None, peer: str | None = None
    ) -> bool:
        """Authenticate a new connection from ``peer`` (the client's address as the edge gives it:
        ``ip:port``, or a trusted proxy's client IP). False (and the connection is being closed)
        when refused."""
        ctx = self._ctx
        try:
            principal = self._verifier.authenticate(path_and_query, authorization)
        except AuthError as exc:
            self.auth_refused[exc.code.value] = self.auth_refused.get(exc.code.value, 0) + 1
            ctx.outbox.send(conn_id, encode_error(exc.code, exc.message, **exc.extra))
            ctx.outbox.close(conn_id, exc.close_code, exc.message)
            return False
        session = Session(conn_id, principal, address=client_ip(peer))
        ctx.sessions.add(session)
        self.tokens.watch(session)
        return True

    def on_close(self, conn_id: int) -> None:
        ctx = self._ctx
        session = ctx.sessions.remove(conn_id)
        ctx.error_budget.forget(conn_id)
        self._lanes.drop(conn_id)
        if session is None:
            return
        for stream in session.streams:
            self._membership.viewer_left(stream, session.principal.user_id)

    async def on_messages(self, batch: Sequence[tuple[int, bytes | str]]) -> None:
        """Handle client frames in order. Posts are admitted here and stored by the writer task
        (one write per batch, see ``livechat.services.comments``); this returns without waiting
        for storage unless more than ``comments.HIGH_WATER`` comments are waiting."""
        ctx = self._ctx
        sessions = ctx.sessions
        decode = self._decoder.decode
        lanes = self._lanes
        started: list[asyncio.Task[None]] = []
        # Consecutive posts are admitted together (one call per phase); any other message first
        # settles the posts before it, so each connection's messages take effect in order. A
        # request that waits on a store runs in its connection's lane, and that connection's later
        # messages queue behind it; other connections go on (``livechat.services.lanes``).
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
            kind = type(msg)
            if lanes.busy(conn):
                lanes.queue(conn, functools.partial(self._handle, session, msg))
                continue
            if type(msg) is Post:
                posts.append((session, msg))
                continue
            if posts:
                self._admit(posts)
                posts = []
            if kind in _IMMEDIATE:
                await self._handle(session, msg)
            else:
                started.append(lanes.start(conn, functools.partial(self._handle, session, msg)))
        if posts:
            self._admit(posts)
        await lanes.settle(started)
        await self._comments.backpressure()

    async def _handle(self, session: Session, msg: Any) -> None:
        """One message, its errors answered (a bug costs one reply, not the rest of the batch)."""
        if self._ctx.sessions.get(session.conn) is not session:
            return  # closed while queued in its lane
        if type(msg) is Post:
            self._admit([(session, msg)])
            return
        try:
            await self._dispatch(session, msg)
        except Exception:
            log.exception("handling %s from connection %d failed", type(msg).__name__, session.conn)
            self._ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.INTERNAL, "internal error", getattr(msg, "rid", None))
            )

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
            await self._membership.join(session, msg)
        elif kind is Leave:
            self._membership.leave(session, msg)
        elif kind is React:
            self._reactions.react(session, msg)
        elif kind is Like:
            self._reactions.like(session, msg)
        elif kind is History:
            await self._membership.history(session, msg)
        elif kind is Ping:
            self._ctx.outbox.send(session.conn, encode_pong(msg.rid, int(self._ctx.clock.time() * 1000)))
        elif kind is Report:
            await self._actions.report(session, msg)
        elif kind is Follow:
            await self._actions.follow(session, msg)
        elif kind is Top:
            await self._actions.top(session, msg)
        elif kind is Refresh:
            try:
                await self.tokens.refresh(session, msg)
            except ProtocolError as error:
                self._ctx.reply_error(session.conn, error)
        else:
            moderator_msg: ModeratorMessage = msg
            await self._actions.handle(session, moderator_msg)

    async def housekeeping(self) -> None:
        """One round of the periodic work (``start(periodic=False)`` callers run it themselves)."""
        self.tokens.sweep()
        await self._housekeeping.run()
