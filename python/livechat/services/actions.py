"""Moderator and broadcaster actions, user reports, and the classifier's retro-deletes.

Every action is written to the MetaStore/HistoryStore first (it must survive a restart and reach
other edges' joiners), then its event is applied on this edge and sent to the others
(``RoomEvents.apply``: the one place a room event takes effect). The audit trail is appended in the
background.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Final

from livechat.auth import ROLE_RANK
from livechat.ports.errors import BackendError
from livechat.ports.meta import (
    Ban,
    FlaggedComment,
    FlagStatus,
    ModAction,
    ModActionKind,
    Pin,
    Role,
    UserReport,
)
from livechat.protocol import (
    BanUser,
    DeleteComment,
    ErrorCode,
    Follow,
    Highlight,
    Kick,
    ModeratorMessage,
    ModQueue,
    Op,
    PinComment,
    ProtocolError,
    PurgeUser,
    Report,
    Review,
    SetComments,
    SetFollowersOnly,
    SetHold,
    SetSlowMode,
    UnbanUser,
    encode_ban,
    encode_delete,
    encode_direct,
    encode_highlight,
    encode_modes,
    encode_ok,
    encode_pin,
    encode_purge,
    encode_unban,
    unpackb,
)
from livechat.protocol.audience import encode_kick, encode_queue
from livechat.services.context import ChatContext
from livechat.services.limits import Budget
from livechat.services.moderation import Decision, ReviewItem, Verdict
from livechat.services.room import Room
from livechat.services.room_events import RoomEvents
from livechat.services.sessions import Session
from livechat.services.top import TopComments

#: Actor recorded in the audit trail for the classifier's decisions.
AUTOMOD: Final = "automod"
#: A shadow-banned comment goes back to its author this long after its tombstone: past the
#: tombstone's tick (tick_max_ms 250 ms, twice), so the author's client shows it again.
SHADOW_RESEND_S: Final = 0.5


def op_name(msg: ModeratorMessage) -> str:
    """The ``op`` a moderator message was sent as (echoed in its ``ok`` reply)."""
    if isinstance(msg, BanUser):
        return Op.BAN if msg.seconds is None else Op.TIMEOUT
    if isinstance(msg, PinComment):
        return Op.PIN if msg.comment_id is not None else Op.UNPIN
    return _OPS[type(msg)]


_OPS: Final[dict[type, str]] = {
    DeleteComment: Op.DELETE,
    PurgeUser: Op.PURGE,
    UnbanUser: Op.UNBAN,
    Highlight: Op.HIGHLIGHT,
    SetSlowMode: Op.SLOW,
    SetFollowersOnly: Op.FOLLOWERS_ONLY,
    SetComments: Op.COMMENTS,
    SetHold: Op.HOLD,
    Kick: Op.KICK,
    ModQueue: Op.QUEUE,
    Review: Op.REVIEW,
}


class ModeratorActions:
    def __init__(self, ctx: ChatContext, events: RoomEvents) -> None:
        self._ctx = ctx
        self._events = events
        self.top = TopComments(ctx).handle

    def _record(self, action: ModAction) -> None:
        self._ctx.background.spawn(self._ctx.meta.record_action(action), "audit trail")

    async def handle(self, session: Session, msg: ModeratorMessage) -> None:
        """Run one moderator message; replies ok (when it carried a rid) or the documented error."""
        ctx = self._ctx
        actor = session.principal.user_id
        if actor is None:  # every anonymous write, joined or not (docs/protocol.md §1)
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.READ_ONLY, "anonymous viewers are read-only", msg.rid)
            )
            return
        member = session.streams.get(msg.stream)
        room = ctx.rooms.get(msg.stream)
        if member is None or room is None:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.NOT_JOINED, "join the stream first", msg.rid)
            )
            return
        if member.rank < ROLE_RANK[Role.MODERATOR]:
            ctx.reply_error(
                session.conn,
                ProtocolError(ErrorCode.FORBIDDEN, "moderators and the broadcaster only", msg.rid),
            )
            return
        try:
            reply = await self._dispatch(room, actor, member.rank, msg)
        except ProtocolError as error:
            ctx.reply_error(session.conn, error)
            return
        except BackendError as exc:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.UNAVAILABLE, f"storage unavailable: {exc}", msg.rid)
            )
            return
        if reply is not None:
            ctx.outbox.send(session.conn, reply)
        elif msg.rid is not None:
            ctx.outbox.send(session.conn, encode_ok(msg.rid, op_name(msg)))

    async def _dispatch(self, room: Room, actor: str, rank: int, msg: ModeratorMessage) -> bytes | None:
        """Run the action; the reply to send instead of ``ok`` (None: ``ok``)."""
        if isinstance(msg, ModQueue):
            return await self.queue(room, msg)
        if isinstance(msg, Kick):
            await self.kick(room, actor, rank, msg)
        elif isinstance(msg, Review):
            await self.review(room, actor, msg)
        elif isinstance(msg, DeleteComment):
            await self.delete(room, actor, msg.comment_id, msg.rid)
        elif isinstance(msg, PurgeUser):
            await self.purge(room, actor, msg.user)
        elif isinstance(msg, BanUser):
            await self.ban(room, actor, rank, msg)
        elif isinstance(msg, UnbanUser):
            await self.unban(room, actor, msg.user)
        elif isinstance(msg, PinComment):
            await self.pin(room, actor, msg.comment_id, msg.rid)
        elif isinstance(msg, Highlight):
            await self._payload(room, msg.comment_id, msg.rid)
            # Stored first, like a pin: a room loaded later (a restart, another edge) lists it.
            await self._ctx.meta.add_highlight(room.stream, msg.comment_id)
            self._events.apply(room.stream, encode_highlight(msg.comment_id), local=True)
        elif isinstance(msg, SetSlowMode):
            await self._set_modes(room, actor, slow_seconds=msg.seconds)
        elif isinstance(msg, SetFollowersOnly):
            await self._set_modes(room, actor, followers_only_min_age_s=msg.min_age_s)
        elif isinstance(msg, SetHold):
            await self._set_modes(room, actor, hold=msg.mode, hold_ms=msg.ms or 0)
        else:
            assert isinstance(msg, SetComments)
            await self._set_modes(room, actor, comments_off=not msg.enabled)
        return None

    # -- kick, the moderation queue, follows -------------------------------------------------------

    async def kick(self, room: Room, actor: str, rank: int, msg: Kick) -> None:
        """Close the target's connections in the stream on every edge (the ``kick`` room event); no
        ban is stored, so they may come straight back. The same role rule as a ban."""
        if msg.user == actor:
            raise ProtocolError(ErrorCode.FORBIDDEN, "you cannot kick yourself", msg.rid)
        if await self._target_rank(room, msg.user) >= rank:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only a stronger role can kick this user", msg.rid)
        self._events.apply(room.stream, encode_kick(msg.user), local=True)
        self._record(
            ModAction(room.stream, actor, ModActionKind.KICK, self._ctx.clock.time(), target_user_id=msg.user)
        )

    async def queue(self, room: Room, msg: ModQueue) -> bytes:
        """A page of the moderation queue: pending flagged comments, oldest first, and reports,
        newest first, older than ``msg.before``."""
        meta = self._ctx.meta
        flagged = await meta.list_flagged(room.stream, msg.limit)
        reports = await meta.list_reports(room.stream, msg.limit + 1, msg.before)
        more = len(reports) > msg.limit
        return encode_queue(msg.rid, room.stream, flagged, reports[: msg.limit], more)

    async def review(self, room: Room, actor: str, msg: Review) -> None:
        """Resolve a pending flagged comment: approve (it stays) or dismiss (it is deleted, as by
        ``delete``). Two moderators at once: the first wins, the second gets ``not_found``."""
        ctx = self._ctx
        status = FlagStatus.APPROVED if msg.approve else FlagStatus.REJECTED
        now = ctx.clock.time()
        if not await ctx.meta.resolve_flag(room.stream, msg.comment_id, status, actor, now):
            raise ProtocolError(
                ErrorCode.NOT_FOUND, f"no pending flagged comment {msg.comment_id}", msg.rid, field="id"
            )
        if msg.approve:
            kind = ModActionKind.APPROVE
        else:
            kind = ModActionKind.REJECT
            try:
                await self.delete(room, actor, msg.comment_id, msg.rid)
            except ProtocolError:
                pass  # already deleted (by a moderator or the classifier): dismissed all the same
        self._record(ModAction(room.stream, actor, kind, now, target_comment_id=msg.comment_id))

    async def follow(self, session: Session, msg: Follow) -> None:
        """Follow or unfollow the channel of a joined stream (stored: followers-only mode reads it);
        this edge's connections of the user take the new follow time at once, others on rejoin."""
        ctx = self._ctx
        room = ctx.rooms.get(msg.stream)
        user = session.principal.user_id
        op = Op.FOLLOW if msg.on else Op.UNFOLLOW
        try:
            if msg.stream not in session.streams or room is None:
                raise ProtocolError(ErrorCode.NOT_JOINED, "join the stream first", msg.rid)
            if user is None:
                raise ProtocolError(ErrorCode.READ_ONLY, "anonymous viewers cannot follow", msg.rid)
            channel = room.owner_id
            since: float | None = None
            if msg.on:
                await ctx.meta.follow(channel, user, ctx.clock.time())
                since = await ctx.meta.followed_since(channel, user)
            else:
                await ctx.meta.unfollow(channel, user)
        except ProtocolError as error:
            ctx.reply_error(session.conn, error)
            return
        except BackendError as exc:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.UNAVAILABLE, f"storage unavailable: {exc}", msg.rid)
            )
            return
        for other in ctx.sessions.user_sessions(user):
            for stream, member in other.streams.items():
                joined = ctx.rooms.get(stream)
                if joined is not None and joined.owner_id == channel:
                    member.follow_since = since
        if msg.rid is not None:
            ctx.outbox.send(session.conn, encode_ok(msg.rid, op))

    async def _payload(self, room: Room, comment_id: int, rid: int | None) -> bytes:
        payload = room.recent.get(comment_id)
        if payload is not None:
            return payload
        stored = await self._ctx.history.get(room.stream, comment_id)
        if stored is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no comment {comment_id} in this stream", rid)
        return stored.payload

    async def _drop_pin_of(self, room: Room, comment_ids: set[int]) -> None:
        if room.pin is not None and room.pin.comment_id in comment_ids:
            await self._ctx.meta.clear_pin(room.stream)
            self._events.apply(room.stream, encode_pin(None), local=True)

    async def delete(self, room: Room, actor: str, comment_id: int, rid: int | None) -> None:
        ctx = self._ctx
        in_memory = comment_id in room.recent
        existed = await ctx.history.delete(room.stream, comment_id)
        if not (in_memory or existed):
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no comment {comment_id} in this stream", rid)
        self._events.apply(room.stream, encode_delete(comment_id), local=True, removed=[comment_id])
        await self._drop_pin_of(room, {comment_id})
        self._record(
            ModAction(
                room.stream,
                actor,
                ModActionKind.DELETE_COMMENT,
                ctx.clock.time(),
                target_comment_id=comment_id,
            )
        )

    async def purge(self, room: Room, actor: str, user_id: str) -> None:
        ctx = self._ctx
        stored = await ctx.history.delete_user(room.stream, user_id)
        gone = self._events.apply(room.stream, encode_purge(user_id), local=True, removed=stored)
        await self._drop_pin_of(room, gone)
        self._record(
            ModAction(room.stream, actor, ModActionKind.PURGE_USER, ctx.clock.time(), target_user_id=user_id)
        )

    async def _target_rank(self, room: Room, user_id: str) -> int:
        """The strongest role ``user_id`` holds in the room, connected or not: the stored roles
        (the stream's owner is its broadcaster; per-stream and site-wide moderators), the room's
        channel (its owner, or the stream id of an unregistered stream) and the roles the user's
        tokens claimed, on their connections here and as last seen by this edge."""
        if user_id == room.owner_id:
            return ROLE_RANK[Role.BROADCASTER]
        rank = ROLE_RANK[await self._ctx.meta.get_role(room.stream, user_id)]
        for principal in self._ctx.sessions.known_principals(user_id):
            rank = max(rank, ROLE_RANK[principal.role_in(room.stream)])
        return rank

    async def ban(self, room: Room, actor: str, rank: int, msg: BanUser) -> None:
        ctx = self._ctx
        if msg.user == actor:
            raise ProtocolError(ErrorCode.FORBIDDEN, "you cannot ban yourself", msg.rid)
        if await self._target_rank(room, msg.user) >= rank:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only a stronger role can ban this user", msg.rid)
        now = ctx.clock.time()
        expires = now + msg.seconds if msg.seconds is not None else None
        ban = Ban(room.stream, msg.user, actor, msg.reason, now, expires)
        await ctx.meta.ban(ban)
        until_ms = int(expires * 1000) if expires is not None else None
        self._events.apply(room.stream, encode_ban(msg.user, until_ms), local=True, reason=msg.reason)
        kind = ModActionKind.BAN if expires is None else ModActionKind.TIMEOUT
        self._record(ModAction(room.stream, actor, kind, now, target_user_id=msg.user, reason=msg.reason))

    async def unban(self, room: Room, actor: str, user_id: str) -> None:
        ctx = self._ctx
        await ctx.meta.unban(room.stream, user_id)
        self._events.apply(room.stream, encode_unban(user_id), local=True)
        self._record(
            ModAction(room.stream, actor, ModActionKind.UNBAN, ctx.clock.time(), target_user_id=user_id)
        )

    async def pin(self, room: Room, actor: str, comment_id: int | None, rid: int | None) -> None:
        ctx = self._ctx
        now = ctx.clock.time()
        if comment_id is None:
            await ctx.meta.clear_pin(room.stream)
            self._events.apply(room.stream, encode_pin(None), local=True)
            self._record(ModAction(room.stream, actor, ModActionKind.UNPIN, now))
            return
        payload = await self._payload(room, comment_id, rid)
        pin = Pin(room.stream, comment_id, actor, payload, now)
        await ctx.meta.set_pin(pin)
        self._events.apply(room.stream, encode_pin(payload), local=True)
        self._record(ModAction(room.stream, actor, ModActionKind.PIN, now, target_comment_id=comment_id))

    async def _set_modes(self, room: Room, actor: str, **change: int | bool | str | None) -> None:
        ctx = self._ctx
        modes = dataclasses.replace(room.modes, **change)  # type: ignore[arg-type]
        await ctx.meta.set_modes(room.stream, modes)
        # The event carries the hold bound in force (a stream without its own: the edge's default).
        hold_ms = modes.hold_ms or ctx.config.moderation.hold_ms
        self._events.apply(
            room.stream,
            encode_modes(
                modes.slow_seconds, modes.followers_only_min_age_s, modes.comments_off, modes.hold, hold_ms
            ),
            local=True,
        )
        self._record(
            ModAction(room.stream, actor, ModActionKind.SET_MODES, ctx.clock.time(), reason=repr(change))
        )

    # -- reports ---------------------------------------------------------------------------------

    async def report(self, session: Session, msg: Report) -> None:
        """A viewer reports a comment or a user; enough reporters of one comment flag it for review."""
        ctx = self._ctx
        room = ctx.rooms.get(msg.stream)
        reporter = session.principal.user_id
        try:
            if msg.stream not in session.streams or room is None:
                raise ProtocolError(ErrorCode.NOT_JOINED, "join the stream first", msg.rid)
            if reporter is None:
                raise ProtocolError(ErrorCode.READ_ONLY, "anonymous viewers cannot report", msg.rid)
            refused = ctx.limits.budgets.charge(Budget.REPORT, session, msg.rid, ctx.clock.monotonic())
            if refused is not None:
                raise refused
            payload = None
            target = msg.user
            if msg.comment_id is not None:
                payload = await self._payload(room, msg.comment_id, msg.rid)
                target = str(unpackb(payload)["u"])
            assert target is not None
            now = ctx.clock.time()
            await ctx.meta.add_report(
                UserReport(msg.stream, reporter, target, msg.reason, now, msg.comment_id)
            )
            if msg.comment_id is not None and payload is not None:
                reports = await ctx.meta.count_reports(msg.stream, msg.comment_id)
                if reports >= ctx.config.moderation.reports_to_flag:
                    await ctx.meta.flag_comment(
                        FlaggedComment(
                            msg.stream, msg.comment_id, target, payload, f"{reports} reports", -1.0, now
                        )
                    )
        except ProtocolError as error:
            ctx.reply_error(session.conn, error)
            return
        except BackendError as exc:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.UNAVAILABLE, f"storage unavailable: {exc}", msg.rid)
            )
            return
        if msg.rid is not None:
            ctx.outbox.send(session.conn, encode_ok(msg.rid, "report"))

    # -- classifier verdicts after broadcast ------------------------------------------------------

    def _resend_to_author(self, stream: str, user_id: str, payload: bytes) -> None:
        conns = self._ctx.sessions.conns_in(user_id, stream)
        if conns:
            self._ctx.outbox.send_many(conns, encode_direct(stream, [payload]))

    async def retro(self, item: ReviewItem, verdict: Verdict) -> None:
        """Apply a late classifier verdict: FLAG queues for review; REJECT and SHADOW_BAN tombstone the
        comment live at once (SHADOW_BAN's author gets it back directly), then remove it from
        history; both are strikes."""
        ctx = self._ctx
        now = ctx.clock.time()
        if verdict.decision is Decision.FLAG:
            await ctx.meta.flag_comment(
                FlaggedComment(
                    item.stream,
                    item.comment_id,
                    item.user_id,
                    item.payload,
                    verdict.reason,
                    verdict.score,
                    now,
                )
            )
            return
        shadow = verdict.decision is Decision.SHADOW_BAN
        room = ctx.rooms.get(item.stream)
        # One plain tombstone for everyone: nothing in it names the author (a `keep: <id>` told a
        # shadow-banned author they were). Their comment comes back to them directly once the
        # tombstone's tick has gone out, as their shadowed comments always reach them.
        self._events.apply(item.stream, encode_delete(item.comment_id), local=True, removed=[item.comment_id])
        if shadow:
            asyncio.get_running_loop().call_later(
                SHADOW_RESEND_S, self._resend_to_author, item.stream, item.user_id, item.payload
            )
        ctx.strike(item.user_id)
        await ctx.history.delete(item.stream, item.comment_id)
        if room is not None:
            await self._drop_pin_of(room, {item.comment_id})
        kind = ModActionKind.SHADOW_BAN if shadow else ModActionKind.REJECT
        self._record(
            ModAction(
                item.stream,
                AUTOMOD,
                kind,
                now,
                target_user_id=item.user_id,
                target_comment_id=item.comment_id,
                reason=f"{verdict.reason} score={verdict.score:.2f}",
            )
        )
