"""MetaStore contract (livechat.ports.meta), run against every meta backend."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from livechat.backends import open_meta
from livechat.ports import (
    GLOBAL_STREAM,
    Ban,
    ClosedError,
    FlaggedComment,
    FlagStatus,
    MetaStore,
    ModAction,
    ModActionKind,
    Pin,
    Role,
    RoomModes,
    StreamInfo,
    UserInfo,
    UserReport,
)
from livechat.ports.meta import EngagementTotals

NOW = 1_750_000_000.0


async def test_streams_and_users_upsert_and_read(meta: MetaStore) -> None:
    assert await meta.get_stream("s") is None
    stream = StreamInfo("s", owner_id="host", title="Launch", created_at=NOW)
    await meta.upsert_stream(stream)
    assert await meta.get_stream("s") == stream
    ended = StreamInfo("s", owner_id="host", title="Launch (ended)", created_at=NOW, ended_at=NOW + 60)
    await meta.upsert_stream(ended)
    assert await meta.get_stream("s") == ended
    user = UserInfo("u1", "Ada", created_at=NOW)
    await meta.upsert_user(user)
    assert await meta.get_user("u1") == user
    assert await meta.get_user("nobody") is None


async def test_find_user_by_name_resolves_mentions(meta: MetaStore) -> None:
    ada = UserInfo("u-ada", "Ada Lovelace", created_at=NOW)
    await meta.upsert_user(ada)
    await meta.upsert_user(UserInfo("Grace", "Rear Admiral", created_at=NOW))
    await meta.upsert_user(UserInfo("twin-1", "Twin", created_at=NOW))
    await meta.upsert_user(UserInfo("twin-2", "twin", created_at=NOW))
    await meta.upsert_user(UserInfo("ed", "Someone Else", created_at=NOW))
    await meta.upsert_user(UserInfo("u-ed", "Ed", created_at=NOW))
    # A display name, ignoring case and spaces (mentions are lower-cased handles).
    assert await meta.find_user_by_name("adalovelace") == ada
    assert await meta.find_user_by_name("AdaLovelace") == ada
    # The id, ignoring case.
    found = await meta.find_user_by_name("grace")
    assert found is not None and found.user_id == "Grace"
    # An id beats another user's display name.
    found = await meta.find_user_by_name("ed")
    assert found is not None and found.user_id == "ed"
    # Two users share the display name: nobody (never the wrong person).
    assert await meta.find_user_by_name("twin") is None
    assert await meta.find_user_by_name("nobody") is None
    assert await meta.find_user_by_name("ada") is None  # a prefix is not a match


async def test_roles_owner_global_and_per_stream(meta: MetaStore) -> None:
    await meta.upsert_stream(StreamInfo("s", owner_id="host", created_at=NOW))
    assert await meta.get_role("s", "viewer-1") is Role.VIEWER
    assert await meta.get_role("s", "host") is Role.BROADCASTER
    await meta.set_role("s", "mod-1", Role.MODERATOR)
    assert await meta.get_role("s", "mod-1") is Role.MODERATOR
    assert await meta.get_role("other", "mod-1") is Role.VIEWER
    await meta.set_role(GLOBAL_STREAM, "staff", Role.MODERATOR)
    assert await meta.get_role("s", "staff") is Role.MODERATOR
    assert await meta.get_role("any-stream", "staff") is Role.MODERATOR
    # The stronger role wins: a global moderator who owns the stream is its broadcaster.
    await meta.set_role(GLOBAL_STREAM, "host", Role.MODERATOR)
    assert await meta.get_role("s", "host") is Role.BROADCASTER
    assert await meta.list_roles("s") == {"mod-1": Role.MODERATOR}
    await meta.set_role("s", "mod-1", Role.VIEWER)
    assert await meta.get_role("s", "mod-1") is Role.VIEWER
    assert await meta.list_roles("s") == {}


async def test_follow_keeps_the_first_follow_time(meta: MetaStore) -> None:
    assert await meta.followed_since("host", "fan") is None
    await meta.follow("host", "fan", NOW - 3600)
    await meta.follow("host", "fan", NOW)  # re-follow must not reset the follow age
    assert await meta.followed_since("host", "fan") == NOW - 3600
    assert await meta.followed_since("other-host", "fan") is None
    assert await meta.unfollow("host", "fan") is True
    assert await meta.unfollow("host", "fan") is False
    await meta.follow("host", "fan", NOW)
    assert await meta.followed_since("host", "fan") == NOW


async def test_room_modes_default_open_and_round_trip(meta: MetaStore) -> None:
    assert await meta.get_modes("s") == RoomModes()
    modes = RoomModes(
        slow_seconds=30,
        followers_only_min_age_s=600,
        comments_off=True,
        emote_only=True,
        hold="closed",
        hold_ms=400,
    )
    await meta.set_modes("s", modes)
    assert await meta.get_modes("s") == modes
    followers_any_age = RoomModes(followers_only_min_age_s=0)
    await meta.set_modes("s", followers_any_age)
    assert await meta.get_modes("s") == followers_any_age
    with pytest.raises(ValueError):
        await meta.set_modes("s", RoomModes(slow_seconds=-1))
    with pytest.raises(ValueError):
        await meta.set_modes("s", RoomModes(hold="maybe"))
    assert await meta.get_modes("s") == followers_any_age


async def test_one_pin_per_stream_with_expiry(meta: MetaStore) -> None:
    assert await meta.get_pin("s") is None
    first = Pin("s", 1, "mod", b"first", pinned_at=NOW)
    await meta.set_pin(first)
    assert await meta.get_pin("s", now=NOW + 10**6) == first
    second = Pin("s", 2, "mod", b"second", pinned_at=NOW + 1, expires_at=NOW + 60)
    await meta.set_pin(second)
    assert await meta.get_pin("s", now=NOW + 30) == second
    assert await meta.get_pin("s", now=NOW + 60) is None
    assert await meta.clear_pin("s") is False  # expired (by the real clock) counts as absent
    await meta.set_pin(Pin("s", 3, "mod", b"third", pinned_at=time.time()))
    assert await meta.clear_pin("s") is True
    assert await meta.get_pin("s") is None


async def test_highlights_keep_the_newest_in_order(meta: MetaStore) -> None:
    assert await meta.list_highlights("s", 5) == []
    for comment_id in (11, 12, 13):
        await meta.add_highlight("s", comment_id)
    await meta.add_highlight("other", 99)
    assert await meta.list_highlights("s", 5) == [11, 12, 13]
    assert await meta.list_highlights("s", 2) == [12, 13]  # the newest two, oldest first
    await meta.add_highlight("s", 11)  # highlighted again: kept once, now the newest
    assert await meta.list_highlights("s", 5) == [12, 13, 11]
    assert await meta.list_highlights("other", 5) == [99]


async def test_bans_timeouts_and_global_bans(meta: MetaStore) -> None:
    assert await meta.get_ban("s", "troll", now=NOW) is None
    timeout = Ban("s", "troll", "mod", "spam", created_at=NOW, expires_at=NOW + 600)
    await meta.ban(timeout)
    assert await meta.get_ban("s", "troll", now=NOW + 1) == timeout
    assert await meta.get_ban("s", "troll", now=NOW + 600) is None
    assert await meta.get_ban("other", "troll", now=NOW + 1) is None
    assert await meta.list_bans("s", now=NOW + 1) == [timeout]
    assert await meta.list_bans("s", now=NOW + 601) == []

    # A site-wide timeout ending later wins over the stream's; a permanent ban beats both.
    global_timeout = Ban(GLOBAL_STREAM, "troll", "staff", "abuse", created_at=NOW, expires_at=NOW + 3600)
    await meta.ban(global_timeout)
    assert await meta.get_ban("s", "troll", now=NOW + 1) == global_timeout
    assert await meta.get_ban("anywhere", "troll", now=NOW + 1) == global_timeout
    permanent = Ban("s", "troll", "host", "enough", created_at=NOW + 2)
    await meta.ban(permanent)  # replaces the stream timeout
    assert await meta.get_ban("s", "troll", now=NOW + 10**7) == permanent

    assert await meta.unban("s", "troll") is True
    assert await meta.unban("s", "troll") is False
    await meta.unban(GLOBAL_STREAM, "troll")
    assert await meta.get_ban("s", "troll", now=NOW + 1) is None


async def test_unban_of_an_expired_timeout_reports_false(meta: MetaStore) -> None:
    await meta.ban(Ban("s", "u", "mod", "", created_at=NOW, expires_at=time.time() - 1))
    assert await meta.unban("s", "u") is False


async def test_purge_expired_deletes_only_expired_rows(meta: MetaStore) -> None:
    await meta.ban(Ban("s", "a", "mod", "", created_at=NOW, expires_at=NOW + 10))
    await meta.ban(Ban("s", "b", "mod", "", created_at=NOW, expires_at=NOW + 1000))
    await meta.ban(Ban("s", "c", "mod", "", created_at=NOW))
    await meta.set_pin(Pin("s", 1, "mod", b"p", pinned_at=NOW, expires_at=NOW + 10))
    assert await meta.purge_expired(now=NOW + 100) == 2
    assert [b.user_id for b in await meta.list_bans("s", now=NOW)] == ["b", "c"]
    assert await meta.purge_expired(now=NOW + 100) == 0


async def test_moderation_actions_page_newest_first(meta: MetaStore) -> None:
    ids = []
    for i in range(25):
        action = ModAction(
            "s", "mod", ModActionKind.DELETE_COMMENT, NOW + i, target_comment_id=i, reason=f"r{i}"
        )
        ids.append(await meta.record_action(action))
    await meta.record_action(ModAction("other", "mod", ModActionKind.BAN, NOW, target_user_id="x"))
    assert ids == sorted(ids) and len(set(ids)) == 25
    first = await meta.list_actions("s", 10)
    assert [a.action_id for a in first] == ids[::-1][:10]
    assert first[0] == ModAction(
        "s",
        "mod",
        ModActionKind.DELETE_COMMENT,
        NOW + 24,
        target_comment_id=24,
        reason="r24",
        action_id=ids[-1],
    )
    rest = await meta.list_actions("s", 100, before_id=first[-1].action_id)
    assert [a.action_id for a in rest] == ids[::-1][10:]
    [ban] = await meta.list_actions("other", 10)
    assert ban.kind is ModActionKind.BAN and ban.target_user_id == "x"


async def test_reports_are_counted_once_per_reporter(meta: MetaStore) -> None:
    r1 = await meta.add_report(UserReport("s", "alice", "troll", "spam", NOW, target_comment_id=7))
    again = await meta.add_report(UserReport("s", "alice", "troll", "spam!!", NOW + 1, target_comment_id=7))
    assert again == r1
    await meta.add_report(UserReport("s", "bob", "troll", "rude", NOW + 2, target_comment_id=7))
    await meta.add_report(UserReport("s", "bob", "troll", "profile", NOW + 3))  # a user, no comment
    await meta.add_report(UserReport("s", "bob", "troll", "profile again", NOW + 4))
    assert await meta.count_reports("s", 7) == 2
    assert await meta.count_reports("s", 8) == 0
    reports = await meta.list_reports("s", 10)
    assert [r.reason for r in reports] == ["profile again", "profile", "rude", "spam"]
    assert reports[-1].report_id == r1
    older = await meta.list_reports("s", 10, before_id=reports[1].report_id)
    assert [r.reason for r in older] == ["rude", "spam"]


async def test_flag_queue_resolves_once(meta: MetaStore) -> None:
    flagged = [FlaggedComment("s", i, "u", f"c{i}".encode(), "toxicity", 0.9, NOW + i) for i in range(3)]
    for f in flagged:
        assert await meta.flag_comment(f) is True
    assert await meta.flag_comment(flagged[0]) is False
    assert await meta.list_flagged("s", 10) == flagged
    assert await meta.resolve_flag("s", 1, FlagStatus.REJECTED, "mod-a", now=NOW + 50) is True
    assert await meta.resolve_flag("s", 1, FlagStatus.APPROVED, "mod-b", now=NOW + 51) is False
    assert [f.comment_id for f in await meta.list_flagged("s", 10)] == [0, 2]
    [rejected] = await meta.list_flagged("s", 10, FlagStatus.REJECTED)
    assert (rejected.resolved_by, rejected.resolved_at, rejected.status) == (
        "mod-a",
        NOW + 50,
        FlagStatus.REJECTED,
    )
    with pytest.raises(ValueError):
        await meta.resolve_flag("s", 2, FlagStatus.PENDING, "mod")


async def test_two_moderators_resolving_at_once_only_one_wins(meta: MetaStore) -> None:
    await meta.flag_comment(FlaggedComment("s", 1, "u", b"c", "rule", -1, NOW))
    results = await asyncio.gather(
        *(meta.resolve_flag("s", 1, FlagStatus.APPROVED, f"mod-{i}") for i in range(10))
    )
    assert sorted(results) == [False] * 9 + [True]


async def test_reputation_counters_are_atomic(meta: MetaStore) -> None:
    assert (await meta.get_reputation("u")).get("accepted") == 0
    results = await asyncio.gather(*(meta.bump_reputation("u", "accepted") for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await meta.bump_reputation("u", "rejected", 3) == 3
    assert await meta.bump_reputation("u", "rejected", -1) == 2
    rep = await meta.get_reputation("u")
    assert rep.counters == {"accepted": 100, "rejected": 2}


async def test_engagement_adds_deltas_and_reads_totals(meta: MetaStore) -> None:
    assert await meta.engagement("s") == EngagementTotals({}, 0, {})
    await meta.add_engagement("s", {"heart": 3, "fire": 1}, 5, {101: 2, 102: 1})
    await meta.add_engagement("s", {"heart": 2, "fire": 0}, -1, {101: -1, 103: 4})
    await meta.add_engagement("s", {}, 0, {})  # nothing to add: a no-op
    await meta.add_engagement("other", {"heart": 7}, 9, {101: 9})  # same comment id, other stream
    totals = await meta.engagement("s")
    assert totals == EngagementTotals({"heart": 5, "fire": 1}, 4, {101: 1, 102: 1, 103: 4})
    assert (await meta.engagement("s", [101, 103, 999])).likes == {101: 1, 103: 4}
    assert (await meta.engagement("s", [])).likes == {}
    # Comment ids are 64-bit (a millisecond timestamp above a node and sequence).
    big = (1 << 62) + 12345
    await meta.add_engagement("s", {}, 0, {big: 1})
    assert (await meta.engagement("s", [big])).likes == {big: 1}
    # Many ids in one read (above SQLite's parameter cap, were they parameters).
    many = {i: 1 for i in range(1, 40_001)}
    await meta.add_engagement("bulk", {}, 0, many)
    assert (await meta.engagement("bulk", list(many))).likes == many


async def test_engagement_adds_from_many_writers_sum(meta_url: str) -> None:
    """Two edges adding at once: nothing is overwritten, every delta counts once."""
    a, b = await open_meta(meta_url), await open_meta(meta_url)
    try:
        adds = [s.add_engagement("s", {"heart": 1}, 1, {7: 1}) for s in (a, b) for _ in range(40)]
        await asyncio.gather(*adds)
        assert await b.engagement("s", [7]) == EngagementTotals({"heart": 80}, 80, {7: 80})
    finally:
        await a.aclose()
        await b.aclose()


async def test_two_stores_on_one_url_act_as_one(meta_url: str) -> None:
    """Two edges on one store: counters add up and a flag resolves once across both."""
    a, b = await open_meta(meta_url), await open_meta(meta_url)
    try:
        await a.flag_comment(FlaggedComment("s", 1, "u", b"c", "rule", -1, NOW))
        bumps = [s.bump_reputation("u", "strikes") for s in (a, b) for _ in range(50)]
        resolves = [s.resolve_flag("s", 1, FlagStatus.REJECTED, f"mod-{i}") for i, s in enumerate((a, b) * 5)]
        results = await asyncio.gather(*bumps, *resolves)
        assert sorted(results[:100]) == list(range(1, 101))
        assert sorted(results[100:]) == [False] * 9 + [True]
        await a.follow("host", "fan", NOW - 60)
        await b.follow("host", "fan", NOW)
        assert await b.followed_since("host", "fan") == NOW - 60
        await b.ban(Ban(GLOBAL_STREAM, "troll", "staff", "", created_at=NOW))
        assert await a.get_ban("s", "troll") is not None
    finally:
        await a.aclose()
        await b.aclose()


async def test_everything_survives_reopen(meta_url: str) -> None:
    store = await open_meta(meta_url)
    await store.upsert_stream(StreamInfo("s", "host", created_at=NOW))
    await store.set_role("s", "mod", Role.MODERATOR)
    await store.set_modes("s", RoomModes(slow_seconds=5))
    await store.ban(Ban("s", "troll", "mod", "", created_at=NOW))
    await store.follow("host", "fan", NOW)
    action_id = await store.record_action(ModAction("s", "mod", ModActionKind.SET_MODES, NOW))
    await store.bump_reputation("fan", "accepted", 4)
    await store.add_highlight("s", 42)
    await store.add_engagement("s", {"clap": 2}, 3, {42: 1})
    await store.aclose()

    store = await open_meta(meta_url)
    try:
        assert await store.get_role("s", "mod") is Role.MODERATOR
        assert await store.get_role("s", "host") is Role.BROADCASTER
        assert await store.get_modes("s") == RoomModes(slow_seconds=5)
        assert (await store.get_ban("s", "troll")) is not None
        assert await store.followed_since("host", "fan") == NOW
        assert [a.action_id for a in await store.list_actions("s", 5)] == [action_id]
        assert (await store.get_reputation("fan")).get("accepted") == 4
        assert await store.list_highlights("s", 5) == [42]
        assert await store.engagement("s", [42]) == EngagementTotals({"clap": 2}, 3, {42: 1})
        assert await store.record_action(ModAction("s", "mod", ModActionKind.PIN, NOW)) > action_id
    finally:
        await store.aclose()


async def test_closed_store_refuses_calls(meta_url: str) -> None:
    store = await open_meta(meta_url)
    await store.aclose()
    await store.aclose()
    with pytest.raises(ClosedError):
        await store.get_modes("s")


async def test_sqlite_schema_3_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file written by schema 3 (before engagement totals) opens, gains the tables, keeps its rows."""
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE lc_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
           INSERT INTO lc_schema VALUES ('meta', 3);
           CREATE TABLE highlights (
               seq INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, comment_id INTEGER NOT NULL,
               highlighted_at REAL NOT NULL);
           INSERT INTO highlights (stream_id, comment_id, highlighted_at) VALUES ('s', 42, 1.0);"""
    )
    conn.commit()
    conn.close()
    store = await open_meta(f"sqlite://{path}")
    try:
        assert await store.list_highlights("s", 5) == [42]
        assert await store.engagement("s") == EngagementTotals({}, 0, {})
        await store.add_engagement("s", {"heart": 1}, 1, {42: 1})
        assert await store.engagement("s") == EngagementTotals({"heart": 1}, 1, {42: 1})
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM lc_schema WHERE component = 'meta'").fetchone() == (4,)
    finally:
        conn.close()
