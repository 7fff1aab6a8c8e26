"""Posting through ChatService on real embedded storage: acks, fan-out, every refusal."""

from __future__ import annotations

import dataclasses
from typing import Any

from chat_harness import Harness, chat_config, frame, unpack
from livechat.config import LimitsConfig, ModerationConfig, RoomConfig
from livechat.ports.meta import Ban, RoomModes, StreamInfo, UserInfo
from livechat.protocol import CloseCode, EventKind


def codes(messages: list[Any]) -> list[str]:
    return [m["code"] for m in messages if m["t"] == "err"]


def make_hot(h: Harness, stream: str, per_second: float) -> None:
    """Drive the stream's measured rate to ``per_second`` (as if that many comments arrived)."""
    sampler = h.chat.context.sampler
    start = h.clock.monotonic()
    for i in range(9):
        sampler.observe(stream, start + i * 0.25, int(per_second * 0.25))
    h.clock.advance(2.25)
    sampler.tier(stream, h.clock.monotonic())


async def test_join_gives_snapshot_and_subscribes(make_harness: Any) -> None:
    h: Harness = await make_harness()
    conn = h.connect("u1", name="Ann")
    snap = await h.join(conn, rid=5)
    assert snap["t"] == "snapshot" and snap["rid"] == 5 and snap["s"] == "s1"
    assert snap["role"] == "viewer" and snap["recent"] == [] and snap["pin"] is None
    assert snap["modes"] == {"slow": 0, "fo": None, "off": False}
    assert snap["tier"] == {"lvl": 0, "pct": 100.0, "rate": 0.0}
    assert snap["n"] == {"c": 0, "v": 1}
    assert "gap" not in snap
    assert conn in h.outbox.subscribers["s1"]


async def test_post_is_stored_acked_and_published(make_harness: Any) -> None:
    h: Harness = await make_harness()
    author = h.connect("u1", name="Ann")
    await h.join(author)
    await h.backends.meta.upsert_user(UserInfo("bob", "Bob"))  # m lists users that exist
    parent = await h.post(author, "a question", cmid="c-0")
    ack = await h.post(author, "hello 🌍 @bob @nobody", cmid="c-1", rid=9, reply_to=parent["id"])
    assert ack["t"] == "ack" and ack["cmid"] == "c-1" and ack["rid"] == 9 and "dup" not in ack
    [_, event] = h.outbox.events("s1")
    assert event == {
        "k": "c",
        "id": ack["id"],
        "u": "u1",
        "n": "Ann",
        "x": "hello 🌍 @bob @nobody",
        "ts": ack["ts"],
        "r": parent["id"],
        "m": ["bob"],
    }
    page = await h.backends.history.page("s1", None, 10)
    assert [c.comment_id for c in page] == [ack["id"], parent["id"]]
    records = await h.backends.log.read("s1", -1, 10)
    assert len(records) == 2 and unpack(records[1].payload)["id"] == ack["id"]
    # A later joiner sees it in the snapshot.
    other = h.connect("u2")
    assert [c["id"] for c in (await h.join(other))["recent"]] == [parent["id"], ack["id"]]


async def test_repost_with_same_cmid_returns_first_ack(make_harness: Any) -> None:
    h: Harness = await make_harness()
    conn = h.connect("u1")
    await h.join(conn)
    first = await h.post(conn, "once", cmid="same")
    again = await h.post(conn, "once", cmid="same", rid=3)
    assert again["dup"] is True and again["id"] == first["id"] and again["rid"] == 3
    # Reposts inside one batch: both acked with the same id, stored once.
    await h.chat.on_messages(
        [
            (conn, frame("post", stream="s1", text="x", cmid="batch")),
            (conn, frame("post", stream="s1", text="x", cmid="batch")),
        ]
    )
    await h.chat.flush()
    acks = h.outbox.take(conn)
    assert acks[0]["id"] == acks[1]["id"] and acks[1]["dup"] is True
    assert len(await h.backends.log.read("s1", -1, 10)) == 2
    assert len(h.outbox.events("s1")) == 2


