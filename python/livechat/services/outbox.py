"""What the services write to: the local edge's connections and stream ticks.

``livechat._edge.Edge`` satisfies ``Outbox`` as it is; the services never import the compiled
module, so they run (and are tested) without it. Fan-out to other edges goes through the Broker
port, separately, so events arriving from other edges can be applied locally without echo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Outbox(Protocol):
    """The subset of ``livechat._edge.Edge`` the services use.

    Guarantees relied on (from the edge): every method returns at once without blocking on I/O;
    events published to one stream reach each subscriber in publish order; a method given a
    connection that is gone returns False and does nothing; ``send`` uses the priority lane;
    ``send_batch`` is ``send`` of each pair in one call and keeps their order per connection.
    """

    def send(self, conn_id: int, data: bytes, binary: bool = True) -> bool: ...

    def send_many(self, conn_ids: Sequence[int], data: bytes, binary: bool = True) -> int: ...

    def send_batch(self, items: Sequence[tuple[int, bytes]], binary: bool = True) -> int: ...

    def publish(self, stream: str, event: bytes, priority: bool = False) -> None: ...

    def set_state(self, stream: str, key: str, value: bytes) -> None: ...

    def subscribe(self, conn_id: int, stream: str) -> bool: ...

    def unsubscribe(self, conn_id: int, stream: str) -> bool: ...

    def close(self, conn_id: int, code: int = 1000, reason: str = "") -> bool: ...
