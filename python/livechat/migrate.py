"""Schema migrations of the meta store (``livechat migrate``).

PostgreSQL: the SQL files in ``livechat/backends/migrations/postgres`` (package data), named
``NNNN_name.sql``, are applied in order of their number; ``schema_migrations(version,
applied_at)`` records each applied file by its name without ``.sql`` (``0001_init``). All pending
files run in ONE transaction that first takes a transaction-scoped advisory lock, so two edges (or
two ``livechat migrate``) starting at once take turns: the second waits, then finds nothing left to
apply. A failing file rolls back every file of that run.

SQLite needs no step: its schema is created when the store opens, so ``migrate`` on a
``sqlite://`` URL just opens and closes the store.
"""

from __future__ import annotations

from livechat.backends.postgres_migrations import apply_postgres, migrations, missing_versions
from livechat.ports.errors import ConfigurationError

__all__ = ["apply_postgres", "migrate", "migrations", "missing_versions"]


async def migrate(url: str) -> list[str]:
    """Bring the meta store at ``url`` up to date; returns the versions applied now (empty when it
    already was). Raises ConfigurationError for an unsupported URL, BackendUnavailable when the
    server cannot be reached."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("postgresql", "postgres"):
        try:
            from livechat.backends.postgres_meta import PostgresUrl, migrate_postgres
        except ImportError as exc:
            raise ConfigurationError(
                f"postgresql:// needs its driver ({exc.name}): pip install 'livechat[cluster]'"
            ) from exc
        return await migrate_postgres(PostgresUrl.parse(url))
    if scheme == "sqlite":
        from livechat.backends import open_meta

        store = await open_meta(url)
        await store.aclose()
        return []
    raise ConfigurationError(
        f"livechat migrate: no migrations for {url!r}; supported: postgresql://, sqlite://"
    )
