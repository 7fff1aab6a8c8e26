"""The shared parts of one edge's chat services, built once and handed to each service."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from livechat.config import ChatConfig
from livechat.ids import CommentIdGenerator
from livechat.ports.comment_log import CommentLog
from livechat.ports.history import HistoryStore
from livechat.ports.meta import MetaStore
from livechat.protocol import CloseCode, ProtocolError
from livechat.services.background import Background
from livechat.services.clock import Clock
from livechat.services.engagement import Engagement
from livechat.services.fanout import Fanout
from livechat.services.idempotency import IdempotencyCache
from livechat.services.limits import ErrorBudget, WriteLimits
from livechat.services.moderation import STRIKES, ModerationPipeline
from livechat.services.outbox import Outbox
from livechat.services.rooms import RoomDirectory
from livechat.services.sampling import Sampler
from livechat.services.sessions import SessionTable
from livechat.services.shared_limits import SharedLimits


@dataclass(slots=True)
class ChatContext:
    config: ChatConfig
    outbox: Outbox
    log: CommentLog
    history: HistoryStore
    meta: MetaStore
    clock: Clock
    sessions: SessionTable
    rooms: RoomDirectory
    limits: WriteLimits
    error_budget: ErrorBudget
    idempotency: IdempotencyCache
    sampler: Sampler
    moderation: ModerationPipeline
    engagement: Engagement
    fanout: Fanout
    background: Background
    ids: CommentIdGenerator
    # This edge's id; with a shared log (``kafka://``) every edge delivers comments from the log
    # (``livechat.services.log_events``) and history is written by ``livechat worker persist``.
    edge_id: str = "edge"
    shared_log: bool = False
    # Comment budgets and slow mode across edges (with a registry; see ``services.shared_limits``).
    shared_limits: SharedLimits | None = None
    # Error replies sent, by code, and those of them refusing a post (they carry its cmid): the
    # "comments rejected by reason" of /metrics.
    errors_sent: Counter[str] = field(default_factory=Counter)
    posts_refused: Counter[str] = field(default_factory=Counter)

    def reply_error(self, conn_id: int, error: ProtocolError) -> None:
        """Send the error; close the connection once it has used up its error budget."""
        self.errors_sent[error.code.value] += 1
        if "cmid" in error.extra:
            self.posts_refused[error.code.value] += 1
        self.outbox.send(conn_id, error.encode())
        if self.error_budget.charge(conn_id, self.clock.monotonic()):
            self.outbox.close(conn_id, CloseCode.TOO_MANY_ERRORS, "too many errors")

    def strike(self, user_id: str) -> None:
        """Record a moderation strike (durably, in the background) and apply it to live sessions."""
        for session in self.sessions.user_sessions(user_id):
            session.strikes += 1
        self.background.spawn(self._store_strike(user_id), "reputation strike")

    async def _store_strike(self, user_id: str) -> None:
        total = await self.meta.bump_reputation(user_id, STRIKES)
        for session in self.sessions.user_sessions(user_id):
            session.strikes = max(session.strikes, total)
