"""Rules, circuit breaker, classifier callout (real HTTP endpoint), reputation, review queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from classifier_server import ClassifierServer
from livechat.config import ModerationConfig
from livechat.services.clock import ManualClock, SystemClock
from livechat.services.moderation import (
    BreakerState,
    CircuitBreaker,
    ClassifierError,
    Decision,
    HttpClassifier,
    ModerationPipeline,
    ReviewItem,
    ReviewQueue,
    RuleHit,
    Rules,
    Verdict,
)
from livechat.services.moderation.classifier import parse_verdict


@pytest.fixture
async def http_classifier() -> AsyncIterator[Callable[[str], HttpClassifier]]:
    """``http_classifier(url)``: an HttpClassifier closed (its keep-alive connections too) after the test."""
    made: list[HttpClassifier] = []

    def make(url: str) -> HttpClassifier:
        made.append(HttpClassifier(url))
        return made[-1]

    yield make
    for classifier in made:
        await classifier.aclose()


@pytest.fixture
async def server() -> AsyncIterator[ClassifierServer]:
    srv = ClassifierServer()
    await srv.start()
    yield srv
    await srv.stop()


def test_rules_block_before_flag() -> None:
    rules = Rules(["badword"], ["spoiler"])
    assert rules.check("b a d w 0 r d") == (RuleHit.BLOCK, "badword")
    assert rules.check("SPOILER: he dies") == (RuleHit.FLAG, "spoiler")
    assert rules.check("fine") == (RuleHit.NONE, "")
    assert Rules([], []).check("anything") == (RuleHit.NONE, "")


def test_breaker_cycles_closed_open_half_open() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(3, 10.0, clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_success()
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # exactly one trial call
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_reputation_tightens_thresholds_and_escalates() -> None:
    pipeline = ModerationPipeline(ModerationConfig(blocked_terms=("badword",)), ManualClock())
    assert pipeline.thresholds(0) == (0.9, 0.6)
    reject, flag = pipeline.thresholds(2)
    assert reject == pytest.approx(0.7) and flag == pytest.approx(0.4)
    assert pipeline.thresholds(50) == (0.3, 0.3)
    assert pipeline.screen("badword", 0).decision is Decision.REJECT
    assert pipeline.screen("badword", 3).decision is Decision.SHADOW_BAN
    # Past shadow_ban_strikes every comment is shadowed, clean ones too (a whole shadow ban).
    assert pipeline.screen("hello", 9).decision is Decision.SHADOW_BAN
    assert pipeline.screen("hello", 2).decision is Decision.ACCEPT


async def test_http_classifier_scores(server: ClassifierServer) -> None:
    classifier = HttpClassifier(server.url)
    try:
        assert (await classifier.classify("hello", "u", "s")).score == 0.05
        verdict = await classifier.classify("so toxic", "u", "s")
        assert verdict.score == 0.95 and verdict.labels == ("test",)
        await classifier.classify("again", "u", "s")  # reuses the keep-alive connection
        with pytest.raises(ClassifierError, match="HTTP 503"):
            await classifier.classify("status:503", "u", "s")
        with pytest.raises(ClassifierError, match="non-JSON"):
            await classifier.classify("garbage", "u", "s")
    finally:
        await classifier.aclose()


def test_verdict_parsing_refuses_bad_answers() -> None:
    assert parse_verdict(b'{"score": 1}').score == 1.0
    for body in (b"[]", b'{"score": 2}', b'{"score": true}', b'{"score": 0.5, "labels": [1]}', b"{"):
        with pytest.raises(ClassifierError):
            parse_verdict(body)
    with pytest.raises(ValueError):
        HttpClassifier("ftp://x/y")


async def test_pipeline_review_thresholds_with_real_classifier(
    server: ClassifierServer, http_classifier: Any
) -> None:
    pipeline = ModerationPipeline(ModerationConfig(), SystemClock(), http_classifier(server.url))
    assert (await pipeline.review("toxic", "u", "s", 0)).decision is Decision.REJECT
    assert (await pipeline.review("toxic", "u", "s", 3)).decision is Decision.SHADOW_BAN
    assert (await pipeline.review("iffy", "u", "s", 0)).decision is Decision.FLAG
    assert (await pipeline.review("iffy", "u", "s", 1)).decision is Decision.FLAG  # flag 0.5 <= 0.7 < 0.8
    assert (await pipeline.review("iffy", "u", "s", 2)).decision is Decision.REJECT  # reject at 0.7
    assert (await pipeline.review("fine", "u", "s", 0)).decision is Decision.ACCEPT
    assert pipeline.counters["reviewed"] == 6


async def test_timeouts_fail_open_and_open_the_breaker(
    server: ClassifierServer, http_classifier: Any
) -> None:
    config = ModerationConfig(classifier_timeout_s=0.05, breaker_failures=2, breaker_open_s=0.2)
    pipeline = ModerationPipeline(config, SystemClock(), http_classifier(server.url))
    for _ in range(2):
        assert (await pipeline.review("toxic sleep:0.5", "u", "s", 0)).decision is Decision.ACCEPT
    assert pipeline.counters["timeouts"] == 2
    assert pipeline.breaker.state is BreakerState.OPEN
    before = server.requests
    assert (await pipeline.review("toxic", "u", "s", 0)).decision is Decision.ACCEPT
    assert server.requests == before and pipeline.counters["breaker_skipped"] == 1
    await asyncio.sleep(0.25)
    # Half-open trial succeeds: the breaker closes and verdicts count again.
    assert (await pipeline.review("toxic", "u", "s", 0)).decision is Decision.REJECT
    assert pipeline.breaker.state is BreakerState.CLOSED


async def test_server_errors_count_as_failures(server: ClassifierServer, http_classifier: Any) -> None:
    server.fail = True
    pipeline = ModerationPipeline(
        ModerationConfig(breaker_failures=3), SystemClock(), http_classifier(server.url)
    )
    for _ in range(3):
        assert (await pipeline.review("toxic", "u", "s", 0)).decision is Decision.ACCEPT
    assert pipeline.counters["failures"] == 3 and pipeline.breaker.state is BreakerState.OPEN


async def test_review_queue_hands_verdicts_and_skips_stale_items(
    server: ClassifierServer, http_classifier: Any
) -> None:
    clock = SystemClock()
    pipeline = ModerationPipeline(ModerationConfig(), clock, http_classifier(server.url))
    seen: list[tuple[int, Decision]] = []

    async def on_verdict(item: ReviewItem, verdict: Verdict) -> None:
        seen.append((item.comment_id, verdict.decision))

    queue = ReviewQueue(pipeline, on_verdict, clock, concurrency=4, timeout_s=0.8)
    queue.start()
    now = clock.monotonic()
    for cid, text in enumerate(["fine", "toxic", "iffy"], start=1):
        assert queue.submit(ReviewItem("s", cid, "u", text, b"", 0, now))
    # Broadcast 5 s ago: its tombstone could no longer arrive within 2 s, so it is skipped.
    queue.submit(ReviewItem("s", 4, "u", "toxic", b"", 0, now - 5.0))
    await queue.join()
    await queue.aclose()
    assert sorted(seen) == [(2, Decision.REJECT), (3, Decision.FLAG)]
    assert pipeline.counters["backlog_skipped"] == 1
