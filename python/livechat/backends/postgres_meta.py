"""MetaStore on PostgreSQL (asyncpg, one connection pool per store).

URL: ``postgresql://user[:password]@host:port/database`` (``postgres://`` too), with options in the
query string (defaults in ``PostgresUrl``):

- ``pool_min`` / ``pool_max``: connections kept open / the most opened at once.
- ``timeout``: seconds one statement may take, including waiting for a free pooled connection,
  before it fails with BackendUnavailable; ``connect_timeout``: seconds to open a connection.
- ``migrate=check`` (the default) refuses to open a database whose schema lacks a migration this
  version ships (ConfigurationError naming ``livechat migrate``): schema changes are an operator
  step, run once per deployment, not a side effect of whichever edge starts first.
  ``migrate=auto`` applies them on open instead (safe with many edges starting at once: see
  ``livechat.backends.postgres_migrations``); meant for development and tests.

Any other query option (``sslmode``, ``application_name``…) goes to asyncpg unchanged.

How each guarantee of the port is kept: every method is ONE SQL statement in autocommit (its own
transaction), so nothing is read-modify-write across edges: counters are
``INSERT … ON CONFLICT DO UPDATE … RETURNING``; the first follow time is ``ON CONFLICT DO NOTHING``;
a flag resolves once because ``UPDATE … WHERE status = 'pending'`` re-checks the row after a
concurrent update commits (READ COMMITTED); ``unban`` / ``clear_pin`` report whether the deleted
row was in force with ``DELETE … RETURNING``.

Errors: a refused, dropped or timed-out connection is BackendUnavailable; a missing database or a
refused login is ConfigurationError; any other server error is BackendError. When a pooled
connection turns out dead (the server restarted), the whole pool is recycled and reads and
idempotent writes are retried once on a fresh connection; other writes are not retried, because
whether they committed is unknown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from livechat.backends.postgres_migrations import apply_postgres, missing_versions
from livechat.ports.errors import BackendError, BackendUnavailable, ClosedError, ConfigurationError
from livechat.ports.meta import (
    GLOBAL_STREAM,
    NAME_CANDIDATES,
    Ban,
    EngagementTotals,
    FlaggedComment,
    FlagStatus,
    ModAction,
    ModActionKind,
    Pin,
    Reputation,
    Role,
    RoomModes,
    StreamInfo,
    UserInfo,
    UserReport,
    handle_key,
    named_user,
)

T = TypeVar("T")

_SCHEMES: Final = ("postgresql", "postgres")
_MIGRATE_MODES: Final = ("check", "auto")
# Query options livechat reads itself; the rest of the query string is asyncpg's.
_OPTIONS: Final = frozenset({"pool_min", "pool_max", "timeout", "connect_timeout", "migrate"})
# Connection-level failures: the server is down, restarting, unreachable or out of connections.
# (TimeoutError is an OSError; InterfaceError is what asyncpg raises on a closed connection.)
UNAVAILABLE: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
    # Raised by a query sent while the server's "terminating connection" notice is still being
    # read (seen after pg_terminate_backend and restarts): that connection is dead too.
    asyncpg.exceptions.InternalClientError,
)
# Everything asyncpg raises about the server or the connection (the rest are bugs).
ERRORS: Final = (*UNAVAILABLE, asyncpg.PostgresError)
# The URL names a database or login the server refuses: fixing it is a configuration change.
MISCONFIGURED: Final = (
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
)


@dataclass(frozen=True, slots=True)
class PostgresUrl:
    """A parsed ``postgresql://`` URL: the asyncpg DSN plus livechat's own options."""

    dsn: str
    pool_min: int = 1
    pool_max: int = 10
    timeout: float = 5.0
    connect_timeout: float = 5.0
    migrate: str = "check"

    @classmethod
    def parse(cls, url: str) -> PostgresUrl:
        parts = urlsplit(url)
        if parts.scheme.lower() not in _SCHEMES:
            raise ConfigurationError(f"not a postgresql:// URL: {url!r}")
        if not parts.hostname or not parts.path.strip("/"):
            raise ConfigurationError(f"postgresql URL needs a host and a database: {url!r}")
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _OPTIONS:
                ours[key] = value
            else:
                theirs.append((key, value))
        default = cls(dsn="")
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(theirs), ""))
        try:
            parsed = cls(
                dsn=dsn,
                pool_min=int(ours.get("pool_min", default.pool_min)),
                pool_max=int(ours.get("pool_max", default.pool_max)),
                timeout=float(ours.get("timeout", default.timeout)),
                connect_timeout=float(ours.get("connect_timeout", default.connect_timeout)),
                migrate=ours.get("migrate", default.migrate).lower(),
            )
        except ValueError as exc:
            raise ConfigurationError(f"bad number in postgresql URL options {ours}: {exc}") from None
        if not 0 <= parsed.pool_min <= parsed.pool_max or parsed.pool_max < 1:
            raise ConfigurationError(f"need 0 <= pool_min <= pool_max and pool_max >= 1: {url!r}")
        if parsed.timeout <= 0 or parsed.connect_timeout <= 0:
            raise ConfigurationError(f"timeout and connect_timeout must be > 0: {url!r}")
        if parsed.migrate not in _MIGRATE_MODES:
            raise ConfigurationError(f"migrate must be check or auto, got {parsed.migrate!r}")
        return parsed