async def test_repost_after_cache_loss_is_deduplicated_by_the_log(make_harness: Any) -> None:
    h: Harness = await make_harness()
    conn = h.connect("u1")
    await h.join(conn)
    first = await h.post(conn, "once", cmid="c")
    # A second edge process (fresh cache) on the same log sees the repost as a duplicate.
    h2: Harness = await make_harness()
    conn2 = h2.connect("u1")
    await h2.join(conn2)
    again = await h2.post(conn2, "once", cmid="c")
    assert again["dup"] is True and again["id"] == first["id"]
    assert h2.outbox.events("s1") == []


async def test_rate_limit_breach(make_harness: Any) -> None:
    h: Harness = await make_harness()
    conn = h.connect("u1")
    await h.join(conn)
    for i in range(10):
        assert (await h.post(conn, f"m{i}"))["t"] == "ack"
    err = await h.post(conn, "one too many", cmid="c11")
    assert err["code"] == "rate_limited" and 5900 <= err["retry_ms"] <= 6000 and err["cmid"] == "c11"
    h.clock.advance(6.0)
    assert (await h.post(conn, "again"))["t"] == "ack"
    # Moderators have a higher limit.
    mod = h.connect("m1", role="moderator")
    await h.join(mod)
    assert all([(await h.post(mod, f"m{i}"))["t"] == "ack" for i in range(30)])


async def test_anonymous_is_read_only_and_must_join(make_harness: Any) -> None:
    h: Harness = await make_harness()
    anon = h.connect()
    assert (await h.post(anon, "hi"))["code"] == "not_joined"
    snap = await h.join(anon)
    assert snap["t"] == "snapshot"
    assert (await h.post(anon, "hi"))["code"] == "read_only"
    await h.send(anon, "react", stream="s1", emoji="heart")
    assert h.outbox.take(anon)[-1]["code"] == "read_only"


async def test_banned_and_timed_out_users_cannot_post(make_harness: Any) -> None:
    h: Harness = await make_harness()
    now = h.clock.time()
    await h.backends.meta.ban(Ban("s1", "bad", "mod", "spam", now))
    await h.backends.meta.ban(Ban("s1", "brief", "mod", "", now, now + 60))
    bad = h.connect("bad")
    await h.join(bad)
    assert (await h.post(bad, "hi"))["code"] == "banned"
    brief = h.connect("brief")
    await h.join(brief)
    err = await h.post(brief, "hi")
    assert err["code"] == "timed_out" and err["until"] == int((now + 60) * 1000)
    h.clock.advance(61)
    assert (await h.post(brief, "hi"))["t"] == "ack"


async def test_room_modes_refuse_viewers_but_not_moderators(make_harness: Any) -> None:
    h: Harness = await make_harness()
    await h.backends.meta.set_modes("s1", RoomModes(comments_off=True))
    viewer = h.connect("v")
    await h.join(viewer)
    assert (await h.post(viewer, "hi"))["code"] == "comments_off"
    owner = h.connect("owner", streams={"s1": "broadcaster"})
    await h.join(owner)
    assert (await h.post(owner, "still here"))["t"] == "ack"


async def test_slow_mode(make_harness: Any) -> None:
    h: Harness = await make_harness()
    await h.backends.meta.set_modes("s1", RoomModes(slow_seconds=30))
    conn = h.connect("u1")
    await h.join(conn)
    assert (await h.post(conn, "first"))["t"] == "ack"
    h.clock.advance(10)
    err = await h.post(conn, "second")
    assert err["code"] == "slow_mode" and err["retry_ms"] == 20_000
    h.clock.advance(20)
    assert (await h.post(conn, "third"))["t"] == "ack"


async def test_followers_only_checks_follow_age(make_harness: Any) -> None:
    h: Harness = await make_harness()
    meta = h.backends.meta
    await meta.upsert_stream(StreamInfo("s1", owner_id="chan"))
    await meta.set_modes("s1", RoomModes(followers_only_min_age_s=600))
    now = h.clock.time()
    await meta.follow("chan", "old", now - 3600)
    await meta.follow("chan", "new", now - 60)
    for user, expected in (("old", "ack"), ("new", "followers_only"), ("stranger", "followers_only")):
        conn = h.connect(user)
        await h.join(conn)
        reply = await h.post(conn, "hi")
        assert reply.get("code", reply["t"]) == expected, user
    owner = h.connect("chan")
    snap = await h.join(owner)
    assert snap["role"] == "broadcaster"  # the stream's owner, from the MetaStore
    assert (await h.post(owner, "hi"))["t"] == "ack"


