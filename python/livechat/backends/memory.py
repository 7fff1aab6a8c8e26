"""In-process Broker and Registry: the embedded default (no services).

Limits, by design: everything lives in this process's memory and on one event loop. Several
``MemoryBroker``/``MemoryRegistry`` instances opened on the same bus name (``memory://name``) behave
like several edges sharing one Redis, which is how the contract suite checks cross-edge behaviour
without a service. A multi-process deployment needs the Redis backends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from livechat.backends.hyperloglog import HyperLogLog
from livechat.ports.broker import BrokerHandler
from livechat.ports.errors import BackendError, ClosedError
from livechat.ports.registry import ConnectionRef

log = logging.getLogger("livechat.backends.memory")


class MemoryBus:
    """The shared "network" of one bus name: which edge is subscribed to which stream."""

    __slots__ = ("edges", "name", "subscribers")

    def __init__(self, name: str) -> None:
        self.name = name
        self.edges: dict[str, MemoryBroker] = {}
        self.subscribers: dict[str, set[MemoryBroker]] = {}


_buses: dict[str, MemoryBus] = {}


def memory_bus(name: str) -> MemoryBus:
    bus = _buses.get(name)
    if bus is None:
        bus = _buses[name] = MemoryBus(name)
    return bus


class MemoryBroker:
    """Broker between edges of one process. Delivery goes through ``loop.call_soon``, so a handler
    never runs inside the publisher's call stack and per-stream order is the loop's FIFO order."""

    def __init__(self, bus: MemoryBus, edge_id: str) -> None:
        if edge_id in bus.edges:
            raise ValueError(f"edge id {edge_id!r} is already on memory bus {bus.name!r}")
        self._bus = bus
        self._edge_id = edge_id
        self._handler: BrokerHandler | None = None
        self._refs: dict[str, int] = {}
        self._closed = False
        bus.edges[edge_id] = self

    @property
    def edge_id(self) -> str:
        return self._edge_id

    def set_handler(self, handler: BrokerHandler) -> None:
        if self._handler is not None:
            raise RuntimeError("broker handler is already set")
        self._handler = handler

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("broker is closed")

    async def subscribe(self, stream: str) -> bool:
        self._check_open()
        if self._handler is None:
            raise RuntimeError("set_handler must be called before subscribe")
        refs = self._refs.get(stream, 0)
        self._refs[stream] = refs + 1
        if refs:
            return False
        self._bus.subscribers.setdefault(stream, set()).add(self)
        return True

    async def unsubscribe(self, stream: str) -> bool:
        self._check_open()
        refs = self._refs.get(stream, 0)
        if refs > 1:
            self._refs[stream] = refs - 1
            return False
        if refs == 0:
            return False
        del self._refs[stream]
        self._leave(stream)
        return True

    def _leave(self, stream: str) -> None:
        subs = self._bus.subscribers.get(stream)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self._bus.subscribers[stream]

    def subscription_count(self, stream: str) -> int:
        return self._refs.get(stream, 0)

    async def publish(self, stream: str, payload: bytes) -> None:
        self._check_open()
        self._publish_now(stream, payload)

    async def publish_many(self, events: Sequence[tuple[str, bytes]]) -> None:
        self._check_open()
        for stream, payload in events:
            self._publish_now(stream, payload)

    def _publish_now(self, stream: str, payload: bytes) -> None:
        subs = self._bus.subscribers.get(stream)
        if not subs:
            return
        loop = asyncio.get_running_loop()
        for edge in subs:
            if edge is not self:
                loop.call_soon(edge._deliver, stream, payload)

    async def publish_control(self, payload: bytes, edge_id: str | None = None) -> None:
        self._check_open()
        loop = asyncio.get_running_loop()
        if edge_id is not None:
            target = self._bus.edges.get(edge_id)
            if target is not None and target is not self:
                loop.call_soon(target._deliver_control, payload)
            return
        for edge in self._bus.edges.values():
            if edge is not self:
                loop.call_soon(edge._deliver_control, payload)

    def _deliver(self, stream: str, payload: bytes) -> None:
        # Checked at delivery, not at publish: nothing arrives after unsubscribe returned.
        if stream not in self._refs or self._handler is None:
            return
        try:
            self._handler.on_message(stream, payload)
        except Exception:
            log.exception("broker handler failed on stream %r", stream)

    def _deliver_control(self, payload: bytes) -> None:
        if self._closed or self._handler is None:
            return
        try:
            self._handler.on_control(payload)
        except Exception:
            log.exception("broker handler failed on a control message")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in self._refs:
            self._leave(stream)
        self._refs.clear()
        self._bus.edges.pop(self._edge_id, None)


class RegistryState:
    """Data shared by every ``MemoryRegistry`` on one bus name. Times are ``time.monotonic()``."""

    # Drop emptied rate keys and expired counters every this many writes, so keys that are never
    # touched again do not pile up.
    SWEEP_EVERY = 8192
    # A stream's unique-viewer counter (a 16 KiB HyperLogLog) is dropped once nobody has added to
    # or read it for this long: an edge reads every open stream's count each engagement flush
    # (0.25 s by default), so only streams no edge has open expire, with their names (issue 13:
    # a client joining 50 000 stream names kept every counter). Checked at most every
    # VIEWERS_SWEEP_S, on the registry's calls.
    VIEWERS_IDLE_S = 60.0
    VIEWERS_SWEEP_S = 5.0

    def __init__(self) -> None:
        self.connections: dict[str, tuple[dict[ConnectionRef, None], float]] = {}
        self.rates: dict[str, tuple[deque[float], float]] = {}
        self.recent: dict[str, deque[tuple[int, bytes]]] = {}
        self.viewers: dict[str, HyperLogLog] = {}
        # stream -> when its counter was last added to or read
        self.viewers_used: dict[str, float] = {}
        self.viewers_swept = time.monotonic()
        self.counters: dict[str, tuple[int, float | None]] = {}
        self.hcounters: dict[str, dict[str, int]] = {}
        self.claims: dict[str, tuple[bytes, float]] = {}
        # key -> edge -> (value, deadline)
        self.contributions: dict[str, dict[str, tuple[int, float]]] = {}
        # node id -> (edge, deadline)
        self.node_leases: dict[int, tuple[str, float]] = {}
        self.writes = 0

    def note_write(self, now: float) -> None:
        self.writes += 1
        if self.writes % self.SWEEP_EVERY == 0:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        for key in [k for k, (times, window) in self.rates.items() if not times or times[-1] <= now - window]:
            del self.rates[key]
        for key in [k for k, (_, exp) in self.counters.items() if exp is not None and exp <= now]:
            del self.counters[key]
        for key in [k for k, (_, exp) in self.connections.items() if exp <= now]:
            del self.connections[key]
        for key in [k for k, (_, exp) in self.claims.items() if exp <= now]:
            del self.claims[key]
        for key, edges in list(self.contributions.items()):
            self.live_contributions(key, edges, now)
        self.expire_viewers(now)

    def use_viewers(self, stream: str, now: float) -> HyperLogLog | None:
        """The stream's counter (None: none yet), marked used; idle ones expire on the way."""
        if now - self.viewers_swept >= self.VIEWERS_SWEEP_S:
            self.expire_viewers(now)
        hll = self.viewers.get(stream)
        if hll is not None:
            self.viewers_used[stream] = now
        return hll

    def expire_viewers(self, now: float) -> None:
        self.viewers_swept = now
        for stream in [s for s, used in self.viewers_used.items() if used <= now - self.VIEWERS_IDLE_S]:
            del self.viewers_used[stream]
            del self.viewers[stream]

    def live_contributions(self, key: str, edges: dict[str, tuple[int, float]], now: float) -> int:
        """Drop lapsed contributions under ``key``; the sum of the rest."""
        for edge in [e for e, (_, deadline) in edges.items() if deadline <= now]:
            del edges[edge]
        if not edges:
            self.contributions.pop(key, None)
        return sum(value for value, _ in edges.values())

    def live_leases(self, now: float) -> dict[int, tuple[str, float]]:
        for node in [n for n, (_, deadline) in self.node_leases.items() if deadline <= now]:
            del self.node_leases[node]
        return self.node_leases


