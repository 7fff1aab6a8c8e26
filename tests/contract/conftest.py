"""Fixtures for the contract suites: one factory per port, parametrized over every backend.

Redis is a real server started by ``scripts/redis.sh`` on a free port in 16300-16399 for the whole
session; when it cannot start, every Redis-parametrized test FAILS (it is not skipped). Each test
gets its own key/channel prefix (Redis) or bus name (memory), so tests never see each other's data.
"""

from __future__ import annotations

import importlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from livechat.backends import open_broker, open_comment_log, open_history, open_meta, open_registry
from livechat.ports import Broker, CommentLog, HistoryStore, MetaStore, Registry
from redis_service import RedisServer, free_redis_ports, redis_url


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Run every contract test on uvloop, the loop livechat serves on (its transports differ)."""
    return {"uvloop": uvloop.new_event_loop}


BROKER_BACKENDS = ["memory", "redis", "redis-cluster"]
REGISTRY_BACKENDS = ["memory", "redis", "redis-cluster"]
# Kafka / Cassandra / PostgreSQL join these lists when their backends land.
LOG_BACKENDS = ["sqlite", "kafka"]
HISTORY_BACKENDS = ["sqlite", "cassandra"]
META_BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session; FAILS (never skips) the tests that need it if it cannot start."""
    candidates = free_redis_ports()
    random.shuffle(candidates)
    errors = []
    for port in candidates[:5]:  # another process may grab a port between the check and the start
        server = RedisServer(port, tmp_path_factory.mktemp(f"redis-{port}"))
        try:
            server.start()
        except RuntimeError as exc:
            errors.append(str(exc))
            continue
        try:
            yield server
        finally:
            server.stop()
        return
    reasons = "; ".join(errors) or "no free port in 16300-16399"
    pytest.fail(f"could not start Redis with scripts/redis.sh: {reasons}")


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


# -- broker ------------------------------------------------------------------------------------

BrokerOpener = Callable[[str], Awaitable[Broker]]


@pytest.fixture(params=BROKER_BACKENDS)
def broker_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_edge(request: pytest.FixtureRequest, broker_backend: str) -> AsyncIterator[BrokerOpener]:
    """``await open_edge("a")`` opens the broker of one more edge; all of them share one bus."""
    opened: list[Broker] = []
    if broker_backend == "memory":
        url, prefix = f"memory://{_unique('bus')}", "lc:"
    else:
        url, prefix = redis_url(request, broker_backend), _unique("t") + ":"

    async def opener(edge_id: str) -> Broker:
        broker = await open_broker(url, edge_id=edge_id, prefix=prefix)
        opened.append(broker)
        return broker

    yield opener
    for broker in opened:
        await broker.aclose()


# -- registry ----------------------------------------------------------------------------------

RegistryOpener = Callable[[], Awaitable[Registry]]


@pytest.fixture(params=REGISTRY_BACKENDS)
def registry_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_registry_instance(
    request: pytest.FixtureRequest, registry_backend: str
) -> AsyncIterator[RegistryOpener]:
    """Each call opens one more registry client on the same shared state (one per edge)."""
    opened: list[Registry] = []
    if registry_backend == "memory":
        url, prefix = f"memory://{_unique('reg')}", "lc:"
    else:
        url, prefix = redis_url(request, registry_backend), _unique("t") + ":"

    async def opener() -> Registry:
        registry = await open_registry(url, prefix=prefix)
        opened.append(registry)
        return registry

    yield opener
    for registry in opened:
        await registry.aclose()


# -- durable stores: a URL per test plus a reopen to check durability ------------------------


def _url(kind: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of ``kind`` ("log", "history", "meta") on ``backend``.

    Each cluster backend keeps its own URL factory in ``backend_<name>.py`` beside this file
    (``fresh_url(kind, request, tmp_path)``): it makes sure the real service runs (started once per
    session by the project's scripts, FAILING when it cannot start) and returns a URL naming a
    store no other test uses (its own topic, keyspace or database).
    """
    if backend == "sqlite":
        return f"sqlite://{tmp_path}/{kind}.db"
    module = importlib.import_module(f"backend_{backend}")
    return str(module.fresh_url(kind, request, tmp_path))


@pytest.fixture(params=LOG_BACKENDS)
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url("log", str(request.param), request, tmp_path)


@pytest.fixture
async def comment_log(log_url: str) -> AsyncIterator[CommentLog]:
    log = await open_comment_log(log_url)
    yield log
    await log.aclose()


@pytest.fixture(params=HISTORY_BACKENDS)
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url("history", str(request.param), request, tmp_path)


@pytest.fixture
async def history(history_url: str) -> AsyncIterator[HistoryStore]:
    store = await open_history(history_url)
    yield store
    await store.aclose()


@pytest.fixture(params=META_BACKENDS)
def meta_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url("meta", str(request.param), request, tmp_path)


@pytest.fixture
async def meta(meta_url: str) -> AsyncIterator[MetaStore]:
    store = await open_meta(meta_url)
    yield store
    await store.aclose()
