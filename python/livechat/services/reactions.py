"""Reactions and likes: cheap writes that change counts, never the comment log.

Both need a signed-in member of the stream. Reactions take the per-user reaction bucket
(``limits.reactions_per_minute``), likes and unlikes the like budget (``limits.likes_per_minute``
per connection and ``likes_per_minute_per_user``); totals are folded into the stream's state slots
by ``livechat.services.engagement``. A comment can be liked while it is in the room's recent window,
also one the room loaded from history (posted before a restart).
"""

from __future__ import annotations

from livechat.protocol import ErrorCode, Like, ProtocolError, React, encode_ok
from livechat.services.context import ChatContext
from livechat.services.limits import Budget, retry_ms
from livechat.services.sessions import Session


class Reactions:
    __slots__ = ("_ctx",)

    def __init__(self, ctx: ChatContext) -> None:
        self._ctx = ctx

    def _writer(self, session: Session, stream: str, rid: int | None, budget: Budget | None) -> str | None:
        """The user id when this session may write to ``stream`` (``budget``: the like budget, None:
        the reaction bucket); else replies the error."""
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
        now = ctx.clock.monotonic()
        if budget is not None:
            refused = ctx.limits.budgets.charge(budget, session, rid, now)
            if refused is not None:
                ctx.reply_error(session.conn, refused)
                return None
        elif not ctx.limits.take_reaction(user, now):
            wait = ctx.limits.reaction_retry_after(user, now)
            ctx.reply_error(
                session.conn,
                ProtocolError(ErrorCode.RATE_LIMITED, "too many reactions", rid, retry_ms=retry_ms(wait)),
            )
            return None
        return user

    def react(self, session: Session, msg: React) -> None:
        if self._writer(session, msg.stream, msg.rid, None) is None:
            return
        self._ctx.engagement.react(msg.stream, msg.emoji)
        if msg.rid is not None:
            self._ctx.outbox.send(session.conn, encode_ok(msg.rid, "react"))

    def like(self, session: Session, msg: Like) -> None:
        user = self._writer(session, msg.stream, msg.rid, Budget.LIKE)
        if user is None:
            return
        engagement = self._ctx.engagement
        changed = engagement.like(msg.stream, msg.comment_id, user, msg.on)
        room = self._ctx.rooms.get(msg.stream)
        if changed is None and room is not None and msg.comment_id in room.recent:
            # A comment the room loaded from history (from before a restart, or before this edge's
            # first viewer): its likes are tracked from now on, as for a new one.
            engagement.comment_posted(msg.stream, msg.comment_id, count=False)
            changed = engagement.like(msg.stream, msg.comment_id, user, msg.on)
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
