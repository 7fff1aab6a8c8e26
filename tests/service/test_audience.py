"""Issue 12's moderator and audience features end to end against one `livechat serve` (embedded
mode), through real WebSocket clients: whole-word block list, complete shadow bans, checked replies
and mentions, stored highlights, kick, follow, the moderation queue, likes after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from livechat.backends import open_meta

from tests.service.serve_process import Room, ServeProcess

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


async def test_shadow_ban_hides_every_later_comment_and_tells_nothing(room: Room) -> None:
    shady = await room.joined("shady")  # 3 strikes: this offence is a shadow ban
    offence = await room.post(shady, "go to hell")
    clean = await room.post(shady, "a perfectly nice comment")
    for ack in (offence, clean):
        assert ack["t"] == "ack" and not ack.get("dup")
    mine = {offence["id"], clean["id"]}
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
