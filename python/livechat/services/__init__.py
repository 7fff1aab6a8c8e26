"""The chat domain of one edge: pure asyncio services over the ports, no sockets.

Entry point: ``ChatService`` (``livechat.services.chat``), fed by the edge's drained events and
writing through an ``Outbox`` (the edge itself satisfies it). The parts, one job each:

- ``comments``: post admission and the batched durable write (ack = stored);
- ``membership``: join, leave, snapshots, reconnect recovery, history pages;
- ``reactions``: reactions and likes;
- ``actions``: moderator/broadcaster actions, reports, classifier retro-deletes;
- ``room`` and ``room_events``: ``Room.apply``, the one rule by which any room event changes a
  room, and what an event does on this edge (counts, priority lane, notices), wherever it came from;
- ``remote``: the Broker handler for other edges' events;
- ``housekeeping``: tiers and engagement totals into state slots, expiry;
- ``moderation``: rules, classifier callout with circuit breaker, reputation, review queue;
- ``limits``, ``idempotency``, ``sampling``: per-user/per-stream limits, reposts, adaptive tiers;
- ``rooms``, ``recent``, ``sessions``, ``engagement``: the open rooms, per-stream and per-connection state;
- ``fanout``: local tick + other edges through the Broker.
"""

from livechat.services.chat import ChatService
from livechat.services.clock import Clock, ManualClock, SystemClock
from livechat.services.outbox import Outbox
from livechat.services.remote import RemoteEvents

__all__ = ["ChatService", "Clock", "ManualClock", "Outbox", "RemoteEvents", "SystemClock"]
