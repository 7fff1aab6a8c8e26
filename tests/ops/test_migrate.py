"""``livechat migrate`` on the real PostgreSQL server, and how the meta store treats a schema that is
behind. Every test gets its own database (tests/contract/backend_postgres.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from livechat.backends import open_meta
from livechat.migrate import migrations
from livechat.ports import BackendUnavailable, ConfigurationError, RoomModes

from tests.contract.backend_postgres import database_url, fresh_empty_url
from tests.ports import free_port

# The console script installed beside this interpreter: what an operator runs.
LIVECHAT = Path(sys.executable).with_name("livechat")
VERSIONS = [m.version for m in migrations()]


def livechat_migrate(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(LIVECHAT), "migrate", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


async def applied_versions(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()


def test_shipped_migrations_are_numbered_in_order() -> None:
    assert VERSIONS and VERSIONS[0] == "0001_init"
    assert [int(v[:4]) for v in VERSIONS] == list(range(1, len(VERSIONS) + 1))


async def test_migrate_applies_every_version_then_none(request: pytest.FixtureRequest) -> None:
    url = fresh_empty_url(request)
    code, out, err = finish(livechat_migrate("--meta", url))
    assert code == 0, err
    assert [line.split()[1] for line in out.splitlines() if line.startswith("applied ")] == VERSIONS
    assert await applied_versions(url) == VERSIONS

    code, out, err = finish(livechat_migrate("--meta", url))
    assert code == 0, err
    assert "applied " not in out and "0 migration(s) applied" in out
    assert await applied_versions(url) == VERSIONS


async def test_two_concurrent_runs_apply_each_version_once(request: pytest.FixtureRequest) -> None:
    url = fresh_empty_url(request)
    results = [finish(p) for p in [livechat_migrate("--meta", url) for _ in range(2)]]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    applied = [line.split()[1] for _, out, _ in results for line in out.splitlines() if "applied " in line]
    # One run applied everything; the other waited on the advisory lock and found nothing left.
    assert sorted(applied) == VERSIONS
    assert await applied_versions(url) == VERSIONS


async def test_migrate_reads_the_url_from_the_config_file(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = fresh_empty_url(request)
    config = tmp_path / "livechat.toml"
    config.write_text(f'[backends]\nmeta = "{url}"\n')
    code, _, err = finish(livechat_migrate("--config", str(config)))
    assert code == 0, err
    assert await applied_versions(url) == VERSIONS


def test_migrate_fails_when_the_server_is_unreachable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=2"  # nothing listens
    code, _, err = finish(livechat_migrate("--meta", url))
    assert code == 1
    assert "unavailable" in err.lower()


async def test_open_refuses_a_schema_that_is_behind(request: pytest.FixtureRequest) -> None:
    url = fresh_empty_url(request)
    with pytest.raises(ConfigurationError, match="livechat migrate"):
        await open_meta(url)
    code, _, err = finish(livechat_migrate("--meta", url))
    assert code == 0, err
    store = await open_meta(url)
    try:
        await store.set_modes("s", RoomModes(slow_seconds=3))
        assert await store.get_modes("s") == RoomModes(slow_seconds=3)
    finally:
        await store.aclose()


async def test_migrate_auto_brings_the_schema_up_on_open(request: pytest.FixtureRequest) -> None:
    url = fresh_empty_url(request)
    store = await open_meta(url + "?migrate=auto&pool_max=2")
    try:
        assert await store.get_modes("s") == RoomModes()
    finally:
        await store.aclose()
    assert await applied_versions(url) == VERSIONS


async def test_open_on_an_unreachable_server_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable):
        await open_meta(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=2")


async def test_a_missing_database_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        await open_meta(database_url("lc_no_such_database"))