def translate(exc: BaseException, what: str) -> Exception:
    """The port's error for an asyncpg/OS failure of ``what``."""
    if isinstance(exc, MISCONFIGURED):
        return ConfigurationError(f"{what}: {exc}")
    if isinstance(exc, UNAVAILABLE):
        return BackendUnavailable(f"{what}: PostgreSQL unavailable: {type(exc).__name__}: {exc}")
    return BackendError(f"{what}: {type(exc).__name__}: {exc}")


async def connect(url: PostgresUrl) -> Any:
    """One plain connection (migrations and tools), errors translated like the store's."""
    try:
        return await asyncpg.connect(url.dsn, timeout=url.connect_timeout, command_timeout=url.timeout)
    except ERRORS as exc:
        raise translate(exc, "connect") from exc


async def _no_reset(conn: Any) -> None:
    """The store never changes session state (no SET, LISTEN or advisory lock on pooled
    connections), so the default ``RESET ALL; UNLISTEN *; …`` round trip on every release is skipped."""


_ROLE_RANK: Final = {Role.VIEWER: 0, Role.MODERATOR: 1, Role.BROADCASTER: 2}
_BAN_COLUMNS: Final = "stream_id, user_id, banned_by, reason, created_at, expires_at"
_PIN_COLUMNS: Final = "stream_id, comment_id, pinned_by, payload, pinned_at, expires_at"
_ACTION_COLUMNS: Final = (
    "stream_id, actor_id, kind, created_at, target_user_id, target_comment_id, reason, action_id"
)
_REPORT_COLUMNS: Final = (
    "stream_id, reporter_id, target_user_id, reason, created_at, target_comment_id, report_id"
)
_FLAG_COLUMNS: Final = (
    "stream_id, comment_id, user_id, payload, reason, score, created_at, status, resolved_by, resolved_at"
)
# "No upper bound" for keyset paging by a bigint id.
_MAX_ID: Final = (1 << 63) - 1


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _rowcount(status: str) -> int:
    """Rows affected, from asyncpg's command tag (``"UPDATE 1"``, ``"INSERT 0 1"``)."""
    return int(status.rsplit(" ", 1)[-1])


def _flag(row: Any) -> FlaggedComment:
    stream, cid, user, payload, reason, score, at, status, by, resolved_at = row
    return FlaggedComment(stream, cid, user, payload, reason, score, at, FlagStatus(status), by, resolved_at)


