"""Token lifetime on open connections (docs/protocol.md, "Token lifetime").

A connection keeps the rights of its token until ``exp`` + ``auth.leeway_s``; then it gets
``err auth_expired`` and close 4003, unless a ``refresh`` op brought a valid token for the same
``sub`` first (the connection then runs on the new token: its expiry and its roles).

Expiries wait in one heap keyed by deadline and are swept from the periodic housekeeping round: a
sweep costs O(expired x log n), nothing per connection in between. Entries are never removed
early: a closed or refreshed connection's entry is skipped when it comes due (its session is gone,
or its principal's deadline is later), so the heap holds at most one entry per token seen.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import Final

from livechat.auth import AuthError, Principal, TokenVerifier, stronger
from livechat.ports.errors import BackendError
from livechat.protocol import CloseCode, ErrorCode, Op, ProtocolError, Refresh, encode_error, encode_ok
from livechat.services.context import ChatContext
from livechat.services.sessions import Session, member_for

log = logging.getLogger(__name__)

#: A refresh re-reads the stored role of each joined stream; longer than this keeps the token's role.
REFRESH_META_TIMEOUT_S: Final = 2.0


class TokenLifetime:
    """Expiry of connections' tokens and the ``refresh`` op."""

    __slots__ = ("_ctx", "_heap", "_leeway_s", "_verifier", "expired")

    def __init__(self, ctx: ChatContext, verifier: TokenVerifier, leeway_s: float) -> None:
        self._ctx = ctx
        self._verifier = verifier
        self._leeway_s = leeway_s
        # (deadline in wall-clock seconds, connection id)
        self._heap: list[tuple[float, int]] = []
        #: Connections closed with 4003 because their token expired.
        self.expired = 0

    def __len__(self) -> int:
        return len(self._heap)

    def _deadline(self, principal: Principal) -> float | None:
        return None if principal.expires_at is None else principal.expires_at + self._leeway_s

    def watch(self, session: Session) -> None:
        """Close ``session`` when its token expires (a token without ``exp`` never does)."""
        deadline = self._deadline(session.principal)
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, session.conn))

    def sweep(self) -> int:
        """Send ``auth_expired`` and close 4003 to every connection past its deadline; how many."""
        ctx = self._ctx
        now = ctx.clock.time()
        heap = self._heap
        closed = 0
        while heap and heap[0][0] <= now:
            _, conn = heapq.heappop(heap)
            session = ctx.sessions.get(conn)
            if session is None:
                continue  # closed since
            deadline = self._deadline(session.principal)
            if deadline is None or deadline > now:
                continue  # refreshed: its new deadline has its own entry
            ctx.outbox.send(conn, encode_error(ErrorCode.AUTH_EXPIRED, "token expired"))
            ctx.outbox.close(conn, CloseCode.AUTH_EXPIRED, "token expired")
            closed += 1
        self.expired += closed
        return closed

    async def refresh(self, session: Session, msg: Refresh) -> None:
        """Take a new token for ``session``: same ``sub`` only; roles and expiry follow it. A refused
        token is answered with its error and leaves the connection on its current token."""
        ctx = self._ctx
        try:
            principal = self._verifier.verify(msg.token)
        except AuthError as exc:
            raise ProtocolError(exc.code, exc.message, msg.rid, **exc.extra) from None
        if session.principal.user_id is None or principal.user_id != session.principal.user_id:
            raise ProtocolError(
                ErrorCode.AUTH_INVALID,
                "a refresh token must name this connection's user",
                msg.rid,
                field="sub",
            )
        ctx.sessions.replace_principal(session, principal)
        for stream, member in list(session.streams.items()):
            role = principal.role_in(stream)
            try:
                async with asyncio.timeout(REFRESH_META_TIMEOUT_S):
                    role = stronger(role, await ctx.meta.get_role(stream, principal.user_id))
            except (BackendError, TimeoutError) as exc:
                log.warning("refresh keeps the token's role in %s: %r", stream, exc)
            if session.streams.get(stream) is member:  # not left meanwhile
                session.streams[stream] = member_for(role, member.follow_since)
        self.watch(session)
        if msg.rid is not None:
            ctx.outbox.send(session.conn, encode_ok(msg.rid, Op.REFRESH.value))
