"""Posting a comment: admission per message, then one durable write per batch.

``admit`` runs every check that needs no I/O (membership, idempotency, bans, room modes, slow
mode, rate limits, per-stream admission, moderation rules), assigns the id and encodes the event
once. One writer task then stores everything admitted so far to the CommentLog (one append),
issues the HistoryStore put, and only then acknowledges the authors (all acks in one
``send_batch``) and fans the comments out: an ack means stored in the log; the history put is
awaited before the next batch. Admission never waits for storage: while one batch is being written the next
one accumulates (group commit), so throughput is bounded by the slower of the two, not their sum.
Acks of one connection go out in post order; replies to its other messages may overtake them.

Fan-out per comment: shadow-banned -> the author's connections only; sampled out -> stored, sent
directly to the author's and mentioned users' connections; otherwise -> the stream's tick.

References are checked by the writer before the append (they may need a store read): a
``reply_to`` that is neither in the room's recent window, nor acked here lately (shared log), nor
in history is refused ``not_found`` (``field: "reply_to"``) and nothing is stored (the post still
used its rate and slow-mode slots); ``m`` keeps only the @handles that name a user
(``livechat.services.mentions``). A store that fails or is late lets both stand (fail open: they
are hints for display and notifications, not permissions).

Hold for review (``livechat.services.moderation.hold``): in a stream whose setting (``Room.hold``,
else ``chat.moderation.hold``) holds, a viewer's admitted comment is sent to its author's
connections at once and waits, acks included, for the classifier (at most the stream's bound)
before it joins a batch: released comments are stored and fanned out as usual; blocked and
held-back ones take the shadow path (acked, their author's only).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from livechat import tracing
from livechat.ids import id_timestamp_ms
from livechat.ports.comment_log import LogAppend, LogEntry
from livechat.ports.errors import BackendError
from livechat.ports.history import StoredComment
from livechat.ports.meta import FlaggedComment
from livechat.protocol import (
    ErrorCode,
    Post,
    ProtocolError,
    encode_ack,
    encode_comment,
    encode_direct,
    encode_notice,
    extract_mentions,
    unpackb,
)
from livechat.services.context import ChatContext
from livechat.services.delivery import Delivery, StoredPost
from livechat.services.idempotency import AckRecord, idempotency_key
from livechat.services.mentions import LOOKUP_TIMEOUT_S, MentionResolver
from livechat.services.moderation import ACCEPTED, SHADOWED, Decision, ReviewItem, ReviewQueue
from livechat.services.moderation.hold import (
    HELD_NOTICE,
    Decided,
    HoldDesk,
    HoldMode,
    HoldPolicy,
    Outcome,
    default_policy,
    in_force,
)
from livechat.services.room import Room
from livechat.services.sessions import Session
from livechat.services.shared_limits import SharedCheck, SharedLimits

log = logging.getLogger(__name__)

_BADGES = (None, "mod", "bc")

#: Above this many comments waiting for storage, ``backpressure`` makes the caller wait.
HIGH_WATER: Final = 20_000
#: With a shared log, a comment acked here reaches the room's recent window when the log hands it
#: back and history when ``livechat worker persist`` writes it: until then (a log round trip, well
#: under this many seconds) a reply to it is checked against the acks of this edge.
ACKED_WINDOW_S: Final = 5.0
#: Comments acked to their author only (shadow-banned, blocked or held back) remembered so the
#: author may reply to them like to any other (a not_found would tell them): ~100 bytes each.
HIDDEN_REMEMBERED: Final = 50_000


@dataclass(slots=True)
class PendingComment:
    stream: str
    user_id: str
    key: str
    comment_id: int
    ts_ms: int
    payload: bytes
    text: str
    mentions: list[str]
    shadow: bool
    flag_reason: str | None
    strikes: int
    # Role rank of the author in the stream and the stream's slow mode when admitted (shared limits).
    rank: int
    slow_s: int
    # (conn, rid, cmid) of the post and of reposts that arrived before it was stored.
    replies: list[tuple[int, int | None, str]] = field(default_factory=list)
    # When it was admitted (ns since the epoch), only while tracing (``livechat.tracing``).
    admitted_ns: int = 0
    # What the event is encoded from, to encode it again when ``mentions`` shrink.
    name: str = ""
    reply_to: int | None = None
    badge: str | None = None
    # ``reply_to`` is neither in the room's recent window nor acked lately: history is asked.
    reply_unchecked: bool = False
    # Hold for review: its author's connections have it already; the classifier has judged it
    # (no retro review); it was held back for want of a verdict (its author gets a notice).
    author_shown: bool = False
    reviewed: bool = False
    held_back: bool = False
    flag_score: float = -1.0


@dataclass(slots=True)
class _Candidate:
    """A post that passed the per-post checks, on its way through the batch phases."""

    session: Session
    msg: Post
    user: str
    key: str
    rank: int
    replies: list[tuple[int, int | None, str]]


def _retry_ms(seconds: float) -> int:
    return max(int(seconds * 1000.0 + 0.999), 1)


class CommentPipeline:
    def __init__(self, ctx: ChatContext, reviews: ReviewQueue | None, delivery: Delivery) -> None:
        self._ctx = ctx
        self._reviews = reviews
        self._delivery = delivery
        self._pending: list[PendingComment] = []
        # Admitted and not yet acked (pending or being written): reposts attach to these.
        self._unacked: dict[str, PendingComment] = {}
        self._writer: asyncio.Task[None] | None = None
        # Set after each stored batch: lets ``backpressure`` sleep instead of poll.
        self._stored = asyncio.Event()
        # History puts that failed (retried with the next batch's) and the watermarks waiting for
        # them: a watermark never passes a comment history does not hold. Past HIGH_WATER comments
        # the retry is dropped and no watermark moves again in this process: the start-up replay of
        # the log (``livechat.server.log_replay``) puts them.
        # Monotonic time the comment log append in flight began (None: none in flight).
        self._append_since: float | None = None
        self._unput: list[StoredComment] = []
        self._unmarked: dict[str, int] = {}
        self._marks_frozen = False
        self._mentions = MentionResolver(ctx.meta, ctx.clock)
        moderation = ctx.config.moderation
        self._hold_default = default_policy(moderation)
        self._desk = HoldDesk(ctx.moderation, moderation.classifier_concurrency)
        # Comments waiting for a verdict, and per stream the last one (they leave in order).
        self._holds: set[asyncio.Task[None]] = set()
        self._hold_tails: dict[str, asyncio.Task[None]] = {}
        # With a shared log: (stream, comment id) -> monotonic ack time, for ACKED_WINDOW_S.
        self._acked_ids: OrderedDict[tuple[str, int], float] = OrderedDict()
        # (stream, comment id) -> author of comments acked to their author only.
        self._hidden: OrderedDict[tuple[str, int], str] = OrderedDict()
        self.counters = {
            "accepted": 0,
            "duplicates": 0,
            "sampled_out": 0,
            "shadowed": 0,
            "rejected": 0,
            "reply_unknown": 0,
        }

    @property
    def pending(self) -> int:
        """Comments admitted and not yet acknowledged."""
        return len(self._unacked)

    def _start_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    async def _write_all(self) -> None:
        while self._pending:
            batch = self._pending
            self._pending = []
            try:
                await self._store(batch)
                self._stored.set()
            except Exception:
                self._append_since = None
                log.exception("storing %d comments failed", len(batch))
                for pending in batch:
                    if self._unacked.pop(pending.key, None) is None:
                        continue  # already acked before the failure
                    for conn, rid, cmid in pending.replies:
                        self._ctx.reply_error(
                            conn,
                            ProtocolError(
                                ErrorCode.INTERNAL, "internal error: retry with the same cmid", rid, cmid=cmid
                            ),
                        )

    @property
    def hold_counters(self) -> dict[str, int]:
        """Hold for review: comments held, released, blocked, held back, and judged without a verdict."""
        return dict(self._desk.counters)

    async def flush(self) -> None:
        """Wait until every comment admitted so far is stored and acknowledged (or refused)."""
        while True:
            if self._holds:
                await asyncio.wait(list(self._holds))
                continue
            if not (self._pending or (self._writer is not None and not self._writer.done())):
                return
            if self._writer is None or self._writer.done():
                self._start_writer()
            assert self._writer is not None
            await asyncio.shield(self._writer)

    async def backpressure(self, high_water: int = HIGH_WATER) -> None:
        """Wait while more than ``high_water`` comments are waiting for storage."""
        while len(self._unacked) > high_water and self._writer is not None and not self._writer.done():
            self._stored.clear()
            waiter = asyncio.ensure_future(self._stored.wait())
            await asyncio.wait([waiter, self._writer], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    def admit(self, session: Session, msg: Post) -> None:
        """Admit one post (see ``admit_batch``)."""
        self.admit_batch([(session, msg)])

    def admit_batch(self, posts: Sequence[tuple[Session, Post]]) -> None:
        """Check a run of posts; accepted ones wait for the writer, refused ones get their
        documented error now.

        Each post meets the checks in the documented order, run as phases over the whole run so the
        per-event loops are single calls into ``livechat.fastpath``: per-post checks without shared
        state (membership, reposts, bans, modes, slow mode), then the users' rate buckets, then the
        streams' admission caps, then the rules stage.
        """
        ctx = self._ctx
        now = ctx.clock.monotonic()
        wall = ctx.clock.time()
        candidates: list[_Candidate] = []
        in_run: dict[str, _Candidate] = {}
        posters: set[tuple[str, str]] = set()
        for session, msg in posts:
            candidate = self._precheck(session, msg, now, wall, in_run, posters)
            if candidate is not None:
                candidates.append(candidate)
                in_run[candidate.key] = candidate
                posters.add((msg.stream, candidate.user))
        if not candidates:
            return
        candidates = self._stall_phase(candidates, now)
        candidates = self._rate_phase(candidates, now)
        candidates = self._admission_phase(candidates, now)
        if candidates:
            self._rules_phase(candidates, now)
        if self._pending:
            self._start_writer()

    def _refuse(self, candidate: _Candidate, code: ErrorCode, message: str, **extra: Any) -> None:
        for conn, rid, cmid in candidate.replies:
            self._ctx.reply_error(conn, ProtocolError(code, message, rid, cmid=cmid, **extra))

    def _precheck(
        self,
        session: Session,
        msg: Post,
        now: float,
        wall: float,
        in_run: dict[str, _Candidate],
        posters: set[tuple[str, str]],
    ) -> _Candidate | None:
        ctx = self._ctx
        rid = msg.rid
        stream = msg.stream
        conn = session.conn
        member = session.streams.get(stream)
        room = ctx.rooms.get(stream)
        if member is None or room is None:
            ctx.reply_error(
                conn,
                ProtocolError(ErrorCode.NOT_JOINED, f"join {stream!r} before posting", rid, cmid=msg.cmid),
            )
            return None
        user = session.principal.user_id
        if user is None:
            ctx.reply_error(
                conn, ProtocolError(ErrorCode.READ_ONLY, "anonymous viewers cannot post", rid, cmid=msg.cmid)
            )
            return None
        key = idempotency_key(user, msg.cmid)
        record = ctx.idempotency.get(key, now)
        if record is not None:
            ctx.outbox.send(
                conn, encode_ack(rid, record.stream, msg.cmid, record.comment_id, record.ts_ms, True)
            )
            self.counters["duplicates"] += 1
            return None
        earlier = self._unacked.get(key) or in_run.get(key)
        if earlier is not None:
            earlier.replies.append((conn, rid, msg.cmid))
            self.counters["duplicates"] += 1
            return None
        error = self._room_check(room, member.rank, member.follow_since, user, stream, now, wall, posters)
        if error is not None:
            code, message, extra = error
            ctx.reply_error(conn, ProtocolError(code, message, rid, cmid=msg.cmid, **extra))
            return None
        return _Candidate(session, msg, user, key, member.rank, [(conn, rid, msg.cmid)])

    def _room_check(
        self,
        room: Room,
        rank: int,
        follow_since: float | None,
        user: str,
        stream: str,
        now: float,
        wall: float,
        posters: set[tuple[str, str]],
    ) -> tuple[ErrorCode, str, dict[str, Any]] | None:
        """Bans, then (viewers only) comments off, followers-only and slow mode."""
        ctx = self._ctx
        banned, until = ctx.rooms.ban_of(room, user, wall)
        if banned:
            if until is None:
                return ErrorCode.BANNED, "you are banned from this stream", {}
            return ErrorCode.TIMED_OUT, "you are timed out", {"until": int(until * 1000)}
        if rank:
            return None
        modes = room.modes
        if modes.comments_off:
            return ErrorCode.COMMENTS_OFF, "comments are off", {}
        min_age = modes.followers_only_min_age_s
        if min_age is not None and (follow_since is None or wall - follow_since < min_age):
            return (
                ErrorCode.FOLLOWERS_ONLY,
                "followers-only mode: follow the channel (long enough) to comment",
                {"min_age": min_age},
            )
        slow = modes.slow_seconds
        if slow:
            wait = ctx.limits.slow_mode_wait(stream, user, slow, now)
            if wait == 0.0 and (stream, user) in posters:
                wait = float(slow)  # an earlier post of this run takes the slot
            if wait > 0.0:
                return (
                    ErrorCode.SLOW_MODE,
                    f"slow mode: one comment every {slow} s",
                    {"retry_ms": _retry_ms(wait)},
                )
        return None

    def _rate_phase(self, candidates: list[_Candidate], now: float) -> list[_Candidate]:
        limits = self._ctx.limits
        allowed = limits.take_comments([c.user for c in candidates], bytes(c.rank for c in candidates), now)
        kept = []
        for candidate, ok in zip(candidates, allowed, strict=True):
            if ok:
                kept.append(candidate)
            else:
                wait = limits.comment_retry_after(candidate.user, candidate.rank, now)
                self._refuse(candidate, ErrorCode.RATE_LIMITED, "too many comments", retry_ms=_retry_ms(wait))
        return kept

    async def _append(self, batch: list[PendingComment], entries: list[LogEntry]) -> list[LogAppend]:
        """``log.append_many(entries)``; past ``limits.storage_stall_s`` the batch's authors are
        answered ``unavailable`` + ``retry_ms`` while the write goes on: whether it lands or not,
        their retry with the same cmid gets the one stored comment (the log's dedupe window)."""
        append = asyncio.ensure_future(self._ctx.log.append_many(entries))
        stall_s = self._ctx.config.limits.storage_stall_s
        if stall_s > 0:
            done, _ = await asyncio.wait([append], timeout=stall_s)
            if not done:
                log.warning(
                    "comment log has not answered for %.1f s: %d posts told to retry", stall_s, len(batch)
                )
                for pending in batch:
                    if self._unacked.get(pending.key) is pending:
                        del self._unacked[pending.key]
                        self._refuse_pending(pending, stall_s)
        return await append

    def _refuse_pending(self, pending: PendingComment, stall_s: float) -> None:
        for conn, rid, cmid in pending.replies:
            self._ctx.reply_error(
                conn,
                ProtocolError(
                    ErrorCode.UNAVAILABLE,
                    "storage unavailable: retry with the same cmid",
                    rid,
                    cmid=cmid,
                    retry_ms=_retry_ms(stall_s),
                ),
            )
        pending.replies.clear()

    def _stall_phase(self, candidates: list[_Candidate], now: float) -> list[_Candidate]:
        """Refuse new posts while the log leaves the write in flight unanswered past
        ``limits.storage_stall_s``: an outage answers ``unavailable`` in seconds, not after the
        log's own timeout, and nothing queues behind it (docs/operations.md, failure policies)."""
        stall_s = self._ctx.config.limits.storage_stall_s
        since = self._append_since
        if since is None or stall_s <= 0 or now - since < stall_s:
            return candidates
        for candidate in candidates:
            self._refuse(
                candidate,
                ErrorCode.UNAVAILABLE,
                "storage unavailable: retry with the same cmid",
                retry_ms=_retry_ms(stall_s),
            )
        return []

    def _admission_phase(self, candidates: list[_Candidate], now: float) -> list[_Candidate]:
        allowed = self._ctx.limits.admit_streams([c.msg.stream for c in candidates], now)
        kept = []
        for candidate, ok in zip(candidates, allowed, strict=True):
            if ok:
                kept.append(candidate)
            else:
                self._refuse(
                    candidate, ErrorCode.STREAM_BUSY, "this stream is at its comment capacity", retry_ms=1000
                )
        return kept

    def _rules_phase(self, candidates: list[_Candidate], now: float) -> None:
        ctx = self._ctx
        # Moderators and the broadcaster are exempt from the rules stage, like platform AutoMods.
        screened = [c for c in candidates if c.rank == 0]
        verdicts = ctx.moderation.screen_many(
            [c.msg.text for c in screened], [c.session.strikes for c in screened]
        )
        verdict_of = {id(c): v for c, v in zip(screened, verdicts, strict=True)}
        ids = ctx.ids
        for candidate in candidates:
            verdict = verdict_of.get(id(candidate), ACCEPTED)
            decision = verdict.decision
            user = candidate.user
            if decision is Decision.REJECT:
                self.counters["rejected"] += 1
                ctx.strike(user)
                self._refuse(candidate, ErrorCode.REJECTED, "the comment breaks the chat rules")
                continue
            if decision is Decision.SHADOW_BAN and verdict is not SHADOWED:
                # The offence that shadow-bans is a strike; the banned user's later comments are
                # not offences (a clean comment must not raise their count).
                ctx.strike(user)
            msg = candidate.msg
            session = candidate.session
            room = ctx.rooms.get(msg.stream)
            if candidate.rank == 0 and room is not None and room.modes.slow_seconds:
                ctx.limits.mark_posted(msg.stream, user, now)
            comment_id = ids.next_id()
            ts_ms = id_timestamp_ms(comment_id)
            text = msg.text
            mentions = extract_mentions(text) if "@" in text else []
            badge = _BADGES[candidate.rank]
            reply_to = msg.reply_to
            payload = encode_comment(
                comment_id, user, session.principal.name, text, ts_ms, reply_to, mentions, badge
            )
            pending = PendingComment(
                msg.stream,
                user,
                candidate.key,
                comment_id,
                ts_ms,
                payload,
                text,
                mentions,
                decision is Decision.SHADOW_BAN,
                verdict.reason if decision is Decision.FLAG else None,
                session.strikes,
                candidate.rank,
                room.modes.slow_seconds if room is not None else 0,
                candidate.replies,
                tracing.now_ns(),
                session.principal.name,
                reply_to,
                badge,
                reply_to is not None and not self._reply_known(msg.stream, reply_to, user),
            )
            self._unacked[candidate.key] = pending
            if candidate.rank == 0 and decision is not Decision.SHADOW_BAN and room is not None:
                policy = in_force(room.hold, self._hold_default)
                if policy.held:
                    self._hold(pending, policy)
                    continue
            self._pending.append(pending)

    def _hold(self, pending: PendingComment, policy: HoldPolicy) -> None:
        """Show the comment to its author now; it joins a batch once judged (in stream order)."""
        ctx = self._ctx
        conns = ctx.sessions.conns_in(pending.user_id, pending.stream)
        if conns:
            ctx.outbox.send_many(conns, encode_direct(pending.stream, [pending.payload]))
        pending.author_shown = True
        previous = self._hold_tails.get(pending.stream)
        task = asyncio.get_running_loop().create_task(self._held(pending, policy, previous))
        self._hold_tails[pending.stream] = task
        self._holds.add(task)
        task.add_done_callback(lambda done: self._hold_over(pending.stream, done))

    def _hold_over(self, stream: str, task: asyncio.Task[None]) -> None:
        self._holds.discard(task)
        if self._hold_tails.get(stream) is task:
            del self._hold_tails[stream]

    async def _held(
        self, pending: PendingComment, policy: HoldPolicy, previous: asyncio.Task[None] | None
    ) -> None:
        try:
            decided = await self._desk.decide(
                pending.text, pending.user_id, pending.stream, pending.strikes, policy
            )
        except Exception:
            log.exception("hold for review of comment %d failed", pending.comment_id)
            outcome = Outcome.RELEASE if policy.mode is HoldMode.OPEN else Outcome.HOLD_BACK
            decided = Decided(outcome, None)
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # comments of one stream leave the hold in order
        self._settle(pending, decided)
        self._pending.append(pending)
        self._start_writer()

    def _settle(self, pending: PendingComment, decided: Decided) -> None:
        """What the verdict (or its absence) makes of a held comment."""
        verdict = decided.verdict
        pending.reviewed = verdict is not None
        if decided.outcome is Outcome.BLOCK:
            self._ctx.strike(pending.user_id)
            pending.shadow = True
        elif decided.outcome is Outcome.HOLD_BACK:
            pending.shadow = pending.held_back = True
        elif verdict is not None and verdict.decision is Decision.FLAG:
            pending.flag_reason, pending.flag_score = verdict.reason, verdict.score

    async def _store(self, batch: list[PendingComment]) -> None:
        """Store one batch in one write, put it in history, then ack and fan out.

        With a shared log the comments are delivered when the log hands them back (on every edge,
        this one included) and ``livechat worker persist`` writes history; a shadow-banned comment
        stays out of the shared log (every edge would show it) and is acked from this edge alone.
        """
        ctx = self._ctx
        batch = await self._check_references(batch)
        if ctx.shared_limits is not None:
            batch = await self._shared_limits(ctx.shared_limits, batch)
            if not batch:
                return
        shared = ctx.shared_log
        # A shadow-banned comment stays out of the log (a log replayed into history, or followed
        # by other edges, would show it): it is acked and shown to its author from this edge alone.
        logged = [p for p in batch if not p.shadow]
        spans = [tracing.start_post(p.stream, p.comment_id, p.admitted_ns) for p in logged]
        append_ns = tracing.now_ns()
        self._append_since = ctx.clock.monotonic()
        try:
            appended = await self._append(
                batch,
                [
                    LogEntry(p.stream, p.payload, p.key, ctx.edge_id, tracing.traceparent(span))
                    for p, span in zip(logged, spans, strict=True)
                ],
            )
        except BackendError as exc:
            self._append_since = None
            for span in spans:
                tracing.end(span)
            log.warning("comment log append of %d comments failed: %s", len(batch), exc)
            for pending in batch:
                if self._unacked.get(pending.key) is pending:
                    del self._unacked[pending.key]
                for conn, rid, cmid in pending.replies:
                    ctx.reply_error(
                        conn,
                        ProtocolError(
                            ErrorCode.UNAVAILABLE,
                            "storage unavailable: retry with the same cmid",
                            rid,
                            cmid=cmid,
                            retry_ms=1000,
                        ),
                    )
            return
        self._append_since = None
        stored: list[PendingComment] = []
        now = ctx.clock.monotonic()
        results = {id(p): result for p, result in zip(logged, appended, strict=True)}
        for pending in batch:
            result = results.get(id(pending))
            if result is not None and result.duplicate:
                self._ack_original(pending, result.payload, now)
            else:
                stored.append(pending)
        visible = [
            StoredComment(p.stream, p.comment_id, p.user_id, p.payload)
            for p in stored
            if not (p.shadow or shared)
        ]
        # Issued now and awaited after the acks (the log holds the batch: an ack means stored). The
        # task queues the write before this loop reads anything a client sends after its ack, so on
        # the embedded store (one worker running jobs in call order) a read caused by an ack sees it.
        # History follows the log: the watermark says up to which offset (per stream) it holds the
        # log's comments, so a restart replays only what a crash left out (server/log_replay.py).
        marks: dict[str, int] = {}
        if not shared:
            for pending in stored:
                result = results.get(id(pending))
                if result is not None:
                    marks[pending.stream] = max(marks.get(pending.stream, -1), result.offset)
        history_put = asyncio.ensure_future(self._put_history(visible, marks)) if visible or marks else None
        now = ctx.clock.monotonic()
        # All acks of the batch leave in one call before the fan-out work (per connection in post
        # order); then delivery on this edge (``livechat.services.delivery``).
        acks: list[tuple[int, bytes]] = []
        try:
            for pending in stored:
                self._ack(pending, now, acks)
        finally:
            if acks:
                ctx.outbox.send_batch(acks)
            if append_ns:
                acked_ns = tracing.now_ns()
                for span in spans:
                    tracing.child("comment.append", span, append_ns, acked_ns)
                    tracing.end(span)
        shown = [p for p in stored if not p.shadow]
        self._hide(p for p in stored if p.shadow)
        if shared:
            for pending in shown:
                self._after_delivery(pending, now)
            return
        broadcast = self._delivery.deliver_many(
            [StoredPost(p.stream, p.comment_id, p.user_id, p.payload, p.mentions) for p in shown]
        )
        for pending, keep in zip(shown, broadcast, strict=True):
            ctx.fanout.comment(pending.stream, pending.payload, keep)
            if not keep:
                self.counters["sampled_out"] += 1
            self._after_delivery(pending, now)
        ctx.fanout.send_remote()
        if history_put is not None:
            await history_put

    def _reply_known(self, stream: str, comment_id: int, user: str) -> bool:
        """Whether ``user`` may answer ``comment_id`` in ``stream`` without a store read: it is in
        the recent window, acked here lately, or one of their own comments only they can see."""
        room = self._ctx.rooms.get(stream)
        if room is not None and comment_id in room.recent:
            return True
        if self._hidden.get((stream, comment_id)) == user:
            return True
        acked = self._acked_ids.get((stream, comment_id))
        return acked is not None and acked >= self._ctx.clock.monotonic() - ACKED_WINDOW_S

    async def _check_references(self, batch: list[PendingComment]) -> list[PendingComment]:
        """The batch without replies to comments that do not exist (their authors are told
        ``not_found``), with ``m`` cut to the handles that name a user."""
        asking = [p for p in batch if p.reply_unchecked]
        naming = [p for p in batch if p.mentions]
        if not (asking or naming):
            return batch
        history = self._ctx.history
        gets = [asyncio.ensure_future(history.get(p.stream, p.reply_to or 0)) for p in asking]
        resolved = await self._mentions.existing([p.mentions for p in naming]) if naming else []
        for pending, kept in zip(naming, resolved, strict=True):
            if kept != pending.mentions:
                pending.mentions = kept
                pending.payload = encode_comment(
                    pending.comment_id,
                    pending.user_id,
                    pending.name,
                    pending.text,
                    pending.ts_ms,
                    pending.reply_to,
                    kept,
                    pending.badge,
                )
        if not gets:
            return batch
        done, late = await asyncio.wait(gets, timeout=LOOKUP_TIMEOUT_S)
        for task in late:
            task.cancel()
        missing: set[int] = set()
        for pending, task in zip(asking, gets, strict=True):
            if task not in done or task.exception() is not None:
                # History late or down: the reply stands (fail open).
                if task in done and not isinstance(task.exception(), BackendError):
                    log.error("checking reply_to %d failed", pending.reply_to, exc_info=task.exception())
                continue
            reply_to = pending.reply_to or 0
            if task.result() is None and not self._reply_known(pending.stream, reply_to, pending.user_id):
                missing.add(id(pending))
                self._refuse_reference(pending)
        return [p for p in batch if id(p) not in missing] if missing else batch

    def _refuse_reference(self, pending: PendingComment) -> None:
        self.counters["reply_unknown"] += 1
        if self._unacked.get(pending.key) is pending:
            del self._unacked[pending.key]
        for conn, rid, cmid in pending.replies:
            self._ctx.reply_error(
                conn,
                ProtocolError(
                    ErrorCode.NOT_FOUND,
                    f"no comment {pending.reply_to} to reply to in this stream",
                    rid,
                    cmid=cmid,
                    field="reply_to",
                ),
            )
        pending.replies.clear()

    async def _shared_limits(self, limits: SharedLimits, batch: list[PendingComment]) -> list[PendingComment]:
        """The batch without the posts the cluster-wide limits refuse (their authors are told)."""
        refusals = await limits.check_many(
            [SharedCheck(p.user_id, p.stream, p.rank, p.slow_s) for p in batch]
        )
        kept = []
        for pending, refusal in zip(batch, refusals, strict=True):
            if refusal is None:
                kept.append(pending)
                continue
            code, message, extra = refusal
            self._unacked.pop(pending.key, None)
            for conn, rid, cmid in pending.replies:
                self._ctx.reply_error(conn, ProtocolError(code, message, rid, cmid=cmid, **extra))
        return kept

    async def _put_history(self, visible: list[StoredComment], marks: dict[str, int]) -> None:
        history = self._ctx.history
        comments, self._unput = self._unput + visible, []
        held, self._unmarked = self._unmarked, {}
        for stream, offset in marks.items():
            held[stream] = max(held.get(stream, -1), offset)
        try:
            if comments:
                await history.put_many(comments)  # idempotent: a retried comment is kept once
        except BackendError as exc:
            # The log holds them; acks still mean "stored". Retried with the next batch.
            log.warning("history put of %d comments failed: %s", len(comments), exc)
            if len(comments) > HIGH_WATER:
                self._marks_frozen = True
            else:
                self._unput, self._unmarked = comments, held
            return
        if held and not self._marks_frozen:
            try:
                await history.set_watermarks(held)
            except BackendError as exc:
                log.warning("history watermarks not advanced: %s", exc)
                for stream, offset in held.items():
                    self._unmarked[stream] = max(self._unmarked.get(stream, -1), offset)

    def _ack_original(self, pending: PendingComment, original: bytes, now: float) -> None:
        """The log already held this client message id (another edge, or before a restart)."""
        event = unpackb(original)
        record = AckRecord(pending.stream, int(event["id"]), int(event["ts"]))
        self._ctx.idempotency.put(pending.key, record, now)
        self._unacked.pop(pending.key, None)
        send = self._ctx.outbox.send
        for conn, rid, cmid in pending.replies:
            send(conn, encode_ack(rid, record.stream, cmid, record.comment_id, record.ts_ms, True))
        self.counters["duplicates"] += 1

    def _ack(self, pending: PendingComment, now: float, replies: list[tuple[int, bytes]]) -> None:
        """Record the ack for reposts and queue one ack per post of it onto ``replies``."""
        ctx = self._ctx
        ctx.idempotency.put(pending.key, AckRecord(pending.stream, pending.comment_id, pending.ts_ms), now)
        self._unacked.pop(pending.key, None)
        if pending.shadow:
            hidden = self._hidden
            hidden[(pending.stream, pending.comment_id)] = pending.user_id
            if len(hidden) > HIDDEN_REMEMBERED:
                hidden.popitem(last=False)
        elif ctx.shared_log:
            acked = self._acked_ids
            acked[(pending.stream, pending.comment_id)] = now
            while acked and next(iter(acked.values())) < now - ACKED_WINDOW_S:
                acked.popitem(last=False)
        first = True
        for conn, rid, cmid in pending.replies:
            replies.append(
                (conn, encode_ack(rid, pending.stream, cmid, pending.comment_id, pending.ts_ms, not first))
            )
            first = False

    def _hide(self, shadowed: Iterable[PendingComment]) -> None:
        """A shadow-banned comment goes to its author's connections on this edge only (a held one
        went when it was admitted); a held-back one's author gets a ``held`` notice."""
        ctx = self._ctx
        direct: dict[tuple[int, str], list[bytes]] = {}
        notices: list[tuple[int, bytes]] = []
        for pending in shadowed:
            conns = ctx.sessions.conns_in(pending.user_id, pending.stream)
            if pending.held_back:
                notice = encode_notice(
                    pending.stream,
                    HELD_NOTICE,
                    "moderation is unavailable: your comment was not shown to others",
                    id=pending.comment_id,
                )
                notices.extend((conn, notice) for conn in conns)
            if pending.author_shown:
                continue
            self.counters["shadowed"] += 1
            for conn in conns:
                direct.setdefault((conn, pending.stream), []).append(pending.payload)
        replies = [(conn, encode_direct(stream, events)) for (conn, stream), events in direct.items()]
        if replies or notices:
            ctx.outbox.send_batch(replies + notices)

    def _after_delivery(self, pending: PendingComment, now: float) -> None:
        """What only the posting edge does for a shown comment: flag it, queue it for review."""
        ctx = self._ctx
        self.counters["accepted"] += 1
        if pending.flag_reason is not None:
            ctx.background.spawn(
                ctx.meta.flag_comment(
                    FlaggedComment(
                        pending.stream,
                        pending.comment_id,
                        pending.user_id,
                        pending.payload,
                        pending.flag_reason,
                        pending.flag_score,
                        ctx.clock.time(),
                    )
                ),
                "flag comment",
            )
        if self._reviews is not None and not pending.reviewed:
            self._reviews.submit(
                ReviewItem(
                    pending.stream,
                    pending.comment_id,
                    pending.user_id,
                    pending.text,
                    pending.payload,
                    pending.strikes,
                    now,
                )
            )