class PostgresMetaStore:
    """Durable, shared metadata in PostgreSQL (see the ``MetaStore`` docstring and this module's)."""

    def __init__(self, pool: Any, url: PostgresUrl) -> None:
        self._pool = pool
        self._url = url
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> PostgresMetaStore:
        """Connect the pool and check (``migrate=check``) or bring (``migrate=auto``) the schema up to
        date. Raises BackendUnavailable when the server cannot be reached, ConfigurationError when
        the URL is wrong or the schema is behind."""
        parsed = PostgresUrl.parse(url)
        if parsed.migrate == "auto":
            await migrate_postgres(parsed)
        try:
            pool = await asyncpg.create_pool(
                parsed.dsn,
                min_size=parsed.pool_min,
                max_size=parsed.pool_max,
                timeout=parsed.connect_timeout,
                command_timeout=parsed.timeout,
                reset=_no_reset,
            )
        except ERRORS as exc:
            raise translate(exc, "open meta store") from exc
        store = cls(pool, parsed)
        try:
            missing = await store._call(missing_versions, retry=True)
        except BaseException:
            await store.aclose()
            raise
        if missing:
            await store.aclose()
            raise ConfigurationError(
                f"the PostgreSQL meta schema is behind: migration(s) {', '.join(missing)} not applied; "
                "run `livechat migrate --meta URL` (or add ?migrate=auto to the URL)"
            )
        return store

    # -- running statements --------------------------------------------------------------------

    async def _call(self, fn: Callable[[Any], Awaitable[T]], *, retry: bool) -> T:
        """Run ``fn(connection)`` on a pooled connection; ``retry``: once more after a dead connection."""
        if self._closed:
            raise ClosedError("meta store is closed")
        try:
            async with self._pool.acquire(timeout=self._url.timeout) as conn:
                return await fn(conn)
        except TimeoutError as exc:
            # A slow statement or no free connection: the connection is fine, a retry would double the wait.
            raise translate(exc, "meta store") from exc
        except UNAVAILABLE as exc:
            if self._closed:
                raise ClosedError("meta store is closed") from exc
            # Every idle connection may be dead too (a server restart): replace them all.
            await self._pool.expire_connections()
            if not retry:
                raise translate(exc, "meta store") from exc
        except asyncpg.PostgresError as exc:
            raise translate(exc, "meta store") from exc
        return await self._call(fn, retry=False)

    async def _execute(self, sql: str, *args: Any, retry: bool = False) -> int:
        """A write; returns the affected row count. ``retry`` only for idempotent statements."""
        status: str = await self._call(lambda conn: conn.execute(sql, *args), retry=retry)
        return _rowcount(status)

    async def _fetchrow(self, sql: str, *args: Any, retry: bool = True) -> Any:
        return await self._call(lambda conn: conn.fetchrow(sql, *args), retry=retry)

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._call(lambda conn: conn.fetch(sql, *args), retry=True)
        return rows

    # -- streams and users ---------------------------------------------------------------------
    async def upsert_stream(self, stream: StreamInfo) -> None:
        await self._execute(
            """INSERT INTO streams (stream_id, owner_id, title, created_at, ended_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (stream_id) DO UPDATE SET owner_id = EXCLUDED.owner_id,
                 title = EXCLUDED.title, created_at = EXCLUDED.created_at, ended_at = EXCLUDED.ended_at""",
            stream.stream_id,
            stream.owner_id,
            stream.title,
            stream.created_at,
            stream.ended_at,
            retry=True,
        )

    async def get_stream(self, stream_id: str) -> StreamInfo | None:
        row = await self._fetchrow(
            "SELECT stream_id, owner_id, title, created_at, ended_at FROM streams WHERE stream_id = $1",
            stream_id,
        )
        return None if row is None else StreamInfo(*row)

    async def upsert_user(self, user: UserInfo) -> None:
        await self._execute(
            """INSERT INTO users (user_id, display_name, created_at) VALUES ($1, $2, $3)
               ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name,
                 created_at = EXCLUDED.created_at""",
            user.user_id,
            user.display_name,
            user.created_at,
            retry=True,
        )

    async def get_user(self, user_id: str) -> UserInfo | None:
        row = await self._fetchrow(
            "SELECT user_id, display_name, created_at FROM users WHERE user_id = $1", user_id
        )
        return None if row is None else UserInfo(*row)

    async def find_user_by_name(self, name: str) -> UserInfo | None:
        # Scans users: 0001_init has no index on these expressions (a migration adding
        # users (lower(user_id)) and users (lower(replace(display_name, ' ', ''))) would serve it).
        rows = await self._fetch(
            "SELECT user_id, display_name, created_at FROM users WHERE user_id = $1"
            " OR lower(user_id) = $2 OR lower(replace(display_name, ' ', '')) = $3 LIMIT $4",
            name,
            name.lower(),
            handle_key(name),
            NAME_CANDIDATES,
        )
        return named_user(name, [UserInfo(*row) for row in rows])

    # -- roles ---------------------------------------------------------------------------------
    async def set_role(self, stream_id: str, user_id: str, role: Role) -> None:
        role = Role(role)
        if role is Role.VIEWER:
            await self._execute(
                "DELETE FROM roles WHERE stream_id = $1 AND user_id = $2", stream_id, user_id, retry=True
            )
        else:
            await self._execute(
                """INSERT INTO roles (stream_id, user_id, role) VALUES ($1, $2, $3)
                   ON CONFLICT (stream_id, user_id) DO UPDATE SET role = EXCLUDED.role""",
                stream_id,
                user_id,
                role.value,
                retry=True,
            )

    async def get_role(self, stream_id: str, user_id: str) -> Role:
        rows = await self._fetch(
            """SELECT role FROM roles WHERE user_id = $1 AND stream_id IN ($2, $3)
               UNION ALL SELECT 'broadcaster' FROM streams WHERE stream_id = $2 AND owner_id = $1""",
            user_id,
            stream_id,
            GLOBAL_STREAM,
        )
        return max((Role(r[0]) for r in rows), key=_ROLE_RANK.__getitem__, default=Role.VIEWER)

    async def list_roles(self, stream_id: str) -> dict[str, Role]:
        rows = await self._fetch("SELECT user_id, role FROM roles WHERE stream_id = $1", stream_id)
        return {user: Role(role) for user, role in rows}

    # -- follows -------------------------------------------------------------------------------
    async def follow(self, channel_id: str, user_id: str, followed_at: float) -> None:
        await self._execute(
            """INSERT INTO follows (channel_id, user_id, followed_at) VALUES ($1, $2, $3)
               ON CONFLICT (channel_id, user_id) DO NOTHING""",
            channel_id,
            user_id,
            followed_at,
            retry=True,
        )

    async def unfollow(self, channel_id: str, user_id: str) -> bool:
        deleted = await self._execute(
            "DELETE FROM follows WHERE channel_id = $1 AND user_id = $2", channel_id, user_id
        )
        return deleted > 0

    async def followed_since(self, channel_id: str, user_id: str) -> float | None:
        row = await self._fetchrow(
            "SELECT followed_at FROM follows WHERE channel_id = $1 AND user_id = $2", channel_id, user_id
        )
        return None if row is None else float(row[0])

    # -- room modes ----------------------------------------------------------------------------
    async def set_modes(self, stream_id: str, modes: RoomModes) -> None:
        if modes.slow_seconds < 0 or modes.hold_ms < 0:
            raise ValueError("slow_seconds and hold_ms must be >= 0")
        if modes.hold not in (None, "off", "open", "closed"):
            raise ValueError("hold must be None, 'off', 'open' or 'closed'")
        if modes.followers_only_min_age_s is not None and modes.followers_only_min_age_s < 0:
            raise ValueError("followers_only_min_age_s must be None or >= 0")
        await self._execute(
            """INSERT INTO room_modes
                 (stream_id, slow_seconds, followers_only_min_age_s, comments_off, emote_only, hold, hold_ms)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (stream_id) DO UPDATE SET slow_seconds = EXCLUDED.slow_seconds,
                 followers_only_min_age_s = EXCLUDED.followers_only_min_age_s,
                 comments_off = EXCLUDED.comments_off, emote_only = EXCLUDED.emote_only,
                 hold = EXCLUDED.hold, hold_ms = EXCLUDED.hold_ms""",
            stream_id,
            modes.slow_seconds,
            modes.followers_only_min_age_s,
            modes.comments_off,
            modes.emote_only,
            modes.hold,
            modes.hold_ms,
            retry=True,
        )

    async def get_modes(self, stream_id: str) -> RoomModes:
        row = await self._fetchrow(
            """SELECT slow_seconds, followers_only_min_age_s, comments_off, emote_only, hold, hold_ms
               FROM room_modes WHERE stream_id = $1""",
            stream_id,
        )
        return RoomModes() if row is None else RoomModes(*row)

    # -- pins ----------------------------------------------------------------------------------
    async def set_pin(self, pin: Pin) -> None:
        await self._execute(
            f"""INSERT INTO pins ({_PIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (stream_id) DO UPDATE SET comment_id = EXCLUDED.comment_id,
                  pinned_by = EXCLUDED.pinned_by, payload = EXCLUDED.payload,
                  pinned_at = EXCLUDED.pinned_at, expires_at = EXCLUDED.expires_at""",
            pin.stream_id,
            pin.comment_id,
            pin.pinned_by,
            pin.payload,
            pin.pinned_at,
            pin.expires_at,
            retry=True,
        )

    async def clear_pin(self, stream_id: str) -> bool:
        row = await self._fetchrow(
            """WITH gone AS (DELETE FROM pins WHERE stream_id = $1
                             RETURNING expires_at IS NULL OR expires_at > $2 AS live)
               SELECT coalesce(bool_or(live), false) FROM gone""",
            stream_id,
            time.time(),
            retry=False,
        )
        return bool(row[0])

    async def get_pin(self, stream_id: str, now: float | None = None) -> Pin | None:
        row = await self._fetchrow(
            f"""SELECT {_PIN_COLUMNS} FROM pins
                WHERE stream_id = $1 AND (expires_at IS NULL OR expires_at > $2)""",
            stream_id,
            _now(now),
        )
        return None if row is None else Pin(*row)

    # -- highlights ----------------------------------------------------------------------------
    async def add_highlight(self, stream_id: str, comment_id: int) -> None:
        await self._execute(
            """INSERT INTO highlights (stream_id, comment_id) VALUES ($1, $2)
               ON CONFLICT (stream_id, comment_id) DO UPDATE
                 SET seq = nextval('highlights_seq'), highlighted_at = EXCLUDED.highlighted_at""",
            stream_id,
            comment_id,
            retry=True,
        )

    async def list_highlights(self, stream_id: str, limit: int) -> list[int]:
        rows = await self._fetch(
            """SELECT comment_id FROM (SELECT comment_id, seq FROM highlights WHERE stream_id = $1
                                       ORDER BY seq DESC LIMIT $2) newest ORDER BY seq""",
            stream_id,
            max(0, limit),
        )
        return [int(r[0]) for r in rows]

    # -- bans ----------------------------------------------------------------------------------
    async def ban(self, ban: Ban) -> None:
        await self._execute(
            f"""INSERT INTO bans ({_BAN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (stream_id, user_id) DO UPDATE SET banned_by = EXCLUDED.banned_by,
                  reason = EXCLUDED.reason, created_at = EXCLUDED.created_at,
                  expires_at = EXCLUDED.expires_at""",
            ban.stream_id,
            ban.user_id,
            ban.banned_by,
            ban.reason,
            ban.created_at,
            ban.expires_at,
            retry=True,
        )

    async def unban(self, stream_id: str, user_id: str) -> bool:
        row = await self._fetchrow(
            """WITH gone AS (DELETE FROM bans WHERE stream_id = $1 AND user_id = $2
                             RETURNING expires_at IS NULL OR expires_at > $3 AS live)
               SELECT coalesce(bool_or(live), false) FROM gone""",
            stream_id,
            user_id,
            time.time(),
            retry=False,
        )
        return bool(row[0])

    async def get_ban(self, stream_id: str, user_id: str, now: float | None = None) -> Ban | None:
        # A permanent ban (NULL expiry) sorts first, then the latest expiry.
        row = await self._fetchrow(
            f"""SELECT {_BAN_COLUMNS} FROM bans WHERE stream_id IN ($1, $2) AND user_id = $3
                AND (expires_at IS NULL OR expires_at > $4)
                ORDER BY expires_at DESC NULLS FIRST LIMIT 1""",
            stream_id,
            GLOBAL_STREAM,
            user_id,
            _now(now),
        )
        return None if row is None else Ban(*row)

    async def list_bans(self, stream_id: str, now: float | None = None) -> list[Ban]:
        rows = await self._fetch(
            f"""SELECT {_BAN_COLUMNS} FROM bans WHERE stream_id = $1
                AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at, user_id""",
            stream_id,
            _now(now),
        )
        return [Ban(*r) for r in rows]

    # -- moderation records --------------------------------------------------------------------
    async def record_action(self, action: ModAction) -> int:
        row = await self._fetchrow(
            """INSERT INTO mod_actions
                 (stream_id, actor_id, kind, created_at, target_user_id, target_comment_id, reason)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING action_id""",
            action.stream_id,
            action.actor_id,
            ModActionKind(action.kind).value,
            action.created_at,
            action.target_user_id,
            action.target_comment_id,
            action.reason,
            retry=False,
        )
        return int(row[0])

    async def list_actions(self, stream_id: str, limit: int, before_id: int | None = None) -> list[ModAction]:
        rows = await self._fetch(
            f"""SELECT {_ACTION_COLUMNS} FROM mod_actions WHERE stream_id = $1 AND action_id < $2
                ORDER BY action_id DESC LIMIT $3""",
            stream_id,
            _MAX_ID if before_id is None else before_id,
            max(0, limit),
        )
        return [
            ModAction(stream, actor, ModActionKind(kind), at, user, comment, reason, action_id)
            for stream, actor, kind, at, user, comment, reason, action_id in rows
        ]

    async def add_report(self, report: UserReport) -> int:
        # A repeat report of the same comment by the same reporter hits the unique index; the no-op
        # DO UPDATE makes RETURNING give the first report's id in the same statement (DO NOTHING
        # would return no row, and a follow-up SELECT could race with the first insert's commit).
        row = await self._fetchrow(
            """INSERT INTO user_reports
                 (stream_id, reporter_id, target_user_id, reason, created_at, target_comment_id)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (stream_id, target_comment_id, reporter_id)
                 DO UPDATE SET reporter_id = user_reports.reporter_id
               RETURNING report_id""",
            report.stream_id,
            report.reporter_id,
            report.target_user_id,
            report.reason,
            report.created_at,
            report.target_comment_id,
            retry=False,
        )
        return int(row[0])

    async def list_reports(
        self, stream_id: str, limit: int, before_id: int | None = None
    ) -> list[UserReport]:
        rows = await self._fetch(
            f"""SELECT {_REPORT_COLUMNS} FROM user_reports WHERE stream_id = $1 AND report_id < $2
                ORDER BY report_id DESC LIMIT $3""",
            stream_id,
            _MAX_ID if before_id is None else before_id,
            max(0, limit),
        )
        return [UserReport(*r) for r in rows]

    async def count_reports(self, stream_id: str, comment_id: int) -> int:
        row = await self._fetchrow(
            """SELECT count(DISTINCT reporter_id) FROM user_reports
               WHERE stream_id = $1 AND target_comment_id = $2""",
            stream_id,
            comment_id,
        )
        return int(row[0])

    async def flag_comment(self, flagged: FlaggedComment) -> bool:
        f = flagged
        inserted = await self._execute(
            f"""INSERT INTO flagged_comments ({_FLAG_COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT (stream_id, comment_id) DO NOTHING""",
            f.stream_id,
            f.comment_id,
            f.user_id,
            f.payload,
            f.reason,
            f.score,
            f.created_at,
            FlagStatus(f.status).value,
            f.resolved_by,
            f.resolved_at,
        )
        return inserted == 1

    async def list_flagged(
        self, stream_id: str, limit: int, status: FlagStatus = FlagStatus.PENDING
    ) -> list[FlaggedComment]:
        rows = await self._fetch(
            f"""SELECT {_FLAG_COLUMNS} FROM flagged_comments WHERE stream_id = $1 AND status = $2
                ORDER BY created_at, comment_id LIMIT $3""",
            stream_id,
            FlagStatus(status).value,
            max(0, limit),
        )
        return [_flag(r) for r in rows]

    async def resolve_flag(
        self, stream_id: str, comment_id: int, status: FlagStatus, resolved_by: str, now: float | None = None
    ) -> bool:
        status = FlagStatus(status)
        if status is FlagStatus.PENDING:
            raise ValueError("resolve_flag needs APPROVED or REJECTED")
        changed = await self._execute(
            """UPDATE flagged_comments SET status = $1, resolved_by = $2, resolved_at = $3
               WHERE stream_id = $4 AND comment_id = $5 AND status = 'pending'""",
            status.value,
            resolved_by,
            _now(now),
            stream_id,
            comment_id,
        )
        return changed == 1

    # -- reputation ----------------------------------------------------------------------------
    async def bump_reputation(self, user_id: str, counter: str, delta: int = 1) -> int:
        row = await self._fetchrow(
            """INSERT INTO reputation (user_id, counter, value) VALUES ($1, $2, $3)
               ON CONFLICT (user_id, counter) DO UPDATE SET value = reputation.value + EXCLUDED.value
               RETURNING value""",
            user_id,
            counter,
            delta,
            retry=False,
        )
        return int(row[0])

    async def get_reputation(self, user_id: str) -> Reputation:
        rows = await self._fetch("SELECT counter, value FROM reputation WHERE user_id = $1", user_id)
        return Reputation(user_id, {name: int(value) for name, value in rows})

    # -- engagement ----------------------------------------------------------------------------
    async def add_engagement(
        self, stream_id: str, reactions: Mapping[str, int], comments: int, likes: Mapping[int, int]
    ) -> None:
        rx = [(emoji, delta) for emoji, delta in reactions.items() if delta]
        liked = [(cid, delta) for cid, delta in likes.items() if delta]
        if not (comments or rx or liked):
            return
        # One statement, so one transaction: every data-modifying CTE runs, all or nothing. Not
        # retried (whether it committed is unknown): a caller retrying it knows the risk.
        await self._execute(
            """WITH c AS (
                   INSERT INTO stream_counts AS s (stream_id, comments)
                   SELECT $1::text, $2::bigint WHERE $2::bigint <> 0
                   ON CONFLICT (stream_id) DO UPDATE SET comments = s.comments + EXCLUDED.comments),
               r AS (
                   INSERT INTO stream_reactions AS s (stream_id, emoji, total)
                   SELECT $1, e, d FROM unnest($3::text[], $4::bigint[]) AS t (e, d)
                   ON CONFLICT (stream_id, emoji) DO UPDATE SET total = s.total + EXCLUDED.total),
               l AS (
                   INSERT INTO comment_likes AS s (stream_id, comment_id, likes)
                   SELECT $1, i, d FROM unnest($5::bigint[], $6::bigint[]) AS t (i, d)
                   ON CONFLICT (stream_id, comment_id) DO UPDATE SET likes = s.likes + EXCLUDED.likes)
               SELECT 1""",
            stream_id,
            comments,
            [e for e, _ in rx],
            [d for _, d in rx],
            [i for i, _ in liked],
            [d for _, d in liked],
        )

    async def engagement(self, stream_id: str, like_ids: Sequence[int] | None = None) -> EngagementTotals:
        # One statement: the three tables read at one point in time.
        rows = await self._fetch(
            """SELECT 'c', NULL::text, NULL::bigint, comments FROM stream_counts WHERE stream_id = $1
               UNION ALL
               SELECT 'r', emoji, NULL, total FROM stream_reactions WHERE stream_id = $1
               UNION ALL
               SELECT 'l', NULL, comment_id, likes FROM comment_likes
               WHERE stream_id = $1 AND ($2::bigint[] IS NULL OR comment_id = ANY ($2::bigint[]))""",
            stream_id,
            None if like_ids is None else [int(cid) for cid in like_ids],
        )
        totals = EngagementTotals({}, 0, {})
        comments = 0
        for kind, emoji, comment_id, value in rows:
            if kind == "c":
                comments = int(value)
            elif kind == "r":
                totals.reactions[emoji] = int(value)
            else:
                totals.likes[int(comment_id)] = int(value)
        return totals._replace(comments=comments)

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_expired(self, now: float | None = None) -> int:
        row = await self._fetchrow(
            """WITH b AS (DELETE FROM bans WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING 1),
                    p AS (DELETE FROM pins WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING 1)
               SELECT (SELECT count(*) FROM b) + (SELECT count(*) FROM p)""",
            _now(now),
            retry=False,
        )
        return int(row[0])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # Waits for calls in flight; a server that stopped answering must not hang shutdown.
            async with asyncio.timeout(self._url.timeout):
                await self._pool.close()
        except ERRORS:
            self._pool.terminate()


if TYPE_CHECKING:
    from livechat.ports.meta import MetaStore

    def _check(b: PostgresMetaStore) -> MetaStore:
        return b


async def migrate_postgres(url: PostgresUrl) -> list[str]:
    """Apply the pending migrations at ``url`` (one connection, closed after)."""
    conn = await connect(url)
    try:
        return await apply_postgres(conn)
    except ERRORS as exc:
        raise translate(exc, "migrate") from exc
    finally:
        await conn.close()
