"""Backends by URL scheme.

| port          | embedded                 | cluster                                              |
|---------------|--------------------------|------------------------------------------------------|
| Broker        | ``memory://[bus]``       | ``redis://host:port[/db]``, ``redis+cluster://host:port`` |
| Registry      | ``memory://[bus]``       | ``redis://…``, ``redis+cluster://…``                 |
| CommentLog    | ``sqlite:///path.db``    | ``kafka://host:port[,host:port]/topic``              |
| HistoryStore  | ``sqlite:///path.db``    | ``cassandra://host:port[,host:port]/keyspace``       |
| MetaStore     | ``sqlite:///path.db``    | ``postgresql://user@host:port/database``             |

A driver is imported only when its scheme is asked for, and a missing one is a ConfigurationError
naming the extra to install (``pip install 'livechat[cluster]'``).
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from livechat.config import DEFAULTS
from livechat.ports.errors import ConfigurationError

if TYPE_CHECKING:
    from types import ModuleType

    from livechat.config import BackendConfig
    from livechat.ports.broker import Broker
    from livechat.ports.comment_log import CommentLog
    from livechat.ports.history import HistoryStore
    from livechat.ports.log_follower import LogFollower
    from livechat.ports.meta import MetaStore
    from livechat.ports.registry import Registry

__all__ = [
    "Backends",
    "open_backends",
    "open_broker",
    "open_comment_log",
    "open_history",
    "open_log_follower",
    "open_meta",
    "open_registry",
]


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigurationError(f"backend URL needs a scheme (memory://, sqlite://, redis://): {url!r}")
    return scheme.lower()


def _memory_name(url: str) -> str:
    return url.partition("://")[2].strip("/") or "default"


REDIS_SCHEMES = ("redis", "redis+cluster")


def _driver_module(name: str, scheme: str) -> ModuleType:
    """``livechat.backends.<name>``; a missing driver is a ConfigurationError naming the extra."""
    try:
        return importlib.import_module(f"livechat.backends.{name}")
    except ImportError as exc:
        raise ConfigurationError(
            f"{scheme}:// backends need their driver ({exc.name}): pip install 'livechat[cluster]'"
        ) from exc


def _redis_module() -> ModuleType:
    return _driver_module("redis", "redis")


def _unsupported(port: str, url: str, supported: str) -> ConfigurationError:
    return ConfigurationError(f"{port} cannot use {url!r}; supported: {supported}")


async def open_broker(url: str, *, edge_id: str, prefix: str = DEFAULTS.backends.redis_prefix) -> Broker:
    """A connected broker for this edge; the caller registers its handler with ``set_handler``."""
    scheme = _scheme(url)
    if scheme == "memory":
        from livechat.backends.memory import MemoryBroker, memory_bus

        return MemoryBroker(memory_bus(_memory_name(url)), edge_id)
    if scheme in REDIS_SCHEMES:
        broker: Broker = await _redis_module().RedisBroker.open(url, edge_id, prefix)
        return broker
    raise _unsupported("broker", url, "memory://, redis://, redis+cluster://")


async def open_registry(url: str, *, prefix: str = DEFAULTS.backends.redis_prefix) -> Registry:
    scheme = _scheme(url)
    if scheme == "memory":
        from livechat.backends.memory import MemoryRegistry, registry_state

        return MemoryRegistry(registry_state(_memory_name(url)))
    if scheme in REDIS_SCHEMES:
        registry: Registry = await _redis_module().RedisRegistry.open(url, prefix)
        return registry
    raise _unsupported("registry", url, "memory://, redis://, redis+cluster://")


async def open_comment_log(
    url: str,
    *,
    dedupe_window_s: float = DEFAULTS.backends.log_dedupe_window_s,
    retention_s: float = DEFAULTS.backends.log_retention_s,
) -> CommentLog:
    scheme = _scheme(url)
    if scheme == "sqlite":
        from livechat.backends.sqlite_log import SqliteCommentLog

        return await SqliteCommentLog.open(url, dedupe_window_s, retention_s)
    if scheme == "kafka":
        log: CommentLog = await _driver_module("kafka_log", scheme).KafkaCommentLog.open(
            url, dedupe_window_s, retention_s
        )
        return log
    raise _unsupported("comment log", url, "sqlite://, kafka://")


async def open_log_follower(
    url: str, *, exclude_origin: str | None = None, retention_s: float = 7 * 86400.0
) -> LogFollower:
    """A follower of the comment log at ``url`` (the same URL as ``open_comment_log``); the caller
    registers its handler with ``set_handler``. Records appended with ``origin=exclude_origin``
    are skipped (an edge applied its own already). ``retention_s`` is used only if the follower
    has to create the Kafka topic."""
    scheme = _scheme(url)
    if scheme == "sqlite":
        from livechat.backends.sqlite_log import SqliteLogFollower

        return await SqliteLogFollower.open(url, exclude_origin=exclude_origin)
    if scheme == "kafka":
        follower: LogFollower = await _driver_module("kafka_follower", scheme).KafkaLogFollower.open(
            url, exclude_origin=exclude_origin, retention_s=retention_s
        )
        return follower
    raise _unsupported("log follower", url, "sqlite://, kafka://")


async def open_history(
    url: str,
    *,
    tombstone_ttl_s: float = DEFAULTS.backends.tombstone_ttl_s,
    retention_s: float = DEFAULTS.backends.history_retention_s,
) -> HistoryStore:
    scheme = _scheme(url)
    if scheme == "sqlite":
        from livechat.backends.sqlite_history import SqliteHistoryStore

        return await SqliteHistoryStore.open(url, tombstone_ttl_s, retention_s)
    if scheme == "cassandra":
        history: HistoryStore = await _driver_module("cassandra_history", scheme).CassandraHistoryStore.open(
            url, tombstone_ttl_s, retention_s
        )
        return history
    raise _unsupported("history store", url, "sqlite://, cassandra://")


async def open_meta(url: str) -> MetaStore:
    scheme = _scheme(url)
    if scheme == "sqlite":
        from livechat.backends.sqlite_meta import SqliteMetaStore

        return await SqliteMetaStore.open(url)
    if scheme in ("postgresql", "postgres"):
        meta: MetaStore = await _driver_module("postgres_meta", scheme).PostgresMetaStore.open(url)
        return meta
    raise _unsupported("meta store", url, "sqlite://, postgresql://")


@dataclass(frozen=True, slots=True)
class Backends:
    """Every port an edge uses, opened together from one ``BackendConfig``."""

    broker: Broker
    registry: Registry
    log: CommentLog
    history: HistoryStore
    meta: MetaStore

    async def aclose(self) -> None:
        """Close every backend (broker first, so no inbound event lands on a closed store)."""
        for backend in (self.broker, self.registry, self.log, self.history, self.meta):
            await backend.aclose()


async def open_backends(config: BackendConfig, edge_id: str) -> Backends:
    """Open every port from ``config``; on a failure, whatever was opened is closed again."""
    default = config.sqlite_url()
    async with contextlib.AsyncExitStack() as stack:
        broker = await open_broker(config.broker, edge_id=edge_id, prefix=config.redis_prefix)
        stack.push_async_callback(broker.aclose)
        registry = await open_registry(config.registry, prefix=config.redis_prefix)
        stack.push_async_callback(registry.aclose)
        log = await open_comment_log(
            config.log or default,
            dedupe_window_s=config.log_dedupe_window_s,
            retention_s=config.log_retention_s,
        )
        stack.push_async_callback(log.aclose)
        history = await open_history(
            config.history or default,
            tombstone_ttl_s=config.tombstone_ttl_s,
            retention_s=config.history_retention_s,
        )
        stack.push_async_callback(history.aclose)
        meta = await open_meta(config.meta or default)
        stack.pop_all()
        return Backends(broker, registry, log, history, meta)
    raise AssertionError("unreachable")  # AsyncExitStack may swallow exceptions as far as mypy knows