_registry_states: dict[str, RegistryState] = {}


def registry_state(name: str) -> RegistryState:
    state = _registry_states.get(name)
    if state is None:
        state = _registry_states[name] = RegistryState()
    return state


class MemoryRegistry:
    """Registry in process memory; every method completes without awaiting, so each is atomic."""

    def __init__(self, state: RegistryState) -> None:
        self._s = state
        self._closed = False

    @property
    def state(self) -> RegistryState:
        """The shared state behind this registry (tests drive its expiry with ``sweep(now)``)."""
        return self._s

    def _now(self) -> float:
        if self._closed:
            raise ClosedError("registry is closed")
        return time.monotonic()

    async def add_connection(self, user_id: str, ref: ConnectionRef, ttl_s: float) -> None:
        now = self._now()
        entry = self._s.connections.get(user_id)
        refs = entry[0] if entry is not None and entry[1] > now else {}
        refs[ref] = None
        self._s.connections[user_id] = (refs, now + ttl_s)
        self._s.note_write(now)

    async def remove_connection(self, user_id: str, ref: ConnectionRef) -> bool:
        now = self._now()
        entry = self._s.connections.get(user_id)
        if entry is None or entry[1] <= now or ref not in entry[0]:
            return False
        del entry[0][ref]
        if not entry[0]:
            del self._s.connections[user_id]
        return True

    async def connections_of(self, user_id: str) -> list[ConnectionRef]:
        now = self._now()
        entry = self._s.connections.get(user_id)
        if entry is None or entry[1] <= now:
            return []
        return sorted(entry[0], key=lambda r: (r.edge_id, r.conn_id))

    async def allow(self, key: str, limit: int, window_s: float) -> bool:
        now = self._now()
        entry = self._s.rates.get(key)
        if entry is None:
            times: deque[float] = deque()
        else:
            times = entry[0]
            cutoff = now - window_s
            while times and times[0] <= cutoff:
                times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        self._s.rates[key] = (times, window_s)
        self._s.note_write(now)
        return True

    async def recent_push(self, stream: str, comment_id: int, payload: bytes, max_len: int) -> None:
        self._now()
        entries = self._s.recent.get(stream)
        if entries is None:
            entries = self._s.recent[stream] = deque()
        entries.appendleft((comment_id, payload))
        while len(entries) > max_len:
            entries.pop()

    async def recent_get(self, stream: str, limit: int) -> list[tuple[int, bytes]]:
        self._now()
        entries = self._s.recent.get(stream)
        if not entries:
            return []
        return [entries[i] for i in range(min(limit, len(entries)))]

    async def recent_remove(self, stream: str, comment_ids: Sequence[int]) -> int:
        self._now()
        entries = self._s.recent.get(stream)
        if not entries:
            return 0
        drop = set(comment_ids)
        kept = deque(e for e in entries if e[0] not in drop)
        removed = len(entries) - len(kept)
        self._s.recent[stream] = kept
        return removed

    async def viewers_add(self, stream: str, viewer_ids: Sequence[str]) -> bool:
        now = self._now()
        hll = self._s.use_viewers(stream, now)
        if hll is None:
            hll = self._s.viewers[stream] = HyperLogLog()
            self._s.viewers_used[stream] = now
        changed = False
        for viewer in viewer_ids:
            changed |= hll.add(viewer)
        return changed

    async def viewers_count(self, stream: str) -> int:
        hll = self._s.use_viewers(stream, self._now())
        return 0 if hll is None else hll.count()

    async def incr(self, key: str, delta: int = 1, ttl_s: float | None = None) -> int:
        now = self._now()
        entry = self._s.counters.get(key)
        if entry is None or (entry[1] is not None and entry[1] <= now):
            value, expires = delta, (None if ttl_s is None else now + ttl_s)
        else:
            value, expires = entry[0] + delta, entry[1]
        self._s.counters[key] = (value, expires)
        self._s.note_write(now)
        return value

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        now = self._now()
        values = []
        for key in keys:
            entry = self._s.counters.get(key)
            values.append(0 if entry is None or (entry[1] is not None and entry[1] <= now) else entry[0])
        return values

    async def hincr_many(self, key: str, deltas: Mapping[str, int]) -> dict[str, int]:
        self._now()
        fields = self._s.hcounters.get(key)
        if fields is None:
            if not deltas:
                return {}
            fields = self._s.hcounters[key] = {}
        for field, delta in deltas.items():
            fields[field] = fields.get(field, 0) + delta
        return dict(fields)

    async def claim(self, key: str, value: bytes, ttl_s: float) -> bytes | None:
        now = self._now()
        entry = self._s.claims.get(key)
        if entry is not None and entry[1] > now:
            return entry[0]
        self._s.claims[key] = (bytes(value), now + ttl_s)
        self._s.note_write(now)
        return None

    async def set_claim(self, key: str, value: bytes, ttl_s: float) -> None:
        now = self._now()
        self._s.claims[key] = (bytes(value), now + ttl_s)
        self._s.note_write(now)

    async def release_claim(self, key: str) -> None:
        self._now()
        self._s.claims.pop(key, None)

    async def set_contribution(self, key: str, edge_id: str, value: int, ttl_s: float) -> None:
        now = self._now()
        self._s.contributions.setdefault(key, {})[edge_id] = (int(value), now + ttl_s)
        self._s.note_write(now)

    async def sum_contributions(self, key: str) -> int:
        now = self._now()
        edges = self._s.contributions.get(key)
        return 0 if edges is None else self._s.live_contributions(key, edges, now)

    async def lease_node(self, edge_id: str, max_nodes: int, ttl_s: float) -> int:
        now = self._now()
        leases = self._s.live_leases(now)
        held = [n for n, (edge, _) in leases.items() if edge == edge_id and n < max_nodes]
        if held:
            node = min(held)
        else:
            node = next((n for n in range(max_nodes) if n not in leases), -1)
            if node < 0:
                raise BackendError(f"all {max_nodes} node ids are leased by live edges")
        leases[node] = (edge_id, now + ttl_s)
        return node

    async def renew_node(self, edge_id: str, node: int, ttl_s: float) -> bool:
        now = self._now()
        leases = self._s.live_leases(now)
        lease = leases.get(node)
        if lease is None or lease[0] != edge_id:
            return False
        leases[node] = (edge_id, now + ttl_s)
        return True

    async def release_node(self, edge_id: str, node: int) -> None:
        now = self._now()
        leases = self._s.live_leases(now)
        lease = leases.get(node)
        if lease is not None and lease[0] == edge_id:
            del leases[node]

    async def aclose(self) -> None:
        self._closed = True


if TYPE_CHECKING:
    from livechat.ports.broker import Broker
    from livechat.ports.registry import Registry

    def _check_broker(b: MemoryBroker) -> Broker:
        return b

    def _check_registry(r: MemoryRegistry) -> Registry:
        return r
