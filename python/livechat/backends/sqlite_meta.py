"""MetaStore on SQLite: one table per record kind, each method one transaction on the shared
group-commit worker (``livechat.backends.sqlite``)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from livechat.backends.sqlite import (
    Connection,
    SqliteDatabase,
    acquire_database,
    ensure_schema,
    release_database,
)
from livechat.ports.errors import ClosedError
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

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS streams (
        stream_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, title TEXT NOT NULL,
        created_at REAL NOT NULL, ended_at REAL)""",
    """CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY, display_name TEXT NOT NULL, created_at REAL NOT NULL)""",
    # find_user_by_name: the mention key of ids and display names (ports.meta.handle_key).
    "CREATE INDEX IF NOT EXISTS users_by_id_key ON users (lower(user_id))",
    "CREATE INDEX IF NOT EXISTS users_by_name_key ON users (lower(replace(display_name, ' ', '')))",
    """CREATE TABLE IF NOT EXISTS roles (
        stream_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
        PRIMARY KEY (stream_id, user_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS follows (
        channel_id TEXT NOT NULL, user_id TEXT NOT NULL, followed_at REAL NOT NULL,
        PRIMARY KEY (channel_id, user_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS room_modes (
        stream_id TEXT PRIMARY KEY, slow_seconds INTEGER NOT NULL, followers_only_min_age_s INTEGER,
        comments_off INTEGER NOT NULL, emote_only INTEGER NOT NULL, hold_ms INTEGER NOT NULL, hold TEXT)""",
    """CREATE TABLE IF NOT EXISTS pins (
        stream_id TEXT PRIMARY KEY, comment_id INTEGER NOT NULL, pinned_by TEXT NOT NULL,
        payload BLOB NOT NULL, pinned_at REAL NOT NULL, expires_at REAL)""",
    # A repeat highlight replaces the row, so it takes a new (larger) seq: it becomes the newest.
    """CREATE TABLE IF NOT EXISTS highlights (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, comment_id INTEGER NOT NULL,
        highlighted_at REAL NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS highlights_once ON highlights (stream_id, comment_id)",
    "CREATE INDEX IF NOT EXISTS highlights_by_stream ON highlights (stream_id, seq)",
    """CREATE TABLE IF NOT EXISTS bans (
        stream_id TEXT NOT NULL, user_id TEXT NOT NULL, banned_by TEXT NOT NULL, reason TEXT NOT NULL,
        created_at REAL NOT NULL, expires_at REAL,
        PRIMARY KEY (stream_id, user_id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS bans_by_user ON bans (user_id)",
    """CREATE TABLE IF NOT EXISTS mod_actions (
        action_id INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, actor_id TEXT NOT NULL,
        kind TEXT NOT NULL, created_at REAL NOT NULL, target_user_id TEXT, target_comment_id INTEGER,
        reason TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS mod_actions_by_stream ON mod_actions (stream_id, action_id)",
    """CREATE TABLE IF NOT EXISTS user_reports (
        report_id INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, reporter_id TEXT NOT NULL,
        target_user_id TEXT NOT NULL, reason TEXT NOT NULL, created_at REAL NOT NULL,
        target_comment_id INTEGER)""",
    "CREATE INDEX IF NOT EXISTS user_reports_by_stream ON user_reports (stream_id, report_id)",
    # NULL comment ids are distinct in a UNIQUE index: reports of a user (no comment) are all kept.
    """CREATE UNIQUE INDEX IF NOT EXISTS user_reports_once
        ON user_reports (stream_id, target_comment_id, reporter_id)""",
    """CREATE TABLE IF NOT EXISTS flagged_comments (
        stream_id TEXT NOT NULL, comment_id INTEGER NOT NULL, user_id TEXT NOT NULL, payload BLOB NOT NULL,
        reason TEXT NOT NULL, score REAL NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL,
        resolved_by TEXT, resolved_at REAL,
        PRIMARY KEY (stream_id, comment_id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS flagged_by_status ON flagged_comments (stream_id, status, created_at)",
    """CREATE TABLE IF NOT EXISTS reputation (
        user_id TEXT NOT NULL, counter TEXT NOT NULL, value INTEGER NOT NULL,
        PRIMARY KEY (user_id, counter)) WITHOUT ROWID""",
    # Engagement totals (``add_engagement``): survive restarts and idle rooms being dropped.
    """CREATE TABLE IF NOT EXISTS stream_counts (
        stream_id TEXT PRIMARY KEY, comments INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS stream_reactions (
        stream_id TEXT NOT NULL, emoji TEXT NOT NULL, total INTEGER NOT NULL,
        PRIMARY KEY (stream_id, emoji)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS comment_likes (
        stream_id TEXT NOT NULL, comment_id INTEGER NOT NULL, likes INTEGER NOT NULL,
        PRIMARY KEY (stream_id, comment_id)) WITHOUT ROWID""",
)

# 2: highlights (every statement above is IF NOT EXISTS, so a version-1 file gains the table on open).
# The users_by_*_key indexes came later without a bump: older code reads a file that has them.
# 3: room_modes.hold_seconds (never used) became hold_ms, and hold (the mode) was added
# (``_upgrade_room_modes``).
# 4: stream_counts, stream_reactions, comment_likes (engagement totals; new tables only, so a
# version-3 file gains them on open).
_SCHEMA_VERSION = 4
_ROLE_RANK = {Role.VIEWER: 0, Role.MODERATOR: 1, Role.BROADCASTER: 2}
_BAN_COLUMNS = "stream_id, user_id, banned_by, reason, created_at, expires_at"
_ACTION_COLUMNS = (
    "stream_id, actor_id, kind, created_at, target_user_id, target_comment_id, reason, action_id"
)
_REPORT_COLUMNS = "stream_id, reporter_id, target_user_id, reason, created_at, target_comment_id, report_id"
_FLAG_COLUMNS = (
    "stream_id, comment_id, user_id, payload, reason, score, created_at, status, resolved_by, resolved_at"
)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _ban(row: tuple[Any, ...]) -> Ban:
    return Ban(*row)


def _action(row: tuple[Any, ...]) -> ModAction:
    stream, actor, kind, at, user, comment, reason, action_id = row
    return ModAction(stream, actor, ModActionKind(kind), at, user, comment, reason, action_id)


def _report(row: tuple[Any, ...]) -> UserReport:
    return UserReport(*row)


def _flag(row: tuple[Any, ...]) -> FlaggedComment:
    stream, cid, user, payload, reason, score, at, status, by, resolved_at = row
    return FlaggedComment(stream, cid, user, payload, reason, score, at, FlagStatus(status), by, resolved_at)


def _upgrade_room_modes(conn: Connection) -> None:
    """A file from before schema 3: room_modes.hold_seconds (never written but 0) becomes hold_ms,
    and gains hold. Run before ``ensure_schema`` (whose CREATE TABLE IF NOT EXISTS keeps an old table)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(room_modes)")}
    if "hold_seconds" in columns:
        conn.execute("ALTER TABLE room_modes RENAME COLUMN hold_seconds TO hold_ms")
    if columns and "hold" not in columns:
        conn.execute("ALTER TABLE room_modes ADD COLUMN hold TEXT")


class SqliteMetaStore:
    """Durable metadata in SQLite (see the ``MetaStore`` docstring)."""

    def __init__(self, db: SqliteDatabase, url: str) -> None:
        self._db = db
        self._url = url
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> SqliteMetaStore:
        db = acquire_database(url)
        store = cls(db, url)
        try:
            await db.write(_upgrade_room_modes)
            await db.write(lambda conn: ensure_schema(conn, "meta", _SCHEMA_VERSION, _SCHEMA))
        except BaseException:
            await release_database(db, url)
            raise
        return store

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("meta store is closed")

    async def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        """One statement in its own transaction; returns the affected row count."""
        self._check_open()
        return await self._db.write(lambda conn: conn.execute(sql, args).rowcount)

    async def _one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self._check_open()
        row: tuple[Any, ...] | None = await self._db.read(lambda conn: conn.execute(sql, args).fetchone())
        return row

    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        self._check_open()
        rows: list[tuple[Any, ...]] = await self._db.read(lambda conn: conn.execute(sql, args).fetchall())
        return rows

    # -- streams and users ---------------------------------------------------------------------
    async def upsert_stream(self, stream: StreamInfo) -> None:
        await self._write(
            "INSERT OR REPLACE INTO streams (stream_id, owner_id, title, created_at, ended_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (stream.stream_id, stream.owner_id, stream.title, stream.created_at, stream.ended_at),
        )

    async def get_stream(self, stream_id: str) -> StreamInfo | None:
        row = await self._one(
            "SELECT stream_id, owner_id, title, created_at, ended_at FROM streams WHERE stream_id = ?",
            (stream_id,),
        )
        return None if row is None else StreamInfo(*row)

    async def upsert_user(self, user: UserInfo) -> None:
        await self._write(
            "INSERT OR REPLACE INTO users (user_id, display_name, created_at) VALUES (?, ?, ?)",
            (user.user_id, user.display_name, user.created_at),
        )

    async def get_user(self, user_id: str) -> UserInfo | None:
        row = await self._one(
            "SELECT user_id, display_name, created_at FROM users WHERE user_id = ?", (user_id,)
        )
        return None if row is None else UserInfo(*row)

    async def find_user_by_name(self, name: str) -> UserInfo | None:
        # The id itself, and the two expressions the users_by_*_key indexes hold.
        rows = await self._all(
            "SELECT user_id, display_name, created_at FROM users WHERE user_id = ?"
            " OR lower(user_id) = ? OR lower(replace(display_name, ' ', '')) = ? LIMIT ?",
            (name, name.lower(), handle_key(name), NAME_CANDIDATES),
        )
        return named_user(name, [UserInfo(*row) for row in rows])

    # -- roles ---------------------------------------------------------------------------------
    async def set_role(self, stream_id: str, user_id: str, role: Role) -> None:
        role = Role(role)
        if role is Role.VIEWER:
            await self._write("DELETE FROM roles WHERE stream_id = ? AND user_id = ?", (stream_id, user_id))
        else:
            await self._write(
                "INSERT OR REPLACE INTO roles (stream_id, user_id, role) VALUES (?, ?, ?)",
                (stream_id, user_id, role.value),
            )

    async def get_role(self, stream_id: str, user_id: str) -> Role:
        rows = await self._all(
            """SELECT role FROM roles WHERE user_id = ?1 AND stream_id IN (?2, ?3)
               UNION ALL SELECT 'broadcaster' FROM streams WHERE stream_id = ?2 AND owner_id = ?1""",
            (user_id, stream_id, GLOBAL_STREAM),
        )
        return max((Role(r[0]) for r in rows), key=_ROLE_RANK.__getitem__, default=Role.VIEWER)

    async def list_roles(self, stream_id: str) -> dict[str, Role]:
        rows = await self._all("SELECT user_id, role FROM roles WHERE stream_id = ?", (stream_id,))
        return {user: Role(role) for user, role in rows}

    # -- follows -------------------------------------------------------------------------------
    async def follow(self, channel_id: str, user_id: str, followed_at: float) -> None:
        await self._write(
            "INSERT OR IGNORE INTO follows (channel_id, user_id, followed_at) VALUES (?, ?, ?)",
            (channel_id, user_id, followed_at),
        )

    async def unfollow(self, channel_id: str, user_id: str) -> bool:
        return (
            await self._write(
                "DELETE FROM follows WHERE channel_id = ? AND user_id = ?", (channel_id, user_id)
            )
            > 0
        )

    async def followed_since(self, channel_id: str, user_id: str) -> float | None:
        row = await self._one(
            "SELECT followed_at FROM follows WHERE channel_id = ? AND user_id = ?", (channel_id, user_id)
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
        await self._write(
            """INSERT OR REPLACE INTO room_modes
               (stream_id, slow_seconds, followers_only_min_age_s, comments_off, emote_only, hold_ms, hold)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (
                stream_id,
                modes.slow_seconds,
                modes.followers_only_min_age_s,
                int(modes.comments_off),
                int(modes.emote_only),
                modes.hold_ms,
                modes.hold,
            ),
        )

    async def get_modes(self, stream_id: str) -> RoomModes:
        row = await self._one(
            """SELECT slow_seconds, followers_only_min_age_s, comments_off, emote_only, hold, hold_ms
               FROM room_modes WHERE stream_id = ?""",
            (stream_id,),
        )
        if row is None:
            return RoomModes()
        slow, followers, off, emote, hold, hold_ms = row
        return RoomModes(slow, followers, bool(off), bool(emote), hold, hold_ms)

    # -- pins ----------------------------------------------------------------------------------
    async def set_pin(self, pin: Pin) -> None:
        await self._write(
            """INSERT OR REPLACE INTO pins (stream_id, comment_id, pinned_by, payload, pinned_at, expires_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (pin.stream_id, pin.comment_id, pin.pinned_by, pin.payload, pin.pinned_at, pin.expires_at),
        )

    async def clear_pin(self, stream_id: str) -> bool:
        now = time.time()
        self._check_open()

        def run(conn: Connection) -> bool:
            live = conn.execute(
                "SELECT 1 FROM pins WHERE stream_id = ? AND (expires_at IS NULL OR expires_at > ?)",
                (stream_id, now),
            ).fetchone()
            conn.execute("DELETE FROM pins WHERE stream_id = ?", (stream_id,))
            return live is not None

        return await self._db.write(run)

    async def get_pin(self, stream_id: str, now: float | None = None) -> Pin | None:
        row = await self._one(
            """SELECT stream_id, comment_id, pinned_by, payload, pinned_at, expires_at FROM pins
               WHERE stream_id = ? AND (expires_at IS NULL OR expires_at > ?)""",
            (stream_id, _now(now)),
        )
        return None if row is None else Pin(*row)

    # -- highlights ----------------------------------------------------------------------------
    async def add_highlight(self, stream_id: str, comment_id: int) -> None:
        await self._write(
            """INSERT OR REPLACE INTO highlights (stream_id, comment_id, highlighted_at)
               VALUES (?, ?, ?)""",
            (stream_id, comment_id, time.time()),
        )

    async def list_highlights(self, stream_id: str, limit: int) -> list[int]:
        rows = await self._all(
            """SELECT comment_id FROM (SELECT comment_id, seq FROM highlights WHERE stream_id = ?
                                       ORDER BY seq DESC LIMIT ?) ORDER BY seq""",
            (stream_id, max(0, limit)),
        )
        return [int(r[0]) for r in rows]

    # -- bans ----------------------------------------------------------------------------------
    async def ban(self, ban: Ban) -> None:
        await self._write(
            f"INSERT OR REPLACE INTO bans ({_BAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (ban.stream_id, ban.user_id, ban.banned_by, ban.reason, ban.created_at, ban.expires_at),
        )

    async def unban(self, stream_id: str, user_id: str) -> bool:
        now = time.time()
        self._check_open()

        def run(conn: Connection) -> bool:
            live = conn.execute(
                "SELECT 1 FROM bans WHERE stream_id = ? AND user_id = ?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (stream_id, user_id, now),
            ).fetchone()
            conn.execute("DELETE FROM bans WHERE stream_id = ? AND user_id = ?", (stream_id, user_id))
            return live is not None

        return await self._db.write(run)

    async def get_ban(self, stream_id: str, user_id: str, now: float | None = None) -> Ban | None:
        rows = await self._all(
            f"""SELECT {_BAN_COLUMNS} FROM bans WHERE user_id = ? AND stream_id IN (?, ?)
                AND (expires_at IS NULL OR expires_at > ?)""",
            (user_id, stream_id, GLOBAL_STREAM, _now(now)),
        )
        if not rows:
            return None
        # A permanent ban (no expiry) beats any timeout; otherwise the later expiry wins.
        return _ban(max(rows, key=lambda r: float("inf") if r[5] is None else r[5]))

    async def list_bans(self, stream_id: str, now: float | None = None) -> list[Ban]:
        rows = await self._all(
            f"""SELECT {_BAN_COLUMNS} FROM bans WHERE stream_id = ?
                AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at, user_id""",
            (stream_id, _now(now)),
        )
        return [_ban(r) for r in rows]

    # -- moderation records --------------------------------------------------------------------
    async def record_action(self, action: ModAction) -> int:
        self._check_open()
        args = (
            action.stream_id,
            action.actor_id,
            ModActionKind(action.kind).value,
            action.created_at,
            action.target_user_id,
            action.target_comment_id,
            action.reason,
        )

        def run(conn: Connection) -> int:
            cur = conn.execute(
                """INSERT INTO mod_actions
                   (stream_id, actor_id, kind, created_at, target_user_id, target_comment_id, reason)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                args,
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

        return await self._db.write(run)

    async def list_actions(self, stream_id: str, limit: int, before_id: int | None = None) -> list[ModAction]:
        rows = await self._all(
            f"""SELECT {_ACTION_COLUMNS} FROM mod_actions WHERE stream_id = ? AND action_id < ?
                ORDER BY action_id DESC LIMIT ?""",
            (stream_id, (1 << 63) - 1 if before_id is None else before_id, max(0, limit)),
        )
        return [_action(r) for r in rows]

    async def add_report(self, report: UserReport) -> int:
        self._check_open()
        args = (
            report.stream_id,
            report.reporter_id,
            report.target_user_id,
            report.reason,
            report.created_at,
            report.target_comment_id,
        )

        def run(conn: Connection) -> int:
            cur = conn.execute(
                """INSERT OR IGNORE INTO user_reports
                   (stream_id, reporter_id, target_user_id, reason, created_at, target_comment_id)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                args,
            )
            if cur.rowcount == 1:
                assert cur.lastrowid is not None
                return cur.lastrowid
            row = conn.execute(
                """SELECT report_id FROM user_reports
                   WHERE stream_id = ? AND target_comment_id = ? AND reporter_id = ?""",
                (report.stream_id, report.target_comment_id, report.reporter_id),
            ).fetchone()
            return int(row[0])

        return await self._db.write(run)

    async def list_reports(
        self, stream_id: str, limit: int, before_id: int | None = None
    ) -> list[UserReport]:
        rows = await self._all(
            f"""SELECT {_REPORT_COLUMNS} FROM user_reports WHERE stream_id = ? AND report_id < ?
                ORDER BY report_id DESC LIMIT ?""",
            (stream_id, (1 << 63) - 1 if before_id is None else before_id, max(0, limit)),
        )
        return [_report(r) for r in rows]

    async def count_reports(self, stream_id: str, comment_id: int) -> int:
        row = await self._one(
            "SELECT COUNT(DISTINCT reporter_id) FROM user_reports"
            " WHERE stream_id = ? AND target_comment_id = ?",
            (stream_id, comment_id),
        )
        return 0 if row is None else int(row[0])

    async def flag_comment(self, flagged: FlaggedComment) -> bool:
        f = flagged
        inserted = await self._write(
            f"INSERT OR IGNORE INTO flagged_comments ({_FLAG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
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
            ),
        )
        return inserted == 1

    async def list_flagged(
        self, stream_id: str, limit: int, status: FlagStatus = FlagStatus.PENDING
    ) -> list[FlaggedComment]:
        rows = await self._all(
            f"""SELECT {_FLAG_COLUMNS} FROM flagged_comments WHERE stream_id = ? AND status = ?
                ORDER BY created_at, comment_id LIMIT ?""",
            (stream_id, FlagStatus(status).value, max(0, limit)),
        )
        return [_flag(r) for r in rows]

    async def resolve_flag(
        self, stream_id: str, comment_id: int, status: FlagStatus, resolved_by: str, now: float | None = None
    ) -> bool:
        status = FlagStatus(status)
        if status is FlagStatus.PENDING:
            raise ValueError("resolve_flag needs APPROVED or REJECTED")
        changed = await self._write(
            """UPDATE flagged_comments SET status = ?, resolved_by = ?, resolved_at = ?
               WHERE stream_id = ? AND comment_id = ? AND status = 'pending'""",
            (status.value, resolved_by, _now(now), stream_id, comment_id),
        )
        return changed == 1

    # -- reputation ----------------------------------------------------------------------------
    async def bump_reputation(self, user_id: str, counter: str, delta: int = 1) -> int:
        self._check_open()

        def run(conn: Connection) -> int:
            row = conn.execute(
                """INSERT INTO reputation (user_id, counter, value) VALUES (?, ?, ?)
                   ON CONFLICT (user_id, counter) DO UPDATE SET value = value + excluded.value
                   RETURNING value""",
                (user_id, counter, delta),
            ).fetchone()
            return int(row[0])

        return await self._db.write(run)

    async def get_reputation(self, user_id: str) -> Reputation:
        rows = await self._all("SELECT counter, value FROM reputation WHERE user_id = ?", (user_id,))
        return Reputation(user_id, {name: int(value) for name, value in rows})

    # -- engagement ----------------------------------------------------------------------------
    async def add_engagement(
        self, stream_id: str, reactions: Mapping[str, int], comments: int, likes: Mapping[int, int]
    ) -> None:
        self._check_open()
        rx_rows = [(stream_id, emoji, delta) for emoji, delta in reactions.items() if delta]
        like_rows = [(stream_id, cid, delta) for cid, delta in likes.items() if delta]

        def run(conn: Connection) -> None:
            if comments:
                conn.execute(
                    """INSERT INTO stream_counts (stream_id, comments) VALUES (?, ?)
                       ON CONFLICT (stream_id) DO UPDATE SET comments = comments + excluded.comments""",
                    (stream_id, comments),
                )
            conn.executemany(
                """INSERT INTO stream_reactions (stream_id, emoji, total) VALUES (?, ?, ?)
                   ON CONFLICT (stream_id, emoji) DO UPDATE SET total = total + excluded.total""",
                rx_rows,
            )
            conn.executemany(
                """INSERT INTO comment_likes (stream_id, comment_id, likes) VALUES (?, ?, ?)
                   ON CONFLICT (stream_id, comment_id) DO UPDATE SET likes = likes + excluded.likes""",
                like_rows,
            )

        if comments or rx_rows or like_rows:
            await self._db.write(run)

    async def engagement(self, stream_id: str, like_ids: Sequence[int] | None = None) -> EngagementTotals:
        self._check_open()

        def run(conn: Connection) -> EngagementTotals:
            count = conn.execute("SELECT comments FROM stream_counts WHERE stream_id = ?", (stream_id,))
            row = count.fetchone()
            rx = conn.execute("SELECT emoji, total FROM stream_reactions WHERE stream_id = ?", (stream_id,))
            if like_ids is None:
                liked = conn.execute(
                    "SELECT comment_id, likes FROM comment_likes WHERE stream_id = ?", (stream_id,)
                )
            else:
                # One parameter however many ids (SQLite caps the number of parameters).
                liked = conn.execute(
                    """SELECT comment_id, likes FROM comment_likes WHERE stream_id = ?
                       AND comment_id IN (SELECT value FROM json_each(?))""",
                    (stream_id, json.dumps([int(cid) for cid in like_ids])),
                )
            return EngagementTotals(
                {emoji: int(total) for emoji, total in rx},
                0 if row is None else int(row[0]),
                {int(cid): int(n) for cid, n in liked},
            )

        # A read, but in a write transaction: the three SELECTs see one point in time even with
        # other processes writing the file (``server.workers``).
        return await self._db.write(run)

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_expired(self, now: float | None = None) -> int:
        self._check_open()
        cutoff = _now(now)

        def run(conn: Connection) -> int:
            bans = conn.execute(
                "DELETE FROM bans WHERE expires_at IS NOT NULL AND expires_at <= ?", (cutoff,)
            )
            pins = conn.execute(
                "DELETE FROM pins WHERE expires_at IS NOT NULL AND expires_at <= ?", (cutoff,)
            )
            return bans.rowcount + pins.rowcount

        return await self._db.write(run)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await release_database(self._db, self._url)


if TYPE_CHECKING:
    from livechat.ports.meta import MetaStore

    def _check(b: SqliteMetaStore) -> MetaStore:
        return b
