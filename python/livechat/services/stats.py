"""What the chat services report to ``/metrics`` (``ChatService.stats()``), as one typed value.

A ``TypedDict`` rather than a dataclass: the value is built as a dict literal and read by key (tests
read ``stats()["sessions"]``), and mypy checks both ends, so a key renamed on one side only is a
type error rather than a gap found in an end-to-end run. Every value is a snapshot (copied
counters), never a live view. ``livechat.server.metrics`` turns it into metric families.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from livechat.histogram import HistogramSnapshot


class ChatStats(TypedDict):
    """One snapshot of the chat services' counters and gauges."""

    # Authenticated connections, streams loaded on this edge, joins that subscribed a connection.
    sessions: int
    rooms: int
    joins: int
    # Connections refused at open, by error code (``auth_required``…).
    auth_refused: Mapping[str, int]
    # accepted, duplicates, sampled_out, shadowed, rejected, reply_unknown (``services.comments``).
    comments: Mapping[str, int]
    # Hold for review: held, released, blocked, held_back, no_verdict (``moderation.hold``).
    hold: Mapping[str, int]
    # Admitted comments waiting for storage.
    comments_pending: int
    # Posts refused, by the error code the author got; every error reply, by code.
    posts_refused: Mapping[str, int]
    errors_sent: Mapping[str, int]
    # reviewed, timeouts, failures, breaker_skipped, backlog_skipped (``services.moderation``).
    moderation: Mapping[str, int]
    # Classifier verdicts by decision value, and the wall time of every classifier call.
    moderation_verdicts: Mapping[str, int]
    moderation_latency: HistogramSnapshot
    # The circuit breaker's state: a ``BreakerState`` value.
    breaker: str
    # stream -> (sampling tier level, comments per second), for streams with recent comments.
    tiers: Mapping[str, tuple[int, float]]
    idempotency_entries: int
    background_failures: int
