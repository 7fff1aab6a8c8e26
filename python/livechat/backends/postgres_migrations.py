"""The PostgreSQL meta store's schema migrations: the SQL files in
``livechat/backends/migrations/postgres`` (package data), named ``NNNN_name.sql``, applied in
order of their number; ``schema_migrations(version, applied_at)`` records each applied file by its
name without ``.sql`` (``0001_init``). All pending files run in ONE transaction that first takes a
transaction-scoped advisory lock, so two edges (or two ``livechat migrate``) starting at once take
turns: the second waits, then finds nothing left to apply. A failing file rolls back every file of
that run. Works on any asyncpg connection; ``postgres_meta`` opens them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

from livechat.ports.errors import ConfigurationError

MIGRATIONS_PACKAGE: Final = "livechat.backends.migrations.postgres"
# pg_advisory_xact_lock key: any constant the application owns; "lcmigrat" read as a 64-bit int.
ADVISORY_LOCK_KEY: Final = int.from_bytes(b"lcmigrat", "big") - (1 << 63)
_FILE_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_CREATE_TABLE: Final = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now())"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every shipped migration, in the order it must be applied."""
    found: dict[int, Migration] = {}
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        number = int(match.group(1))
        if number in found:
            raise ConfigurationError(f"two migrations numbered {match.group(1)}: {entry.name}")
        found[number] = Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
    return tuple(found[n] for n in sorted(found))


async def missing_versions(conn: Any) -> list[str]:
    """Shipped versions the database has not applied (all of them on an empty database)."""
    known = [m.version for m in migrations()]
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return known
    applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [v for v in known if v not in applied]


async def apply_postgres(conn: Any) -> list[str]:
    """Apply every missing migration on ``conn`` under the advisory lock; returns their versions."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        missing = set(await missing_versions(conn))
        for migration in migrations():
            if migration.version in missing:
                await conn.execute(migration.sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", migration.version)
                applied.append(migration.version)
    return applied