async def test_stream_admission_cap(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(limits=LimitsConfig(stream_comments_per_second=3)))
    conns = [h.connect(f"u{i}") for i in range(5)]
    for conn in conns:
        await h.join(conn)
    replies = [await h.post(conn, "hi") for conn in conns]
    assert [r.get("code", r["t"]) for r in replies] == ["ack"] * 3 + ["stream_busy"] * 2


async def test_block_list_rejects_and_strikes(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(moderation=ModerationConfig(blocked_terms=("badword",))))
    conn = h.connect("u1")
    await h.join(conn)
    err = await h.post(conn, "you B 4 D W 0 R D")
    assert err["code"] == "rejected"
    assert h.outbox.events("s1") == [] and await h.backends.log.read("s1", -1, 10) == []
    await h.chat.context.background.drain()
    assert (await h.backends.meta.get_reputation("u1")).get("strikes") == 1
    # Moderators are exempt from the rules stage.
    mod = h.connect("m", role="moderator")
    await h.join(mod)
    assert (await h.post(mod, "quoting: badword"))["t"] == "ack"


async def test_repeat_offender_is_shadow_banned(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(moderation=ModerationConfig(blocked_terms=("badword",))))
    await h.backends.meta.bump_reputation("troll", "strikes", 3)
    troll = h.connect("troll")
    await h.join(troll)
    watcher = h.connect("w")
    await h.join(watcher)
    ack = await h.post(troll, "badword!!")
    assert ack["t"] == "ack"  # the author cannot tell
    assert h.outbox.events("s1") == []  # nobody else sees it
    [direct] = [m for m in h.outbox.messages(troll) if m["t"] == "ev"]
    assert direct["e"][0]["id"] == ack["id"]
    assert await h.backends.history.page("s1", None, 10) == []
    # Not in the log either: history is rebuilt from the log after a crash (and a shared log is
    # delivered by every edge), so a shadow-banned comment there would reach everyone.
    assert await h.backends.log.read("s1", -1, 10) == []
    assert [c["id"] for c in (await h.join(watcher))["recent"]] == []


async def test_sampling_keeps_own_and_mentions_but_stores_everything(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(limits=LimitsConfig(comments_per_minute_viewer=0)))
    authors = [h.connect(f"a{i}") for i in range(4)]
    bob = h.connect("bob", name="Bob")
    for conn in [*authors, bob]:
        await h.join(conn)
    make_hot(h, "s1", 60_000)  # tier 3: 5 %
    acks = []
    for i in range(200):
        conn = authors[i % 4]
        acks.append(await h.post(conn, f"hey @Bob {i}" if i % 2 else f"plain {i}"))
    published = {e["id"] for e in h.outbox.events("s1")}
    assert 0 < len(published) < 40  # ~5 % of 200
    stored = await h.backends.history.page("s1", None, 300)
    assert len(stored) == 200  # every comment is stored
    # Bob gets every comment mentioning him: in the tick or directly.
    direct_to_bob = {e["id"] for m in h.outbox.messages(bob) if m["t"] == "ev" for e in m["e"]}
    mentioning = {a["id"] for i, a in enumerate(acks) if i % 2}
    assert mentioning <= direct_to_bob | published
    assert direct_to_bob.isdisjoint(published)
    # Each author sees all of their own comments.
    for j, conn in enumerate(authors):
        own = {a["id"] for i, a in enumerate(acks) if i % 4 == j}
        direct = {e["id"] for m in h.outbox.messages(conn) if m["t"] == "ev" for e in m["e"]}
        assert own <= direct | published
    # The tier reaches clients in the state slot.
    await h.chat.housekeeping()
    tier = h.outbox.state_value("s1", "tier")
    assert tier["lvl"] == 3 and tier["pct"] == 5.0


async def test_storage_failure_is_unavailable_and_loses_nothing(make_harness: Any) -> None:
    h: Harness = await make_harness()
    conn = h.connect("u1")
    await h.join(conn)
    await h.backends.log.aclose()
    err = await h.post(conn, "lost?", cmid="retry-me")
    assert err["code"] == "unavailable" and err["cmid"] == "retry-me"
    assert h.outbox.events("s1") == []


