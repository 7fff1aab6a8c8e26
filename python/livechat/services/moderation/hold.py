"""Hold for review: a stream's viewer comments wait for the classifier before anyone else sees them.

The default is broadcast first, retro-delete after (``pipeline``). A stream in hold mode instead
sends each viewer comment to its author's connections at once (an ``ev``) and asks the classifier,
waiting at most the stream's bound (``chat.moderation.hold_ms``, 300 ms by default); the verdict
decides what the others see:

- ACCEPT or FLAG: RELEASE: stored, acked and fanned out as usual (FLAG also queues it for review);
- REJECT or SHADOW_BAN: BLOCK: acked and kept with its author only, like a shadow-banned comment
  (never in the log, history, snapshots or anyone else's ticks); a strike, as any offence;
- no verdict within the bound (classifier down, breaker open, late, failing, or none configured):
  the stream's fail mode decides: ``open`` RELEASEs it (and the retro review still runs, as
  without hold mode), ``closed`` HOLDS IT BACK: acked and kept with its author only, who is told
  with a ``notice`` of code ``held`` naming the comment id (nothing names a BLOCK).

Moderators and the broadcaster are never held, nor are comments of a shadow-banned user (they
reach nobody anyway). Within a stream, comments leave the hold in the order they were admitted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from livechat.config import ModerationConfig
from livechat.ports.meta import RoomModes
from livechat.services.moderation.pipeline import Decision, ModerationPipeline, Verdict

#: The ``notice`` code that tells an author their comment was held back (fail-closed).
HELD_NOTICE: Final = "held"
#: The bound when neither the stream nor the event names one (``chat.moderation.hold_ms``'s default).
HOLD_DEFAULT_MS: Final = 300


class HoldMode(StrEnum):
    OFF = "off"
    # Held; without a verdict in time the comment is released.
    OPEN = "open"
    # Held; without a verdict in time the comment is held back (its author only).
    CLOSED = "closed"


class Outcome(StrEnum):
    RELEASE = "release"
    BLOCK = "block"
    HOLD_BACK = "hold_back"


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """One stream's setting: the mode and the longest wait for a verdict."""

    mode: HoldMode = HoldMode.OFF
    bound_ms: int = HOLD_DEFAULT_MS

    @property
    def held(self) -> bool:
        return self.mode is not HoldMode.OFF


def default_policy(config: ModerationConfig) -> HoldPolicy:
    """The edge's setting for streams that set none (``chat.moderation.hold``, ``hold_ms``)."""
    return HoldPolicy(HoldMode(config.hold), config.hold_ms)


def policy_of(modes: RoomModes) -> HoldPolicy | None:
    """The stream's stored setting (``bound_ms`` 0: the edge's); None when it never set one."""
    if modes.hold is None:
        return None
    return HoldPolicy(HoldMode(modes.hold), modes.hold_ms)


def in_force(stream: HoldPolicy | None, default: HoldPolicy) -> HoldPolicy:
    """The setting a stream's comments meet: its own (the edge's bound when it names none), else
    the edge's default."""
    if stream is None:
        return default
    return stream if stream.bound_ms else HoldPolicy(stream.mode, default.bound_ms)


def policy_from_event(event: dict[str, Any], current: HoldPolicy | None) -> HoldPolicy | None:
    """The policy a ``modes`` event sets: its ``hold`` (mode) and ``hold_ms`` fields; an event
    without ``hold`` leaves ``current`` (None: the edge's default) as it is."""
    mode = event.get("hold")
    if not isinstance(mode, str):
        return current
    bound = event.get("hold_ms")
    default = current.bound_ms if current is not None else HOLD_DEFAULT_MS
    return HoldPolicy(HoldMode(mode), int(bound) if isinstance(bound, int) else default)


@dataclass(frozen=True, slots=True)
class Decided:
    outcome: Outcome
    # The classifier's verdict; None when there was none in time.
    verdict: Verdict | None


class HoldDesk:
    """Asks the classifier for held comments, at most ``concurrency`` at once (the retro
    ReviewQueue has its own workers), and maps the answer to an Outcome."""

    __slots__ = ("_calls", "_pipeline", "counters")

    def __init__(self, pipeline: ModerationPipeline, concurrency: int) -> None:
        self._pipeline = pipeline
        self._calls = asyncio.Semaphore(max(concurrency, 1))
        self.counters = {"held": 0, "released": 0, "blocked": 0, "held_back": 0, "no_verdict": 0}

    async def decide(self, text: str, user_id: str, stream: str, strikes: int, policy: HoldPolicy) -> Decided:
        """Never raises; returns within about ``policy.bound_ms`` (a wait for a free call slot
        counts toward it)."""
        self.counters["held"] += 1
        verdict: Verdict | None = None
        try:
            async with asyncio.timeout(policy.bound_ms / 1000.0):
                async with self._calls:
                    # The pipeline's own timeout is the bound; the outer one also covers the slot.
                    verdict = await self._pipeline.judge(
                        text, user_id, stream, strikes, policy.bound_ms / 1000.0
                    )
        except TimeoutError:
            verdict = None
        if verdict is None:
            self.counters["no_verdict"] += 1
            outcome = Outcome.RELEASE if policy.mode is HoldMode.OPEN else Outcome.HOLD_BACK
        elif verdict.decision in (Decision.REJECT, Decision.SHADOW_BAN):
            outcome = Outcome.BLOCK
        else:
            outcome = Outcome.RELEASE
        self.counters[{"release": "released", "block": "blocked", "hold_back": "held_back"}[outcome]] += 1
        return Decided(outcome, verdict)
