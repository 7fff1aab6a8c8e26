"""Versioned schema migrations, one folder of SQL files per engine (package data, read with
``importlib.resources``; applied by ``livechat.backends.postgres_migrations``, which
``livechat migrate`` runs)."""