async def test_bad_input_gets_errors_and_too_many_close(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(limits=LimitsConfig(max_errors_per_minute=5)))
    conn = h.connect("u1")
    await h.chat.on_messages([(conn, b"\xc1"), (conn, "text"), (conn, frame("nope")), (conn, b"\x91\x01")])
    assert codes(h.outbox.take(conn)) == ["bad_msgpack", "bad_frame", "unknown_op", "bad_frame"]
    await h.send(conn, "post", stream="s1", text="x" * 501, cmid="c")
    assert codes(h.outbox.take(conn)) == ["text_too_long"]
    assert conn not in h.outbox.closed
    await h.send(conn, "ping", rid="x")
    assert h.outbox.closed[conn][0] == CloseCode.TOO_MANY_ERRORS


async def test_auth_failures_close_with_their_codes(make_harness: Any) -> None:
    from chat_harness import make_token

    h: Harness = await make_harness(
        chat_config(auth=dataclasses.replace(chat_config().auth, allow_anonymous=False))
    )
    assert not h.chat.on_open(1, "/live", None)
    assert h.outbox.closed[1][0] == CloseCode.AUTH_REQUIRED and h.outbox.last(1)["code"] == "auth_required"
    assert not h.chat.on_open(2, f"/live?token={make_token('u', ttl=-300)}", None)
    assert h.outbox.closed[2][0] == CloseCode.AUTH_EXPIRED
    assert not h.chat.on_open(3, "/live", "Bearer not.a.jwt")
    assert h.outbox.closed[3][0] == CloseCode.AUTH_INVALID
    # Messages from a refused connection are ignored.
    await h.chat.on_messages([(3, frame("join", stream="s1"))])
    assert h.outbox.take(3)[-1]["code"] == "auth_invalid"


async def test_reconnect_recovers_missed_comments_or_signals_gap(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(rooms=RoomConfig(recover_max=5)))
    author = h.connect("a", role="broadcaster")
    await h.join(author)
    first = await h.post(author, "seen")
    missed = [await h.post(author, f"missed {i}") for i in range(3)]
    viewer = h.connect("v")
    snap = await h.join(viewer, last_id=first["id"])
    assert snap["gap"] is False
    assert [c["id"] for c in snap["missed"]] == [m["id"] for m in missed]
    for i in range(6):
        await h.post(author, f"more {i}")
    assert (await h.join(h.connect("v2"), last_id=first["id"]))["gap"] is True
    # A fresh process (empty memory) recovers from the history store.
    h2: Harness = await make_harness(chat_config(rooms=RoomConfig(recover_max=50, recent_buffer=2)))
    snap = await h2.join(h2.connect("v"), last_id=first["id"])
    assert snap["gap"] is False and len(snap["missed"]) == 9


async def test_history_pages(make_harness: Any) -> None:
    h: Harness = await make_harness()
    author = h.connect("a", role="broadcaster")
    await h.join(author)
    ids = [(await h.post(author, f"c{i}"))["id"] for i in range(25)]
    await h.send(author, "history", stream="s1", limit=10, rid=1)
    page = h.outbox.take(author)[-1]
    assert page["t"] == "history" and page["more"] is True
    assert [c["id"] for c in page["items"]] == ids[::-1][:10]
    await h.send(author, "history", stream="s1", before=page["items"][-1]["id"], limit=20)
    page2 = h.outbox.take(author)[-1]
    assert [c["id"] for c in page2["items"]] == ids[::-1][10:] and page2["more"] is False


async def test_ping_leave_and_stream_limit(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(limits=LimitsConfig(max_streams_per_connection=2)))
    conn = h.connect("u1")
    await h.send(conn, "ping", rid=4)
    pong = h.outbox.take(conn)[-1]
    assert pong["t"] == "pong" and pong["rid"] == 4
    await h.join(conn, "a")
    await h.join(conn, "b")
    await h.send(conn, "join", stream="c")
    assert h.outbox.take(conn)[-1]["code"] == "too_many_streams"
    await h.send(conn, "leave", stream="a", rid=8)
    assert h.outbox.take(conn)[-1] == {"t": "ok", "op": "leave", "rid": 8}
    assert conn not in h.outbox.subscribers["a"]
    await h.send(conn, "leave", stream="a")
    assert h.outbox.take(conn)[-1]["code"] == "not_joined"
    assert (await h.join(conn, "c"))["t"] == "snapshot"


