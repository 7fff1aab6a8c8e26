"""The node id this edge puts into comment ids, leased from the shared Registry.

Comment ids embed a node id (``livechat.ids``); two live edges minting with one node id could
issue the same id in the same millisecond. With a shared registry the edge leases the smallest
free id (``Registry.lease_node``) and renews it every third of its TTL. A renewal that finds the
lease lost (Redis flushed, the edge was paused past the TTL) leases again and switches the id
generator before another id is minted; while the registry cannot be reached the edge keeps its id
(no other edge can take it before the TTL lapses, and the renewal loop runs ``TTL / 3`` apart, so
there are two more tries first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from livechat.ids import MAX_NODE, CommentIdGenerator
from livechat.ports.errors import BackendError
from livechat.ports.registry import Registry

log = logging.getLogger(__name__)

#: A lease lapses this long after its last renewal (an edge that died frees its id then).
LEASE_TTL_S: Final = 30.0


class NodeLease:
    def __init__(self, registry: Registry, edge_id: str, ttl_s: float = LEASE_TTL_S) -> None:
        self._registry = registry
        self._edge_id = edge_id
        self._ttl = ttl_s
        self._ids: CommentIdGenerator | None = None
        self._task: asyncio.Task[None] | None = None
        self.node = -1
        # Renewals that found the lease gone (each followed by a new lease).
        self.lost = 0

    async def acquire(self) -> int:
        """Lease a node id (BackendError when the registry cannot give one)."""
        self.node = await self._registry.lease_node(self._edge_id, MAX_NODE + 1, self._ttl)
        return self.node

    def keep(self, ids: CommentIdGenerator) -> None:
        """Renew in the background; a lost lease switches ``ids`` to the newly leased node."""
        self._ids = ids
        self._task = asyncio.create_task(self._renew(), name="node-lease")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                if await self._registry.renew_node(self._edge_id, self.node, self._ttl):
                    continue
                self.lost += 1
                await self.acquire()
                if self._ids is not None:
                    self._ids.set_node(self.node)
                log.warning("node lease was lost; comment ids now use node %d", self.node)
            except BackendError as exc:
                log.warning("node lease not renewed this round: %s", exc)

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.node >= 0:
            with contextlib.suppress(BackendError):
                await self._registry.release_node(self._edge_id, self.node)
