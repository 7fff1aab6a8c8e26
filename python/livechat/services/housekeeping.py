"""Periodic work of one edge's chat services: sampling tiers and engagement totals into the streams'
state slots (every ``rooms.engagement_flush_s``), and expiry of idle rooms, idempotency entries and
rate windows (every ``PRUNE_EVERY_S``).
"""

from __future__ import annotations

import logging
from typing import Final

from livechat.ports.errors import BackendError
from livechat.protocol import StateKey, packb, tier_fields
from livechat.services.context import ChatContext

log = logging.getLogger(__name__)

#: Housekeeping that need not run every engagement flush (expiry, pruning), in seconds.
PRUNE_EVERY_S: Final = 5.0


class Housekeeping:
    __slots__ = ("_ctx", "_last_prune", "_tiers")

    def __init__(self, ctx: ChatContext) -> None:
        self._ctx = ctx
        # stream -> (tier level, rate) last put in the stream's tier slot.
        self._tiers: dict[str, tuple[int, float]] = {}
        self._last_prune = ctx.clock.monotonic()

    async def run(self) -> None:
        """Tier changes and engagement totals into state slots; every PRUNE_EVERY_S, expiry."""
        ctx = self._ctx
        now = ctx.clock.monotonic()
        for stream in ctx.sampler.streams():
            tier = ctx.sampler.tier(stream, now)
            last = self._tiers.get(stream)
            if (
                last is None
                or last[0] != tier.level
                or (tier.level and abs(tier.rate - last[1]) > 0.1 * last[1])
            ):
                self._tiers[stream] = (tier.level, tier.rate)
                ctx.outbox.set_state(
                    stream, StateKey.TIER, packb(tier_fields(tier.level, tier.keep_ppm, tier.rate))
                )
        try:
            await ctx.engagement.flush(ctx.outbox, now)
        except BackendError as exc:
            log.warning("engagement totals not shared this round: %s", exc)
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            ctx.idempotency.expire(now)
            ctx.limits.prune(now)
            for stream in await ctx.rooms.prune():
                ctx.engagement.drop(stream)
                ctx.sampler.forget(stream)
                self._tiers.pop(stream, None)
