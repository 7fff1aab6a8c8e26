"""What only the PostgreSQL meta store has: URL options, a pool that outlives dead connections,
statement timeouts. The MetaStore contract itself runs on PostgreSQL in test_meta_contract.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from backend_postgres import fresh_url
from livechat.backends import open_meta
from livechat.backends.postgres_meta import PostgresUrl
from livechat.ports import BackendUnavailable, ConfigurationError, RoomModes


def test_url_options_and_defaults() -> None:
    url = PostgresUrl.parse("postgresql://u:pw@db.example:5433/meta?pool_min=2&pool_max=4&sslmode=require")
    assert (url.pool_min, url.pool_max, url.migrate) == (2, 4, "check")
    assert url.dsn == "postgresql://u:pw@db.example:5433/meta?sslmode=require"  # the rest goes to asyncpg
    assert PostgresUrl.parse("postgres://h/db").pool_max == PostgresUrl("").pool_max


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?pool_min=5&pool_max=2",
        "postgresql://h/db?pool_max=many",
        "postgresql://h/db?migrate=sometimes",
        "postgresql://h/db?timeout=0",
        "postgresql://h",
    ],
)
async def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        await open_meta(url)


async def _terminate_sessions(url: str) -> int:
    """Kill every server session on the database of ``url`` (what a server restart does to a pool)."""
    database = url.rsplit("/", 1)[1].partition("?")[0]
    conn = await asyncpg.connect(url)
    try:
        killed = await conn.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = $1 AND pid <> pg_backend_pid()""",
            database,
        )
        return int(killed)
    finally:
        await conn.close()


async def test_reads_survive_dead_pooled_connections(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = fresh_url("meta", request, tmp_path)
    store = await open_meta(url + "?pool_min=3&pool_max=3")
    try:
        await store.set_modes("s", RoomModes(slow_seconds=7))
        assert await _terminate_sessions(url) == 3
        # Every pooled connection is dead: a read is retried once on a fresh one.
        assert await store.get_modes("s") == RoomModes(slow_seconds=7)
        assert await store.bump_reputation("u", "accepted") == 1
    finally:
        await store.aclose()


async def test_a_statement_over_the_timeout_is_backend_unavailable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = fresh_url("meta", request, tmp_path)
    store = await open_meta(url + "?timeout=0.5")
    blocker = await asyncpg.connect(url)
    try:
        await store.bump_reputation("u", "strikes")
        async with blocker.transaction():
            await blocker.execute("SELECT * FROM reputation WHERE user_id = 'u' FOR UPDATE")
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(BackendUnavailable):
                await store.bump_reputation("u", "strikes")
            assert loop.time() - started < 2.0
        # The lock is gone and the timed-out increment was rolled back.
        assert await store.bump_reputation("u", "strikes") == 2
    finally:
        await blocker.close()
        await store.aclose()
