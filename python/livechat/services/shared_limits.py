"""Comment budgets and slow mode across every edge, through the shared Registry.

Each edge first applies its own limits (``livechat.services.limits``: in memory, no round trip).
A user who spreads posts over several edges passes each edge's check, so the writer checks the
batch once more against windows every edge shares (``Registry.allow``: exact sliding windows in
Redis, on Redis' clock) before it appends to the log. One concurrent round of calls per batch:
the registry pipelines them, so a batch costs about one round trip, not one per post.

Fallback when the registry cannot answer (outage, timeout): the post is let through on the local
limits alone (``failed_open`` counts those). A Redis outage must not stop a chat; for its length
a user can post up to the local limit on each edge they connect to.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

from livechat.config import LimitsConfig
from livechat.ports.errors import BackendError
from livechat.ports.registry import Registry
from livechat.protocol import ErrorCode

log = logging.getLogger(__name__)

#: The comment budget's window (the limits are "per minute").
WINDOW_S: Final = 60.0

Refusal = tuple[ErrorCode, str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SharedCheck:
    """One post to check: who, where, with which role rank, and the stream's slow mode (0 = off)."""

    user_id: str
    stream: str
    rank: int
    slow_s: int


class SharedLimits:
    __slots__ = ("_limits", "_registry", "failed_open", "refused")

    def __init__(self, registry: Registry, config: LimitsConfig) -> None:
        self._registry = registry
        self._limits = (
            config.comments_per_minute_viewer,
            config.comments_per_minute_moderator,
            config.comments_per_minute_broadcaster,
        )
        self.failed_open = 0
        self.refused = 0

    async def check_many(self, checks: list[SharedCheck]) -> list[Refusal | None]:
        """Per post: None (allowed, and counted) or the refusal to send its author."""
        return list(await asyncio.gather(*(self._check(check) for check in checks)))

    async def _check(self, check: SharedCheck) -> Refusal | None:
        registry = self._registry
        try:
            if check.rank == 0 and check.slow_s > 0:
                key = f"slow:{{{check.stream}}}:{check.user_id}"
                if not await registry.allow(key, 1, float(check.slow_s)):
                    self.refused += 1
                    return (
                        ErrorCode.SLOW_MODE,
                        f"slow mode: one comment every {check.slow_s} s",
                        {"retry_ms": check.slow_s * 1000},
                    )
            limit = self._limits[min(check.rank, 2)]
            if limit > 0 and not await registry.allow(f"comments:{check.user_id}", limit, WINDOW_S):
                self.refused += 1
                return (
                    ErrorCode.RATE_LIMITED,
                    "too many comments",
                    {"retry_ms": int(WINDOW_S * 1000 / limit)},
                )
        except BackendError as exc:
            self.failed_open += 1
            log.debug("shared limits unavailable, local limits only: %s", exc)
        return None
