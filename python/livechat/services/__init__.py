"""The chat domain of one edge: pure asyncio services over the ports, no sockets.

Entry point: ``ChatService`` (``livechat.services.chat``), fed by the edge's drained events and
writing through an ``Outbox`` (the edge itself satisfies it). The parts, one job each:

- ``comments``: post admission and the batched durable write (ack = stored);
- ``actions``: moderator/broadcaster actions, reports, classifier retro-deletes;
- ``moderation``: rules, classifier callout with circuit breaker, reputation, review queue;
- ``limits``, ``idempotency``, ``sampling``: per-user/per-stream limits, reposts, adaptive tiers;
- ``rooms``, ``recent``, ``sessions``, ``engagement``: per-stream and per-connection state;
- ``fanout``: local tick + other edges through the Broker.
"""

from livechat.services.chat import ChatService, RemoteEvents
from livechat.services.clock import Clock, ManualClock, SystemClock
from livechat.services.outbox import Outbox

__all__ = ["ChatService", "Clock", "ManualClock", "Outbox", "RemoteEvents", "SystemClock"]
