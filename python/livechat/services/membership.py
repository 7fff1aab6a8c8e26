"""Joining and leaving a stream: membership, the snapshot a joiner gets, reconnect recovery, and
history pages.

A join subscribes the connection to the stream's tick BEFORE its snapshot is built, so nothing
published from then on is missed (a client may see an event both in the snapshot and in a tick;
ids tell them apart). A rejoin with ``last_id`` gets what it missed from the room's recent buffer
or from history, or ``gap: true`` when that cannot be told exactly.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from livechat.auth import stronger
from livechat.ids import id_timestamp_ms
from livechat.ports.errors import BackendError
from livechat.ports.meta import UserInfo
from livechat.protocol import (
    ErrorCode,
    History,
    Join,
    Leave,
    ProtocolError,
    Raw,
    RawArray,
    StateKey,
    encode_history,
    encode_ok,
    modes_fields,
    pack_map,
    tier_fields,
)
from livechat.services.context import ChatContext
from livechat.services.limits import Budget
from livechat.services.moderation import STRIKES
from livechat.services.moderation.hold import default_policy, in_force
from livechat.services.room import Room
from livechat.services.sessions import Member, Session, member_for

log = logging.getLogger(__name__)

#: Signed-in users whose record this process remembers having written (then it forgets them all).
USERS_REMEMBERED: Final = 100_000
#: After a MetaStore read fails, joins skip its per-user reads for this long (a MetaStore that
#: hangs would otherwise cost every join its 5 s timeout).
META_RETRY_S: Final = 5.0
#: A join waits this long for the user's stored role, follow and strikes (three reads, ~1 ms
#: each here); slower counts as failed. With PostgreSQL 500 ms away, 300 viewers joining at once
#: queued on the pool past its 5 s timeout and every join failed (tests/faults, postgres-latency).
META_JOIN_TIMEOUT_S: Final = 1.5


class Membership:
    def __init__(self, ctx: ChatContext) -> None:
        self._ctx = ctx
        # Joins that subscribed a connection to a stream (a repeated join only resends a snapshot).
        self.joins = 0
        # user id -> display name already written to the MetaStore by this process.
        self._users_seen: dict[str, str | None] = {}
        # Joins skip the MetaStore's per-user reads until then (monotonic), after one failed.
        self._meta_retry_at = 0.0
        # Joins admitted with the token's role alone because the MetaStore could not answer.
        self.meta_fallbacks = 0

    async def _member(self, session: Session, room: Room) -> Member:
        principal = session.principal
        role = principal.role_in(room.stream)
        user = principal.user_id
        if user is None:
            return member_for(role, None)
        meta = self._ctx.meta
        now = self._ctx.clock.monotonic()
        if now < self._meta_retry_at:
            self.meta_fallbacks += 1
            return member_for(role, None)
        try:
            async with asyncio.timeout(META_JOIN_TIMEOUT_S):
                stored_role, follow_since = await asyncio.gather(
                    meta.get_role(room.stream, user), meta.followed_since(room.owner_id, user)
                )
                if not session.strikes_loaded:
                    reputation = await meta.get_reputation(user)
                    session.strikes = max(session.strikes, reputation.get(STRIKES))
                    session.strikes_loaded = True
        except (BackendError, TimeoutError) as exc:
            # The MetaStore is down (docs/operations.md, failure policies): the viewer joins with
            # what the token says and no follow (never more rights than stored roles would give);
            # the room's cached bans and modes still apply. Strikes load on a later join.
            self._meta_retry_at = now + META_RETRY_S
            self.meta_fallbacks += 1
            log.warning("joining without stored roles and follows for %.0f s: %r", META_RETRY_S, exc)
            return member_for(role, None)
        self._remember_user(user, principal.name)
        return member_for(stronger(role, stored_role), follow_since)

    def _remember_user(self, user: str, name: str | None) -> None:
        """Record a signed-in user (and their display name) once per process, in the background:
        ``livechat worker notify`` resolves @mentions to users through this table."""
        known = self._users_seen
        if known.get(user, "") == name:
            return
        if len(known) >= USERS_REMEMBERED:
            known.clear()  # a bound on memory; a user seen again is written again
        known[user] = name
        info = UserInfo(user, name or user, self._ctx.clock.time())
        self._ctx.background.spawn(self._ctx.meta.upsert_user(info), "record user")

    async def join(self, session: Session, msg: Join) -> None:
        ctx = self._ctx
        stream = msg.stream
        member = session.streams.get(stream)
        if member is None and len(session.streams) >= self._ctx.config.limits.max_streams_per_connection:
            ctx.reply_error(
                session.conn,
                ProtocolError(ErrorCode.TOO_MANY_STREAMS, "leave a stream before joining another", msg.rid),
            )
            return
        refused = ctx.limits.budgets.charge(Budget.JOIN, session, msg.rid, ctx.clock.monotonic())
        if refused is not None:
            ctx.reply_error(session.conn, refused)
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
            ctx.engagement.viewers(stream, 1, session.principal.user_id)
        ctx.outbox.send(session.conn, await self._snapshot(member, room, msg))

    async def _snapshot(self, member: Member, room: Room, msg: Join) -> bytes:
        ctx = self._ctx
        config = self._ctx.config.rooms
        stream = room.stream
        recent = room.recent.latest(config.snapshot_comments)
        engagement = ctx.engagement.snapshot(stream, [cid for cid, _ in recent])
        tier = ctx.sampler.tier(stream, ctx.clock.monotonic())
        modes = room.modes
        hold = in_force(room.hold, default_policy(ctx.config.moderation))
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
            "modes": modes_fields(
                modes.slow_seconds,
                modes.followers_only_min_age_s,
                modes.comments_off,
                hold.mode.value if hold.held else None,  # "off" is left out
                hold.bound_ms,
            ),
            StateKey.TIER.value: tier_fields(tier.level, tier.keep_ppm, tier.rate),
            "last": room.recent.newest_id(),
            # Since when this user follows the channel (wall-clock seconds), nil when not (or when
            # the stored follows could not be read at this join).
            "fl": member.follow_since,
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
        limit = self._ctx.config.rooms.recover_max
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

    def leave(self, session: Session, msg: Leave) -> None:
        ctx = self._ctx
        if session.streams.pop(msg.stream, None) is None:
            ctx.reply_error(session.conn, ProtocolError(ErrorCode.NOT_JOINED, "not in this stream", msg.rid))
            return
        ctx.outbox.unsubscribe(session.conn, msg.stream)
        self.viewer_left(msg.stream, session.principal.user_id)
        if msg.rid is not None:
            ctx.outbox.send(session.conn, encode_ok(msg.rid, "leave"))

    def viewer_left(self, stream: str, user_id: str | None) -> None:
        room = self._ctx.rooms.get(stream)
        if room is not None:
            room.viewers -= 1
        self._ctx.engagement.viewers(stream, -1, user_id)

    async def history(self, session: Session, msg: History) -> None:
        ctx = self._ctx
        if msg.stream not in session.streams:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.NOT_JOINED, "join the stream first", msg.rid)
            )
            return
        refused = ctx.limits.budgets.charge(Budget.HISTORY, session, msg.rid, ctx.clock.monotonic())
        if refused is not None:
            ctx.reply_error(session.conn, refused)
            return
        limit = min(msg.limit, self._ctx.config.limits.history_page_max)
        try:
            stored = await ctx.history.page(msg.stream, msg.before, limit + 1)
        except BackendError as exc:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.UNAVAILABLE, f"storage unavailable: {exc}", msg.rid)
            )
            return
        items = [comment.payload for comment in stored[:limit]]
        ctx.outbox.send(session.conn, encode_history(msg.rid, msg.stream, items, len(stored) > limit))
