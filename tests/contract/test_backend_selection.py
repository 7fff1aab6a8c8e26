"""Choosing backends by URL (livechat.backends) and the BackendConfig defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from livechat.backends import (
    open_backends,
    open_broker,
    open_comment_log,
    open_history,
    open_meta,
    open_registry,
)
from livechat.backends.memory import MemoryBroker, MemoryRegistry
from livechat.backends.redis import RedisBroker, RedisRegistry
from livechat.backends.sqlite_log import SqliteCommentLog
from livechat.config import BackendConfig
from livechat.ids import CommentIdGenerator
from livechat.ports import BackendUnavailable, ConfigurationError, StoredComment
from redis_service import RedisServer, free_redis_ports


async def test_embedded_default_needs_no_service_and_shares_one_file(tmp_path: Path) -> None:
    config = BackendConfig(data_dir=str(tmp_path / "data"))
    comment_id = CommentIdGenerator(node=1).next_id()
    backends = await open_backends(config, edge_id="edge-1")
    try:
        assert isinstance(backends.broker, MemoryBroker)
        assert isinstance(backends.registry, MemoryRegistry)
        assert isinstance(backends.log, SqliteCommentLog)
        await backends.log.append("s", b"x")
        await backends.history.put(StoredComment("s", comment_id, "u", b"x"))
        await backends.meta.bump_reputation("u", "accepted")
    finally:
        await backends.aclose()
    assert sorted(p.name for p in (tmp_path / "data").iterdir())[0] == "livechat.db"
    # Everything was committed to that one file and the file was released: it reopens.
    backends = await open_backends(config, edge_id="edge-1")
    try:
        assert len(await backends.log.read("s", -1, 10)) == 1
        assert await backends.history.get("s", comment_id) is not None
        assert (await backends.meta.get_reputation("u")).get("accepted") == 1
    finally:
        await backends.aclose()


async def test_cluster_urls_select_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    config = dataclasses.replace(
        BackendConfig(data_dir=str(tmp_path)),
        broker=redis_server.url,
        registry=redis_server.url,
        redis_prefix="selection:",
    )
    backends = await open_backends(config, edge_id="edge-1")
    try:
        assert isinstance(backends.broker, RedisBroker)
        assert isinstance(backends.registry, RedisRegistry)
        assert backends.broker.edge_id == "edge-1"
    finally:
        await backends.aclose()


@pytest.mark.parametrize(
    "url",
    ["kafka://localhost:9092", "redis://localhost:6379", "memory://", "no-scheme", "sqlite://"],
)
async def test_a_port_refuses_urls_it_cannot_serve(url: str) -> None:
    with pytest.raises(ConfigurationError):
        await open_comment_log(url)


async def test_bad_urls_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown sqlite URL option"):
        await open_history(f"sqlite://{tmp_path}/h.db?journal=off")
    with pytest.raises(ConfigurationError, match="synchronous"):
        await open_meta(f"sqlite://{tmp_path}/m.db?synchronous=sometimes")
    with pytest.raises(ConfigurationError, match="database must be a number"):
        await open_registry("redis://localhost:6379/zero")
    with pytest.raises(ConfigurationError):
        await open_broker("sqlite:///tmp/x.db", edge_id="e")
    with pytest.raises(ConfigurationError):
        await open_meta("postgresql://localhost/livechat?pool_max=0")


async def test_failed_open_closes_what_was_already_opened(tmp_path: Path) -> None:
    bus = f"memory://selection-{tmp_path.name}"
    config = BackendConfig(data_dir=str(tmp_path), broker=bus, meta="cassandra://nowhere")
    with pytest.raises(ConfigurationError):
        await open_backends(config, edge_id="edge-1")
    # The broker opened before the failure was closed, so its edge id is free again.
    broker = await open_broker(bus, edge_id="edge-1")
    await broker.aclose()


async def test_two_edges_cannot_share_an_id_on_one_memory_bus() -> None:
    a = await open_broker("memory://dup-test", edge_id="same")
    try:
        with pytest.raises(ValueError):
            await open_broker("memory://dup-test", edge_id="same")
    finally:
        await a.aclose()


async def test_unreachable_redis_is_unavailable_not_a_hang() -> None:
    port = free_redis_ports()[0]  # nothing listens there
    with pytest.raises(BackendUnavailable):
        await open_broker(f"redis://127.0.0.1:{port}", edge_id="e")
    with pytest.raises(BackendUnavailable):
        await open_registry(f"redis://127.0.0.1:{port}")