async def test_on_edge_events_adapts_drain_batches(make_harness: Any) -> None:
    from chat_harness import make_token

    h: Harness = await make_harness()
    events = [
        (0, 7, (f"/live?token={make_token('u7')}", "127.0.0.1:5000", None)),
        (1, 7, frame("join", stream="s1")),
        (1, 7, frame("post", stream="s1", text="via drain", cmid="d1")),
        (2, 7, (1000, "")),
    ]
    await h.chat.on_edge_events(events, open_kind=0, message_kind=1, close_kind=2)
    await h.chat.flush()
    kinds = [m["t"] for m in h.outbox.messages(7)]
    assert kinds == ["snapshot", "ack"]
    assert h.chat.context.sessions.get(7) is None
    assert h.outbox.events("s1")[0]["x"] == "via drain"
    assert h.outbox.events("s1")[0]["k"] == EventKind.COMMENT


async def test_a_failing_handler_costs_one_reply_not_the_batch(make_harness: Any) -> None:
    h: Harness = await make_harness()
    conn = h.connect("u1")
    await h.join(conn)

    async def broken(*args: Any) -> None:
        raise RuntimeError("bug")

    h.chat._membership.history = broken  # type: ignore[method-assign]
    await h.chat.on_messages(
        [
            (conn, frame("history", stream="s1", rid=1)),
            (conn, frame("post", stream="s1", text="after", cmid="c")),
        ]
    )
    await h.chat.flush()
    replies = h.outbox.take(conn)
    assert replies[0] == {"t": "err", "code": "internal", "msg": "internal error", "rid": 1}
    assert replies[1]["t"] == "ack"


async def test_a_run_of_posts_meets_every_check_in_order(make_harness: Any) -> None:
    """Posts of one batch are admitted in phases; each still gets the answer it would get alone."""
    h: Harness = await make_harness()
    await h.backends.meta.set_modes("slow", RoomModes(slow_seconds=60))
    viewer = h.connect("v")
    mod = h.connect("m", role="moderator")
    for conn in (viewer, mod):
        await h.join(conn)
        await h.join(conn, "slow")
    batch = [(viewer, frame("post", stream="s1", text=f"v{i}", cmid=f"v{i}", rid=i)) for i in range(12)]
    batch += [(viewer, frame("post", stream="slow", text="first", cmid="s-1", rid=100))]
    batch += [
        (mod, frame("post", stream="slow", text=f"mod{i}", cmid=f"m{i}", rid=200 + i)) for i in range(3)
    ]
    batch += [(viewer, frame("post", stream="nowhere", text="x", cmid="n", rid=300))]
    await h.chat.on_messages(batch)
    await h.chat.flush()
    by_rid = {m["rid"]: m for m in h.outbox.take(viewer) + h.outbox.take(mod) if "rid" in m}
    assert [by_rid[i]["t"] for i in range(10)] == ["ack"] * 10
    assert [by_rid[i]["code"] for i in (10, 11)] == ["rate_limited", "rate_limited"]
    assert by_rid[100]["code"] == "rate_limited"  # the viewer's bucket is empty by then
    assert [by_rid[200 + i]["t"] for i in range(3)] == ["ack"] * 3  # slow mode spares moderators
    assert by_rid[300]["code"] == "not_joined"
    ids = [by_rid[i]["id"] for i in range(10)]
    assert ids == sorted(ids)  # ids follow arrival order
    # Slow mode inside one run: the second post of the same user is refused.
    other = h.connect("w")
    await h.join(other, "slow")
    await h.chat.on_messages(
        [(other, frame("post", stream="slow", text=t, cmid=t, rid=n)) for n, t in enumerate(["a", "b"])]
    )
    await h.chat.flush()
    replies = {m["rid"]: m for m in h.outbox.take(other) if "rid" in m}
    assert replies[0]["t"] == "ack" and replies[1]["code"] == "slow_mode" and replies[1]["retry_ms"] == 60_000
