"""Issue 12's moderator and audience features end to end against one `livechat serve` (embedded
mode), through real WebSocket clients: whole-word block list, complete shadow bans, checked replies
and mentions, stored highlights, kick, follow, the moderation queue, likes after a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from livechat.backends import open_meta
from livechat.client import LiveChatClient, Notice, ServerError

from tests.service.serve_process import Client, Room, ServeProcess

BLOCKED = ("badword", "hell", "ass")


async def seed(data: Path) -> None:
    """Before the server starts: a user with 3 moderation strikes (their next offence is a
    shadow ban instead of a rejection)."""
    data.mkdir(parents=True, exist_ok=True)
    meta = await open_meta(f"sqlite://{data}/livechat.db")
    try:
        await meta.bump_reputation("shady", "strikes", 3)
    finally:
        await meta.aclose()


async def strikes(serve: ServeProcess, user: str) -> int:
    meta = await open_meta(f"sqlite://{serve.data_dir}/livechat.db")
    try:
        return (await meta.get_reputation(user)).get("strikes")
    finally:
        await meta.aclose()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("audience") / "data"
    asyncio.run(seed(data))
    return data


def serve_args() -> tuple[str, ...]:
    terms = ", ".join(f'"{t}"' for t in BLOCKED)
    return ("--set", f"chat.moderation.blocked_terms=[{terms}]")


@pytest.fixture(scope="module")
def serve(data_dir: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess(data_dir, *serve_args()).start()
    yield proc
    proc.stop()
    proc.assert_no_tracebacks()


@pytest.fixture
async def room(serve: ServeProcess, request: pytest.FixtureRequest) -> Room:
    return await Room.open(serve, request.node.name.removeprefix("test_")[:100])


async def test_block_list_matches_whole_words_only(serve: ServeProcess, room: Room) -> None:
    speaker = await room.joined("speaker")
    for text in ("hello there", "a classic", "Shell script", "assets and passes"):
        room.note(await room.post(speaker, text))
    assert await strikes(serve, "speaker") == 0, "a false match is no strike"
    offences = ("go to hell", "you are an ass!", "B. 4 d w 0 0 r d", "bad word", "h.e.l.l")
    for i, text in enumerate(offences):  # one user each: a third strike would make it a shadow ban
        reply = await room.post(await room.joined(f"potty{i}"), text)
        assert reply.get("code") == "rejected", (text, reply)
        assert await strikes(serve, f"potty{i}") == 1
    await room.healthy()


async def test_shadow_ban_hides_every_later_comment_and_tells_nothing(
    serve: ServeProcess, room: Room
) -> None:
    shady = await room.joined("shady")  # 3 strikes: this offence is a shadow ban
    offence = await room.post(shady, "go to hell")
    clean = await room.post(shady, "a perfectly nice comment")
    for ack in (offence, clean):
        assert ack["t"] == "ack" and not ack.get("dup")
    answer = await room.post(shady, "replying to myself", reply_to=offence["id"])  # no not_found
    assert answer["t"] == "ack", answer
    mine = {offence["id"], clean["id"], answer["id"]}
    await shady.wait(lambda: mine <= {e["id"] for e in shady.direct}, what="own comments")
    await room.healthy()  # the watcher got exactly the other acked comments
    await room.watcher.drain(0.3)
    assert mine.isdisjoint(e["id"] for e in room.watcher.comment_events())
    assert mine.isdisjoint(c["id"] for c in await room.history())
    other = await room.joined("other")
    assert mine.isdisjoint(c["id"] for c in other.replies[-1]["recent"])
    # Nothing the author receives names them as hidden.
    await shady.drain(0.3)
    everything = shady.events + shady.direct + shady.replies
    assert not any("keep" in e for e in everything)
    assert all(e.get("k") != "del" for e in shady.events)
    assert await strikes(serve, "shady") == 4, "the offence is a strike, a shadowed clean comment is not"


async def test_kick_closes_the_targets_connections_and_stores_no_ban(serve: ServeProcess, room: Room) -> None:
    s = room.stream
    target = await room.joined("kicked")
    second_tab = await room.joined("kicked")
    elsewhere = await serve.client("kicked")  # not in this stream: stays
    await elsewhere.join(f"{s}-other")
    viewer = await room.joined("bystander")
    assert (await viewer.call("kick", stream=s, user="kicked"))["code"] == "forbidden"
    mod = await room.joined("mod", streams={s: "moderator"})
    assert (await mod.call("kick", stream=s, user="mod"))["code"] == "forbidden"
    assert (await mod.call("kick", stream=s, user=f"owner-{s}"))["code"] == "forbidden"
    ok = await mod.call("kick", stream=s, user="kicked")
    assert ok == {"t": "ok", "rid": ok["rid"], "op": "kick"}
    for tab in (target, second_tab):
        assert (await tab.reply("notice"))["code"] == "kicked"
        assert await tab.closed() == 4010
    await room.watcher.event("kick", u="kicked")
    assert (await elsewhere.call("ping"))["t"] == "pong"
    back = await room.joined("kicked")  # no ban: straight back in, and may post
    room.note(await room.post(back, "I'm back"))
    meta = await open_meta(f"sqlite://{serve.data_dir}/livechat.db")
    try:
        assert await meta.get_ban(s, "kicked") is None
    finally:
        await meta.aclose()
    await room.healthy()


async def test_follow_satisfies_followers_only_and_is_stored(serve: ServeProcess, room: Room) -> None:
    s = room.stream
    assert (await room.poster.call("followers_only", stream=s, min_age=0))["t"] == "ok"
    fan = await room.joined("fan")
    assert (await room.post(fan, "let me in"))["code"] == "followers_only"
    ok = await fan.call("follow", stream=s)
    assert ok == {"t": "ok", "rid": ok["rid"], "op": "follow"}
    room.note(await room.post(fan, "I follow now"))
    anon = await room.joined(None)
    assert (await anon.call("follow", stream=s))["code"] == "read_only"
    meta = await open_meta(f"sqlite://{serve.data_dir}/livechat.db")
    try:
        assert await meta.followed_since(f"{s}", "fan") is not None
    finally:
        await meta.aclose()
    assert (await fan.call("unfollow", stream=s))["op"] == "unfollow"
    assert (await room.post(fan, "and now?"))["code"] == "followers_only"
    assert (await room.poster.call("followers_only", stream=s, min_age=None))["t"] == "ok"
    await room.healthy()


async def test_moderation_queue_lists_flags_and_reports_and_resolves_them(room: Room) -> None:
    s = room.stream
    rude = await room.joined("rude")
    kept = room.note(await room.post(rude, "you are all wrong"))
    gone = room.note(await room.post(rude, "you are all wrong again"))
    reporters = [await room.joined(f"rep{i}") for i in range(3)]
    for comment in (kept, gone):
        for reporter in reporters:  # 3 reports flag a comment
            assert (await reporter.call("report", stream=s, id=comment, reason="rude"))["t"] == "ok"
    assert (await reporters[0].call("report", stream=s, user="rude", reason="troll"))["t"] == "ok"
    assert (await reporters[0].call("queue", stream=s))["code"] == "forbidden"
    mod = await room.joined("qmod", streams={s: "moderator"})
    page = await mod.call("queue", stream=s, limit=4)
    assert page["t"] == "queue" and page["s"] == s and page["more"] is True
    assert [(f["id"], f["u"], f["c"]["x"]) for f in page["flagged"]] == [
        (kept, "rude", "you are all wrong"),
        (gone, "rude", "you are all wrong again"),
    ]
    assert [r["by"] for r in page["reports"]] == ["rep0", "rep2", "rep1", "rep0"]
    assert page["reports"][0]["c"] is None and page["reports"][0]["u"] == "rude"
    rest = await mod.call("queue", stream=s, limit=4, before=page["reports"][-1]["id"])
    assert len(rest["reports"]) == 3 and rest["more"] is False
    assert (await mod.call("review", stream=s, id=kept, action="approve"))["op"] == "review"
    assert (await mod.call("review", stream=s, id=gone, action="dismiss"))["op"] == "review"
    await room.watcher.event("del", id=gone)
    room.acked.remove(gone)
    again = await mod.call("review", stream=s, id=kept, action="dismiss")
    assert (again["code"], again["field"]) == ("not_found", "id")
    assert (await mod.call("review", stream=s, id=kept, action="maybe"))["code"] == "bad_field"
    assert (await mod.call("queue", stream=s))["flagged"] == []
    history = {c["id"] for c in await room.history()}
    assert kept in history and gone not in history


async def test_python_client_follows_kicks_and_works_the_queue(serve: ServeProcess) -> None:
    s = "py-client"
    url = f"ws://127.0.0.1:{serve.port}/live"
    owner = LiveChatClient(url, serve.token("py-owner", streams={s: "broadcaster"}))
    fan = LiveChatClient(url, serve.token("py-fan"))
    notices: list[Notice] = []
    troll = LiveChatClient(
        url, serve.token("py-troll"), on_event=lambda e: notices.append(e) if isinstance(e, Notice) else None
    )
    async with owner, fan, troll:
        for client in (owner, fan, troll):
            await client.join(s)
        await owner.set_followers_only(s, 0)
        with pytest.raises(ServerError) as refused:
            await fan.post(s, "hi")
        assert refused.value.code == "followers_only"
        await fan.follow(s)
        rude = await fan.post(s, "hi, I follow")
        for reporter in ("r1", "r2", "r3"):
            other = LiveChatClient(url, serve.token(reporter))
            async with other:
                await other.join(s)
                await other.report(s, comment_id=rude.id, reason="rude")
        page = await owner.queue(s, limit=10)
        assert [f.comment.id for f in page.flagged] == [rude.id] and len(page.reports) == 3
        assert page.flagged[0].comment.text == "hi, I follow" and not page.more
        await owner.review(s, rude.id, approve=True)
        assert (await owner.queue(s)).flagged == ()
        await owner.kick(s, "py-troll")
        for _ in range(50):
            if any(n.code == "kicked" for n in notices):
                break
            await asyncio.sleep(0.05)
        assert [n.code for n in notices] == ["kicked"]
        assert troll.view(s) is None, "a kicked stream is not re-joined"


def livechat(*args: str) -> str:
    """Run the ``livechat`` command; its stdout (fails the test on a non-zero exit)."""
    done = subprocess.run([sys.executable, "-m", "livechat.cli", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_cli_follow_satisfies_followers_only_and_mod_queue_lists(
    serve: ServeProcess, room: Room
) -> None:
    s, data = room.stream, str(serve.data_dir)
    assert (await room.poster.call("followers_only", stream=s, min_age=3600))["t"] == "ok"
    fan = await room.joined("cli-fan")
    assert (await room.post(fan, "hello"))["code"] == "followers_only"
    # An unregistered stream is its own channel; an imported follow keeps its age.
    out = livechat("follow", s, "cli-fan", "--since", str(time.time() - 7200), "--data-dir", data)
    assert out.startswith(f"cli-fan follows {s} since ")
    late = await room.joined("cli-fan")  # a join reads the follow
    room.note(await room.post(late, "followed for two hours"))
    rude = room.note(await room.post(late, "something rude"))
    for i in range(3):
        reporter = await room.joined(f"cli-rep{i}")
        assert (await reporter.call("report", stream=s, id=rude, reason=f"rude {i}"))["t"] == "ok"
    page = json.loads(livechat("mod", "queue", s, "--json", "--limit", "2", "--data-dir", data))
    assert [(f["id"], f["user"], f["text"]) for f in page["flagged"]] == [(rude, "cli-fan", "something rude")]
    assert [r["by"] for r in page["reports"]] == ["cli-rep2", "cli-rep1"] and page["more"] is True
    assert "comment" in livechat("mod", "queue", s, "--data-dir", data)
    assert livechat("follow", s, "cli-fan", "--unfollow", "--data-dir", data) == f"cli-fan unfollowed {s}\n"
    await room.healthy()


async def test_highlights_are_stored(serve: ServeProcess, room: Room) -> None:
    s = room.stream
    first = room.note(await room.post(room.poster, "first"))
    second = room.note(await room.post(room.poster, "second"))
    for comment in (second, first, second):  # highlighting again makes it the newest, kept once
        assert (await room.poster.call("highlight", stream=s, id=comment))["op"] == "highlight"
    meta = await open_meta(f"sqlite://{serve.data_dir}/livechat.db")
    try:
        assert await meta.list_highlights(s, 5) == [first, second]
    finally:
        await meta.aclose()
    await room.healthy()


async def test_highlights_survive_a_restart(tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path / "data", *serve_args()).start()
    try:
        owner = await proc.client("hl-owner", streams={"hl": "broadcaster"})
        await owner.join("hl")
        ack = await owner.call("post", stream="hl", text="remember me", cmid="h1")
        assert (await owner.call("highlight", stream="hl", id=ack["id"]))["op"] == "highlight"
        await owner.close()
    finally:
        proc.stop()
    proc = ServeProcess(tmp_path / "data", *serve_args()).start()
    try:
        viewer = await proc.client("hl-viewer")
        assert (await viewer.join("hl"))["hl"] == [ack["id"]]
    finally:
        await Client.close_all()
        proc.stop()


async def test_reply_to_an_unknown_comment_is_refused(room: Room) -> None:
    talker = await room.joined("talker")
    parent = room.note(await room.post(talker, "a question"))
    reply = room.note(await room.post(talker, "an answer", reply_to=parent))
    assert [e.get("r") for e in await room.watcher.comments(2)] == [None, parent] and reply
    err = await room.post(talker, "to nothing", reply_to=parent + 12345)
    assert (err.get("code"), err.get("field")) == ("not_found", "reply_to")
    await room.healthy()


async def test_mentions_list_only_users_that_exist(room: Room) -> None:
    await room.joined("ann")  # a join records the user
    talker = await room.joined("talker2")
    room.note(await room.post(talker, "hi @ann and @nobody-at-all"))
    (comment,) = await room.watcher.comments(1)
    assert comment["m"] == ["ann"]


async def test_comments_from_before_a_restart_can_be_liked(tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path / "data", *serve_args()).start()
    try:
        owner = await proc.client("like-owner", streams={"likes": "broadcaster"})
        await owner.join("likes")
        old = await owner.call("post", stream="likes", text="from before", cmid="l1")
        assert old["t"] == "ack"
        await owner.close()
    finally:
        proc.stop()
    proc = ServeProcess(tmp_path / "data", *serve_args()).start()
    try:
        fan = await proc.client("like-fan")
        assert [c["id"] for c in (await fan.join("likes"))["recent"]] == [old["id"]]
        reply = await fan.call("like", stream="likes", id=old["id"])
        assert reply.get("op") == "like", reply
        await fan.slot("likes", "likes", lambda v: v.get(old["id"]) == 1)
        assert (await fan.call("react", stream="likes", emoji="heart"))["op"] == "react"
    finally:
        await Client.close_all()
        proc.stop()


async def test_top_ranks_by_likes_replies_and_reputation(room: Room) -> None:
    s = room.stream
    talker = await room.joined("top-talker")
    plain = room.note(await room.post(talker, "plain"))
    liked = room.note(await room.post(talker, "liked"))
    asked = room.note(await room.post(talker, "asked"))
    room.note(await room.post(talker, "an answer", reply_to=asked))
    for name in ("top-a", "top-b", "top-c"):
        fan = await room.joined(name)
        assert (await fan.call("like", stream=s, id=liked))["op"] == "like"
    await asyncio.sleep(1.1)  # past the ranking's 1 s cache and a like flush
    top = await talker.call("top", stream=s, limit=5)
    assert top["t"] == "top" and top["s"] == s
    ranked = [(c["id"], score) for c, score in zip(top["items"], top["scores"], strict=True)]
    assert ranked[:2] == [(liked, 3), (asked, 2)], ranked
    assert plain not in {c["id"] for c in top["items"]}
    assert (await talker.call("top", stream=s, limit=0))["code"] == "bad_field"


async def test_reply_to_checks_history_and_refuses_deleted_comments(tmp_path: Path) -> None:
    """A recent window of 2: the parent is only in history; a deleted one is nowhere."""
    proc = ServeProcess(
        tmp_path / "data",
        *serve_args(),
        "--set",
        "chat.rooms.recent_buffer=2",
        "--set",
        "chat.rooms.snapshot_comments=2",
    ).start()
    try:
        owner = await proc.client("rt-owner", streams={"rt": "broadcaster"})
        await owner.join(
            "rt",
        )
        ids = []
        for i in range(4):
            ack = await owner.call("post", stream="rt", text=f"comment {i}", cmid=f"rt{i}")
            ids.append(ack["id"])
        assert (await owner.call("delete", stream="rt", id=ids[2]))["op"] == "delete"
        old = await owner.call("post", stream="rt", text="to the first", cmid="r0", reply_to=ids[0])
        assert old["t"] == "ack", old
        gone = await owner.call("post", stream="rt", text="to the deleted", cmid="r2", reply_to=ids[2])
        assert (gone.get("code"), gone.get("field"), gone.get("cmid")) == ("not_found", "reply_to", "r2")
        history = await owner.call("history", stream="rt")
        assert [c["x"] for c in history["items"]] == ["to the first", "comment 3", "comment 1", "comment 0"]
    finally:
        await Client.close_all()
        proc.stop()
