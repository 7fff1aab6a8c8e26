"""``/metrics`` families of the chat services (``ChatStats``): sessions, comments, moderation, sampling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from livechat.protocol import ErrorCode
from livechat.server.metrics.families import counter, gauge, histogram, labelled
from livechat.services.moderation.breaker import BreakerState
from livechat.services.stats import ChatStats

POST_REFUSALS: Final = tuple(
    code.value
    for code in (
        ErrorCode.NOT_JOINED,
        ErrorCode.READ_ONLY,
        ErrorCode.TEXT_EMPTY,
        ErrorCode.TEXT_TOO_LONG,
        ErrorCode.BAD_TEXT,
        ErrorCode.BANNED,
        ErrorCode.TIMED_OUT,
        ErrorCode.COMMENTS_OFF,
        ErrorCode.FOLLOWERS_ONLY,
        ErrorCode.SLOW_MODE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.STREAM_BUSY,
        ErrorCode.REJECTED,
        ErrorCode.UNAVAILABLE,
        ErrorCode.INTERNAL,
    )
)
AUTH_REFUSALS: Final = (
    ErrorCode.AUTH_REQUIRED.value,
    ErrorCode.AUTH_INVALID.value,
    ErrorCode.AUTH_EXPIRED.value,
)


#: Every outcome of hold for review, written as 0 before it happens (``moderation.hold``).
HOLD_OUTCOMES: Final = ("held", "released", "blocked", "held_back", "no_verdict")


def chat_families(stats: ChatStats, stream_series: int) -> Iterator[Metric]:
    comments, moderation = stats["comments"], stats["moderation"]
    yield gauge("livechat_sessions", "Authenticated connections (chat sessions).", stats["sessions"])
    yield gauge("livechat_rooms", "Streams loaded on this edge.", stats["rooms"])
    yield counter("livechat_joins_total", "Joins that subscribed a connection to a stream.", stats["joins"])
    yield labelled(
        CounterMetricFamily(
            "livechat_auth_refused_total",
            "Connections refused at open by the token check, by error code.",
            labels=["code"],
        ),
        stats["auth_refused"],
        AUTH_REFUSALS,
    )
    yield counter(
        "livechat_comments_accepted_total",
        "Comments stored and acknowledged (shadow-banned ones excluded).",
        comments["accepted"],
    )
    yield labelled(
        CounterMetricFamily(
            "livechat_comments_rejected_total",
            "Posts refused, by the error code the author got.",
            labels=["reason"],
        ),
        stats["posts_refused"],
        POST_REFUSALS,
    )
    yield counter(
        "livechat_comments_duplicate_total",
        "Reposts of a known client message id, answered with the first ack.",
        comments["duplicates"],
    )
    yield counter(
        "livechat_comments_sampled_out_total",
        "Accepted comments left out of the stream tick by adaptive sampling.",
        comments["sampled_out"],
    )
    yield counter(
        "livechat_comments_shadowed_total",
        "Comments of shadow-banned authors (shown to the author only).",
        comments["shadowed"],
    )
    yield counter(
        "livechat_comments_reply_unknown_total",
        "Replies refused because the comment replied to does not exist (not_found, field reply_to).",
        comments["reply_unknown"],
    )
    yield labelled(
        CounterMetricFamily(
            "livechat_hold_comments_total",
            "Hold for review: comments held for the classifier, then released, blocked, held back "
            "(fail-closed, no verdict), and held comments judged without a verdict in time.",
            labels=["outcome"],
        ),
        stats["hold"],
        HOLD_OUTCOMES,
    )
    yield gauge(
        "livechat_comments_pending",
        "Comments admitted and waiting for storage (acks go out once stored).",
        stats["comments_pending"],
    )
    yield labelled(
        CounterMetricFamily(
            "livechat_error_replies_total", "Error replies sent to clients, by code.", labels=["code"]
        ),
        stats["errors_sent"],
    )
    calls = CounterMetricFamily(
        "livechat_moderation_classifier_calls_total", "Classifier calls by outcome.", labels=["outcome"]
    )
    calls.add_metric(["ok"], moderation["reviewed"])
    calls.add_metric(["timeout"], moderation["timeouts"])
    calls.add_metric(["error"], moderation["failures"])
    yield calls
    skipped = CounterMetricFamily(
        "livechat_moderation_skipped_total",
        "Comments not sent to the classifier: breaker open, or too late for the tombstone budget.",
        labels=["reason"],
    )
    skipped.add_metric(["breaker_open"], moderation["breaker_skipped"])
    skipped.add_metric(["backlog"], moderation["backlog_skipped"])
    yield skipped
    yield labelled(
        CounterMetricFamily(
            "livechat_moderation_verdicts_total",
            "Classifier verdicts by decision (reject and shadow_ban retro-delete the comment).",
            labels=["decision"],
        ),
        stats["moderation_verdicts"],
    )
    yield histogram(
        "livechat_moderation_classifier_seconds",
        "Wall time of each classifier call, timeouts and errors included.",
        stats["moderation_latency"],
    )
    yield labelled(
        GaugeMetricFamily(
            "livechat_moderation_breaker_state",
            "Classifier circuit breaker: 1 for the current state.",
            labels=["state"],
        ),
        {state.value: int(state.value == stats["breaker"]) for state in BreakerState},
    )
    tiers = stats["tiers"]
    per_tier: dict[str, int] = {}
    for level, _ in tiers.values():
        per_tier[str(level)] = per_tier.get(str(level), 0) + 1
    yield labelled(
        GaugeMetricFamily(
            "livechat_sampling_streams",
            "Streams with recent comments, by sampling tier (0 = everything broadcast).",
            labels=["tier"],
        ),
        per_tier,
        ["0"],
    )
    busiest = sorted(tiers.items(), key=lambda item: (-item[1][1], item[0]))[:stream_series]
    tier = GaugeMetricFamily(
        "livechat_sampling_tier",
        "Sampling tier of the busiest streams (lvl > 0: 'chat is moving fast').",
        labels=["stream"],
    )
    rate = GaugeMetricFamily(
        "livechat_stream_comment_rate",
        "Comments per second of the busiest streams, as the sampler measures it.",
        labels=["stream"],
    )
    for stream, (level, per_s) in busiest:
        tier.add_metric([stream], level)
        rate.add_metric([stream], per_s)
    yield tier
    yield rate
    yield gauge(
        "livechat_idempotency_entries",
        "Client message ids remembered for idempotent reposts.",
        stats["idempotency_entries"],
    )
    yield counter(
        "livechat_background_failures_total",
        "Background writes (flags, strikes, broker publishes) that failed.",
        stats["background_failures"],
    )
