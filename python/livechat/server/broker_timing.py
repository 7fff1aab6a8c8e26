"""Broker latency, measured where the server meets the broker.

``MeasuredBroker`` wraps the edge's Broker and times every ``publish`` from call to return: for
Redis that is the SPUBLISH round trip (command written, reply read), which is what every comment
leaving this edge waits for; for the in-process broker it is the cost of the call. Publishes only
happen while comments flow, so a probe also runs every ``interval`` seconds: one
``publish_control`` to an edge id nobody holds (the service answers, no edge receives it). Its
last round trip and whether it succeeded are the ``broker_up`` signal of ``/metrics``.

Why not a pub -> sub round trip: a broker never echoes an edge's own publications back to it
(``livechat.ports.broker``), so the reply of the publish is the closest honest measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from livechat.histogram import LatencyHistogram
from livechat.ports.broker import Broker, BrokerHandler

log = logging.getLogger(__name__)

#: Appended to this edge's id to address the probe to an edge that cannot exist.
PROBE_SUFFIX = "#probe"
#: A probe unanswered this long counts as failed (a black-holed connection never errors by itself).
PROBE_TIMEOUT_S = 2.0


class MeasuredBroker:
    """A ``Broker`` (same guarantees: it only delegates) that records publish and probe latency."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.publish_latency = LatencyHistogram()
        self.publish_errors = 0
        # Events handed to the broker; a batch of them shares one timed round trip.
        self.published_events = 0
        self.probe_latency = LatencyHistogram()
        self.probe_errors = 0
        # Seconds of the last probe, and whether it succeeded (None before the first).
        self.last_probe_s = 0.0
        self.up: bool | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def edge_id(self) -> str:
        return self.inner.edge_id

    def set_handler(self, handler: BrokerHandler) -> None:
        self.inner.set_handler(handler)

    async def subscribe(self, stream: str) -> bool:
        return await self.inner.subscribe(stream)

    async def unsubscribe(self, stream: str) -> bool:
        return await self.inner.unsubscribe(stream)

    def subscription_count(self, stream: str) -> int:
        return self.inner.subscription_count(stream)

    async def publish(self, stream: str, payload: bytes) -> None:
        start = time.perf_counter()
        try:
            await self.inner.publish(stream, payload)
        except Exception:
            self.publish_errors += 1
            raise
        self.published_events += 1
        self.publish_latency.observe(time.perf_counter() - start)

    async def publish_many(self, events: Sequence[tuple[str, bytes]]) -> None:
        """Timed as one publish: the batch shares one write and one round trip."""
        start = time.perf_counter()
        try:
            await self.inner.publish_many(events)
        except Exception:
            self.publish_errors += 1
            raise
        self.published_events += len(events)
        self.publish_latency.observe(time.perf_counter() - start)

    async def publish_control(self, payload: bytes, edge_id: str | None = None) -> None:
        await self.inner.publish_control(payload, edge_id)

    async def probe(self) -> bool:
        """One round trip; records it and returns whether the broker answered."""
        start = time.perf_counter()
        try:
            await asyncio.wait_for(
                self.inner.publish_control(b"", self.inner.edge_id + PROBE_SUFFIX), PROBE_TIMEOUT_S
            )
        except Exception as exc:
            self.probe_errors += 1
            if self.up is not False:
                log.warning("broker probe failed: %s", exc, extra={"event": "broker_down"})
            self.up = False
            return False
        self.last_probe_s = time.perf_counter() - start
        self.probe_latency.observe(self.last_probe_s)
        if self.up is False:
            log.info("broker answers again", extra={"event": "broker_up"})
        self.up = True
        return True

    def start_probe(self, interval_s: float) -> None:
        if self._probe is None:
            self._probe = asyncio.create_task(self._probe_loop(interval_s), name="livechat-broker-probe")

    async def _probe_loop(self, interval_s: float) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(interval_s)

    async def stop_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None

    async def aclose(self) -> None:
        await self.stop_probe()
        await self.inner.aclose()
