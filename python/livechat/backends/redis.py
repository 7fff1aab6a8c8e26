"""Redis 7 backends (one server or a Redis Cluster) on redis-py with hiredis.

``RedisBroker`` (sharded pub/sub between edges) lives in ``redis_broker``, ``RedisRegistry`` (shared
state) in ``redis_registry``, URLs, timeouts and command batching in ``redis_connect``. This module
is the name ``livechat.backends`` imports for the ``redis://`` and ``redis+cluster://`` schemes.
"""

from __future__ import annotations

from livechat.backends.redis_broker import RedisBroker
from livechat.backends.redis_connect import DEFAULT_PREFIX
from livechat.backends.redis_registry import RedisRegistry

__all__ = ["DEFAULT_PREFIX", "RedisBroker", "RedisRegistry"]
