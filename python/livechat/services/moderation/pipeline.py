"""Moderation decisions: rules (sync, before broadcast) then the classifier (async, after).

Broadcast first, retro-delete after: a comment that passes the rules is broadcast at once; the
classifier's verdict, when it lands, may turn it into a tombstone (REJECT, SHADOW_BAN) or a review
entry (FLAG). The classifier is bounded by a timeout and a circuit breaker and fails open (the
comment stands) when slow, broken or backed up, so that TOMBSTONE_BUDGET_S holds for every
tombstone that is sent.

Reputation: each REJECT/SHADOW_BAN is a strike; every strike lowers the classifier thresholds by
``strike_step`` (to ``min_threshold``), and from ``shadow_ban_strikes`` strikes on an offence is a
SHADOW_BAN (the author keeps seeing their comments, nobody else does) instead of a REJECT. That
offence takes the user past ``shadow_ban_strikes``: from then on the user is shadow-banned, and
EVERY comment of theirs is a SHADOW_BAN at the rules stage (clean ones too), so the ban is whole
rather than a hole around the offending comment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from livechat.config import ModerationConfig
from livechat.histogram import LatencyHistogram
from livechat.services.clock import Clock
from livechat.services.moderation.breaker import CircuitBreaker
from livechat.services.moderation.classifier import Classifier
from livechat.services.moderation.rules import RuleHit, Rules

log = logging.getLogger(__name__)

#: A retro-delete tombstone must reach live clients within this long after the broadcast.
TOMBSTONE_BUDGET_S: Final = 2.0
#: Kept free inside the budget for the edge's tick interval and scheduling.
TICK_MARGIN_S: Final = 0.3

STRIKES: Final = "strikes"


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    SHADOW_BAN = "shadow_ban"
    FLAG = "flag"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str
    # Classifier score, or -1.0 when the verdict came from the rules.
    score: float = -1.0


ACCEPTED: Final = Verdict(Decision.ACCEPT, "")
#: Any comment of a shadow-banned user.
SHADOWED: Final = Verdict(Decision.SHADOW_BAN, "shadow-banned user")


class ModerationPipeline:
    """Stateless per comment apart from the circuit breaker and counters."""

    def __init__(self, config: ModerationConfig, clock: Clock, classifier: Classifier | None = None) -> None:
        self._config = config
        self.rules = Rules(config.blocked_terms, config.flagged_terms)
        self._classifier = classifier
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_open_s, clock)
        self.counters: dict[str, int] = {
            "reviewed": 0,
            "timeouts": 0,
            "failures": 0,
            "breaker_skipped": 0,
            "backlog_skipped": 0,
        }
        # Classifier verdicts by decision, and the wall time of every classifier call (timeouts
        # and failures included): the moderation latency of /metrics.
        self.verdicts: dict[str, int] = {decision.value: 0 for decision in Decision}
        self.latency = LatencyHistogram()

    @property
    def reviews(self) -> bool:
        """Whether accepted comments go on to the classifier."""
        return self._classifier is not None

    def thresholds(self, strikes: int) -> tuple[float, float]:
        """(reject, flag) score thresholds for a user with ``strikes`` strikes."""
        config = self._config
        drop = max(strikes, 0) * config.strike_step
        reject = max(config.min_threshold, config.reject_score - drop)
        flag = max(config.min_threshold, min(config.flag_score - drop, reject))
        return reject, flag

    def offence(self, strikes: int) -> Decision:
        return Decision.SHADOW_BAN if strikes >= self._config.shadow_ban_strikes else Decision.REJECT

    def shadow_banned(self, strikes: int) -> bool:
        """Whether a user with ``strikes`` strikes has been shadow-banned (an offence at
        ``shadow_ban_strikes`` or more took them past it)."""
        return strikes > self._config.shadow_ban_strikes

    def screen(self, text: str, strikes: int) -> Verdict:
        """Rules stage, synchronous, before anything is stored or broadcast."""
        if self.shadow_banned(strikes):
            return SHADOWED
        hit, term = self.rules.check(text)
        if hit is RuleHit.NONE:
            return ACCEPTED
        if hit is RuleHit.BLOCK:
            return Verdict(self.offence(strikes), f"blocked term {term!r}")
        return Verdict(Decision.FLAG, f"flagged term {term!r}")

    def screen_many(self, texts: Sequence[str], strikes: Sequence[int]) -> list[Verdict]:
        """``screen`` of each text (with its author's strikes), one scanner pass per list."""
        if not texts:
            return []
        verdicts = []
        for (hit, term), user_strikes in zip(self.rules.check_many(texts), strikes, strict=True):
            if self.shadow_banned(user_strikes):
                verdicts.append(SHADOWED)
            elif hit is RuleHit.NONE:
                verdicts.append(ACCEPTED)
            elif hit is RuleHit.BLOCK:
                verdicts.append(Verdict(self.offence(user_strikes), f"blocked term {term!r}"))
            else:
                verdicts.append(Verdict(Decision.FLAG, f"flagged term {term!r}"))
        return verdicts

    async def review(self, text: str, user_id: str, stream: str, strikes: int) -> Verdict:
        """Classifier stage. Never raises for classifier trouble: it fails open with ACCEPT."""
        verdict = await self.judge(text, user_id, stream, strikes, self._config.classifier_timeout_s)
        return ACCEPTED if verdict is None else verdict

    async def judge(
        self, text: str, user_id: str, stream: str, strikes: int, timeout_s: float
    ) -> Verdict | None:
        """The classifier's verdict within ``timeout_s``, or None when there is none: no classifier,
        the breaker open, a timeout or a failure (the last two count against the breaker). Never
        raises for classifier trouble; the caller picks fail-open or fail-closed."""
        classifier = self._classifier
        if classifier is None:
            return None
        if not self.breaker.allow():
            self.counters["breaker_skipped"] += 1
            return None
        started = time.perf_counter()
        try:
            verdict = await asyncio.wait_for(classifier.classify(text, user_id, stream), timeout_s)
        except TimeoutError:
            self.latency.observe(time.perf_counter() - started)
            self.counters["timeouts"] += 1
            self.breaker.record_failure()
            return None
        except Exception as exc:
            self.latency.observe(time.perf_counter() - started)
            self.counters["failures"] += 1
            self.breaker.record_failure()
            log.warning("moderation classifier failed: %s", exc)
            return None
        self.latency.observe(time.perf_counter() - started)
        self.breaker.record_success()
        self.counters["reviewed"] += 1
        reject, flag = self.thresholds(strikes)
        if verdict.score >= reject:
            decided = Verdict(self.offence(strikes), "classifier", verdict.score)
        elif verdict.score >= flag:
            decided = Verdict(Decision.FLAG, "classifier", verdict.score)
        else:
            decided = ACCEPTED
        self.verdicts[decided.decision.value] += 1
        return decided


@dataclass(slots=True)
class ReviewItem:
    stream: str
    comment_id: int
    user_id: str
    text: str
    payload: bytes
    strikes: int
    # Monotonic seconds at broadcast.
    broadcast_at: float


VerdictHandler = Callable[[ReviewItem, Verdict], Awaitable[None]]


class ReviewQueue:
    """Bounded queue of broadcast comments awaiting the classifier, worked by N tasks.

    An item still queued when its tombstone could no longer make TOMBSTONE_BUDGET_S is skipped
    (counted), as is an item submitted to a full queue: the comment stands.
    """

    def __init__(
        self,
        pipeline: ModerationPipeline,
        on_verdict: VerdictHandler,
        clock: Clock,
        concurrency: int,
        timeout_s: float,
    ) -> None:
        self._pipeline = pipeline
        self._on_verdict = on_verdict
        self._clock = clock
        self._concurrency = max(concurrency, 1)
        self._queue: asyncio.Queue[ReviewItem] = asyncio.Queue(maxsize=self._concurrency * 16)
        self._max_wait = max(TOMBSTONE_BUDGET_S - TICK_MARGIN_S - timeout_s, 0.0)
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]

    def submit(self, item: ReviewItem) -> bool:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._pipeline.counters["backlog_skipped"] += 1
            return False
        return True

    async def join(self) -> None:
        """Wait until every submitted item has been handled."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if self._clock.monotonic() - item.broadcast_at > self._max_wait:
                    self._pipeline.counters["backlog_skipped"] += 1
                    continue
                verdict = await self._pipeline.review(item.text, item.user_id, item.stream, item.strikes)
                if verdict.decision is not Decision.ACCEPT:
                    await self._on_verdict(item, verdict)
            except Exception:
                log.exception("moderation review of comment %d failed", item.comment_id)
            finally:
                self._queue.task_done()

    async def aclose(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
