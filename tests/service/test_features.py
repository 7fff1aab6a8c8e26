"""The chat features end to end against one `livechat serve` (embedded mode): engagement totals in
tick state slots, counts, pins, highlights and room modes, purge, timeouts and bans, reports,
reconnect recovery (missed comments or the gap signal), the sampling tier, shadow bans."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from livechat.backends import open_meta
from livechat.ports.meta import FlaggedComment, UserReport

from tests.service.serve_process import Room, ServeProcess

BLOCKED = "badword"
# Sampling starts at 100 comments/s here (default 5 000/s), so a test can cross it in a second.
TIERS = "[[100, 0.5], [100000, 0.1], [200000, 0.05]]"
RECOVER_MAX = 5


async def seed(data: Path) -> None:
    """Before the server starts: a user with 3 moderation strikes (their next offence is a
    shadow ban instead of a rejection)."""
    data.mkdir(parents=True, exist_ok=True)
    meta = await open_meta(f"sqlite://{data}/livechat.db")
    try:
        await meta.bump_reputation("shady", "strikes", 3)
    finally:
        await meta.aclose()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("features") / "data"
    asyncio.run(seed(data))
    proc = ServeProcess(
        data,
        "--set",
        f'chat.moderation.blocked_terms=["{BLOCKED}"]',
        "--set",
        f"chat.sampling.tiers={TIERS}",
        "--set",
        f"chat.rooms.recover_max={RECOVER_MAX}",
    ).start()
    yield proc
    proc.stop()
    proc.assert_no_tracebacks()


@pytest.fixture
async def room(serve: ServeProcess, request: pytest.FixtureRequest) -> Room:
    return await Room.open(serve, request.node.name.removeprefix("test_")[:100])


async def test_reactions_likes_and_counts_ride_the_tick(room: Room) -> None:
    s = room.stream
    ann, ben = await room.joined("ann"), await room.joined("ben")
    comment = room.note(await room.post(room.poster, "like me @ann"))
    for client, emoji in ((ann, "heart"), (ann, "heart"), (ben, "laugh")):
        assert (await client.call("react", stream=s, emoji=emoji))["t"] == "ok"
    for client in (ann, ben, ann):  # ann likes twice: counted once
        assert (await client.call("like", stream=s, id=comment))["op"] == "like"
    assert (await ben.call("unlike", stream=s, id=comment))["op"] == "unlike"
    w = room.watcher
    rx = await w.slot(s, "rx", lambda v: v["heart"] == 2)
    assert rx == {"heart": 2, "laugh": 1, "wow": 0, "sad": 0, "angry": 0}
    await w.slot(s, "likes", lambda v: v.get(comment) == 1)
    await w.slot(s, "n", lambda v: v == {"c": 1, "v": 4, "u": 4})
    # Totals ride the tick as state; reactions and likes are never forwarded as events.
    await room.healthy()
    assert {e["k"] for e in w.events} == {"c"}
    assert w.comment_events()[0]["m"] == ["ann"]
    late = await room.joined(None)
    snap = late.replies[-1]
    assert snap["rx"]["heart"] == 2 and snap["likes"] == {comment: 1} and snap["n"]["v"] == 5
    await late.close()
    await room.watcher.slot(s, "n", lambda v: v == {"c": 2, "v": 4, "u": 4})


async def test_pin_highlight_and_room_modes(room: Room) -> None:
    s, p, w = room.stream, room.poster, room.watcher
    first = room.note(await room.post(p, "pin me"))
    assert (await p.call("pin", stream=s, id=first))["op"] == "pin"
    pinned = await w.event("pin")
    assert pinned["c"]["id"] == first and pinned["c"]["x"] == "pin me"
    assert (await p.call("highlight", stream=s, id=first))["op"] == "highlight"
    await w.event("hl", id=first)
    assert (await p.call("slow", stream=s, seconds=5))["t"] == "ok"
    await w.event("modes", slow=5, fo=None, off=False)
    assert (await p.call("followers_only", stream=s, min_age=60))["t"] == "ok"
    await w.event("modes", slow=5, fo=60, off=False)
    assert (await p.call("comments", stream=s, enabled=False))["t"] == "ok"
    await w.event("modes", slow=5, fo=60, off=True)
    # Priority events travel in their own frames, which the server never skips.
    assert all(t.get("p") for t in w.ticks if any(e["k"] != "c" for e in t["e"]))
    late = await room.joined("late")
    snap = late.replies[-1]
    assert snap["pin"]["id"] == first and snap["hl"] == [first]
    assert snap["modes"] == {"slow": 5, "fo": 60, "off": True}
    assert (await p.call("unpin", stream=s))["op"] == "unpin"
    await w.event("pin", c=None)
    assert (await p.call("pin", stream=s, id=12345))["code"] == "not_found"
    await room.healthy()


async def test_purge_removes_a_users_comments_everywhere(room: Room) -> None:
    spammer = await room.joined("spammer", streams={room.stream: "moderator"})
    for i in range(3):
        room.note(await room.post(spammer, f"buy now {i}"))
    await room.healthy()
    assert (await room.poster.call("purge", stream=room.stream, user="spammer"))["op"] == "purge"
    await room.watcher.event("purge", u="spammer")
    assert [c["u"] for c in await room.history()] == [f"owner-{room.stream}"]
    late = await room.joined(None)
    assert [c["x"] for c in late.replies[-1]["recent"]] == ["healthy 3"]


async def test_timeout_ban_unban_events_and_notices(room: Room) -> None:
    s, p, w = room.stream, room.poster, room.watcher
    target = await room.joined("tim")
    assert (await p.call("timeout", stream=s, user="tim", seconds=60, reason="cool off"))["op"] == "timeout"
    ban = await w.event("ban", u="tim")
    assert ban["until"] > time.time() * 1000
    notice = await target.reply("notice")
    assert (notice["code"], notice["reason"], notice["until"]) == ("timed_out", "cool off", ban["until"])
    assert (await p.call("unban", stream=s, user="tim"))["op"] == "unban"
    await w.event("unban", u="tim")
    assert (await target.reply("notice"))["code"] == "unbanned"
    room.note(await room.post(target, "I'm back"))
    assert (await p.call("ban", stream=s, user="tim"))["op"] == "ban"
    await w.event("ban", u="tim", until=None)
    assert (await target.reply("notice"))["code"] == "banned"
    assert await target.closed() == 1008
    await room.healthy()


async def test_reports_queue_a_comment_for_review(serve: ServeProcess, room: Room) -> None:
    s = room.stream
    offender = await room.joined("rude")
    comment = room.note(await room.post(offender, "you are all wrong"))
    reporters = [await room.joined(f"rep{i}") for i in range(3)]
    for i, reporter in enumerate(reporters):
        ok = await reporter.call("report", stream=s, id=comment, reason=f"rude #{i}")
        assert ok == {"t": "ok", "rid": ok["rid"], "op": "report"}
    assert (await reporters[0].call("report", stream=s, user="rude"))["op"] == "report"
    assert (await reporters[0].call("report", stream=s, id=comment, reason="x" * 201))["code"] == "bad_field"
    assert (await reporters[0].call("report", stream=s, id=999))["code"] == "not_found"
    meta = await open_meta(f"sqlite://{serve.data_dir}/livechat.db")
    try:
        reports: list[UserReport] = await meta.list_reports(s, 10)
        flagged: list[FlaggedComment] = await meta.list_flagged(s, 10)
    finally:
        await meta.aclose()
    assert sorted(r.reporter_id for r in reports) == ["rep0", "rep0", "rep1", "rep2"]
    assert {r.target_user_id for r in reports} == {"rude"}
    assert [(f.comment_id, f.reason) for f in flagged] == [(comment, "3 reports")]
    await room.healthy()  # a flagged comment stays visible
    assert comment in {c["id"] for c in await room.history()}


async def test_reconnect_gets_missed_comments_or_a_gap(room: Room) -> None:
    s = room.stream
    reader = await room.joined("reader")
    for i in range(2):
        room.note(await room.post(room.poster, f"seen {i}"))
    last_seen = (await reader.comments(2))[-1]["id"]
    await reader.close()
    missed = [room.note(await room.post(room.poster, f"missed {i}")) for i in range(3)]
    deleted = room.acked[0]
    assert (await room.poster.call("delete", stream=s, id=deleted))["op"] == "delete"
    back = await room.joined("reader")
    snap = await back.join(s, last_id=last_seen)
    assert snap["gap"] is False
    assert [c["id"] for c in snap["missed"]] == missed and snap["del"] == [deleted]
    assert snap["last"] == missed[-1]
    for i in range(RECOVER_MAX):
        room.note(await room.post(room.poster, f"more {i}"))
    snap = await back.join(s, last_id=last_seen)  # more than recover_max comments behind
    assert snap["gap"] is True and "missed" not in snap
    assert [c["id"] for c in snap["recent"]][-1] == room.acked[-1]
    assert deleted not in {c["id"] for c in snap["recent"]}
    await room.healthy()


async def test_sampling_tier_shows_in_snapshot_and_ticks_and_every_comment_is_stored(room: Room) -> None:
    s, p, w = room.stream, room.poster, room.watcher
    posted = 0

    async def burst(n: int) -> None:
        nonlocal posted
        for i in range(posted, posted + n):
            await p.send(op="post", stream=s, text=f"burst {i}", cmid=f"b{i}", rid=i)
        posted += n
        await p.wait(lambda: sum(1 for m in p.replies if m.get("t") == "ack") == posted, 10, "acks")

    # 300 comments: > 100/s over the 2 s window once a 250 ms slice completes -> tier 1 (50 %).
    await burst(300)
    slot = await w.slot(s, "tier", lambda v: v["lvl"] == 1)
    assert slot["pct"] == 50.0 and slot["rate"] >= 100
    late = await room.joined(None)
    tier = late.replies[-1]["tier"]
    assert tier["lvl"] == 1 and tier["pct"] == 50.0
    seen = len(w.comment_events())
    await burst(200)  # at tier 1: about half go into the tick
    await asyncio.gather(w.drain(0.5), p.drain(0.5))
    broadcast = len(w.comment_events()) - seen
    assert 50 < broadcast < 150, f"{broadcast} of 200 broadcast at 50 %"
    # The author sees every one of its own comments: in the tick or directly (``ev``).
    own = {e["id"] for e in p.comment_events()} | {e["id"] for e in p.direct}
    assert own == {m["id"] for m in p.replies if m.get("t") == "ack"}
    stored = 0
    before = None
    while True:  # history pages hold every comment, sampled or not
        page = await w.call("history", stream=s, limit=100, **({"before": before} if before else {}))
        stored += len(page["items"])
        if not page["more"]:
            break
        before = page["items"][-1]["id"]
    assert stored == posted


async def test_shadow_ban_is_visible_to_its_author_only(room: Room) -> None:
    shady = await room.joined("shady")  # 3 strikes: a blocked term is now a shadow ban
    ack = await room.post(shady, f"this is a {BLOCKED}")
    assert ack["t"] == "ack"
    await shady.wait(lambda: any(e["id"] == ack["id"] for e in shady.direct), what="own comment")
    await room.healthy()
    await room.watcher.drain(0.3)
    assert ack["id"] not in {e["id"] for e in room.watcher.comment_events()}
    assert ack["id"] not in {e["id"] for e in shady.comment_events()}, "not in the shared tick"
    assert ack["id"] not in {c["id"] for c in await room.history()}
    clean = await room.joined("clean")  # no strikes: the same text is rejected outright
    assert (await room.post(clean, f"this is a {BLOCKED}"))["code"] == "rejected"
