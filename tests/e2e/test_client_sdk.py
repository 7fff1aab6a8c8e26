"""The Python client SDK (``livechat.client``) against a real `livechat serve`: requests and typed
replies, fan-out to the other transport, moderator actions, refused tokens, and reconnect with
recovery when the server is killed and restarted or the network path is cut."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from livechat.client import (
    AuthRejected,
    Comment,
    ConnectionLost,
    Deleted,
    Disconnected,
    Event,
    LiveChatClient,
    Reconnected,
    Reconnecting,
    ServerError,
    Snapshot,
    StateChanged,
    TopPage,
)
from livechat.client.transport import TransportName
from livechat.config import ClientConfig, RoomConfig

from tests.e2e.conftest import free_port
from tests.e2e.tcp_proxy import TcpProxy
from tests.service.serve_process import ServeProcess

# Fast reconnects keep the suite short; the growth and jitter are what is under test.
FAST = ClientConfig(reconnect_initial_s=0.05, reconnect_max_s=0.4, request_timeout_s=10.0)


def url(serve: ServeProcess) -> str:
    return f"ws://127.0.0.1:{serve.port}/live"


async def collect(
    client: LiveChatClient, until: Callable[[Event], bool], timeout: float = 10.0
) -> list[Event]:
    """Events up to and including the first one ``until`` accepts."""
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while True:
        event = await client.next_event(max(0.01, deadline - time.monotonic()))
        seen.append(event)
        if until(event):
            return seen


def comments(events: list[Event]) -> list[Comment]:
    return [e for e in events if isinstance(e, Comment)]


async def test_post_like_react_delete_across_both_transports(serve: ServeProcess) -> None:
    alice = LiveChatClient(url(serve), serve.token("alice"), transport="websockets")
    mod = LiveChatClient(url(serve), serve.token("mia", role="moderator"), transport="picows")
    anon = LiveChatClient(url(serve))
    async with alice, mod, anon:
        for client in (alice, mod, anon):
            snap = await client.join("room")
            assert snap.stream == "room" and snap.recent == () and not snap.recovered
        assert (await mod.join("room")).role == "moderator"
        assert alice.user_id == "alice" and anon.user_id is None

        ack = await alice.post("room", "héllo 👋 @mia", cmid="first")
        assert ack.cmid == "first" and ack.stream == "room" and not ack.duplicate
        again = await alice.post("room", "héllo 👋 @mia", cmid="first")
        assert again.id == ack.id and again.duplicate

        for client in (mod, anon):
            got = comments(await collect(client, lambda e: isinstance(e, Comment)))
            assert [(c.id, c.user, c.text, c.mentions) for c in got] == [
                (ack.id, "alice", "héllo 👋 @mia", ("mia",))
            ]

        await mod.like("room", ack.id)
        await alice.react("room", "heart")
        await alice.react("room", "heart")
        state = await collect(
            anon,
            lambda e: isinstance(e, StateChanged) and anon.view("room") is not None and _hearts(anon) == 2,
        )
        likes = [e.likes for e in state if isinstance(e, StateChanged) and e.likes]
        assert {ack.id: 1} in likes

        with pytest.raises(ServerError) as refused:
            await alice.delete("room", ack.id)
        assert refused.value.code == "forbidden"
        with pytest.raises(ServerError) as read_only:
            await anon.post("room", "hi")
        assert read_only.value.code == "read_only"

        await mod.delete("room", ack.id)
        for client in (alice, anon):
            gone = await collect(client, lambda e: isinstance(e, Deleted))
            assert isinstance(gone[-1], Deleted) and gone[-1].id == ack.id

        page = await anon.history("room")
        assert page.items == () and page.more is False
        assert await anon.ping() > 0


def _hearts(client: LiveChatClient) -> int:
    view = client.view("room")
    return view.reactions.get("heart", 0) if view is not None else 0


async def test_refused_token_is_final_and_not_retried(serve: ServeProcess) -> None:
    forged = jwt.encode(
        {"sub": "eve", "aud": "livechat", "exp": int(time.time()) + 60},
        "not-the-secret-but-long-enough-for-hs256",
    )
    client = LiveChatClient(url(serve), forged, config=FAST)
    with pytest.raises(AuthRejected) as refused:
        await client.connect()
    assert refused.value.close_code == 4002 and refused.value.error_code == "auth_invalid"
    events = [e async for e in client.events()]
    assert not any(isinstance(e, Reconnecting) for e in events)
    assert any(isinstance(e, Disconnected) and e.final for e in events)


async def test_server_killed_and_restarted_client_recovers_and_queued_post_lands(
    serve: ServeProcess,
) -> None:
    viewer = LiveChatClient(url(serve), serve.token("vic"), config=FAST)
    author = LiveChatClient(url(serve), serve.token("ann", role="moderator"), config=FAST)
    async with viewer, author:
        await viewer.join("live")
        await author.join("live")
        first = await author.post("live", "before the crash")
        await collect(viewer, lambda e: isinstance(e, Comment) and e.id == first.id)

        assert serve.stop(signal.SIGKILL) == -signal.SIGKILL
        await collect(viewer, lambda e: isinstance(e, Disconnected))
        await collect(viewer, lambda e: isinstance(e, Reconnecting) and e.attempt >= 2)
        # Made while the server is down: it waits and goes out once reconnected.
        queued = asyncio.create_task(viewer.post("live", "written offline", cmid="offline-1"))
        await asyncio.sleep(0.3)
        assert not queued.done()

        serve.start()
        await collect(author, lambda e: isinstance(e, Reconnected), timeout=15)
        second = await author.post("live", "after the restart")
        events = await collect(viewer, lambda e: isinstance(e, Comment) and e.id == second.id, timeout=15)
        if not any(isinstance(e, Reconnected) for e in events):
            # Reconnected follows the re-join and the resent post; a tick may overtake it.
            events += await collect(viewer, lambda e: isinstance(e, Reconnected))
        ack = await asyncio.wait_for(queued, 10)

        assert not ack.duplicate
        snaps = [e for e in events if isinstance(e, Snapshot)]
        assert snaps and snaps[0].recovered and not snaps[0].gap
        got = comments(events)
        assert [c.id for c in got].count(second.id) == 1
        assert first.id not in [c.id for c in got]
        page = await author.history("live", limit=10)
        assert [c.text for c in page.items].count("written offline") == 1


@pytest.mark.parametrize("transport", ["websockets", "picows"])
async def test_cut_path_recovers_missed_comments_and_deletes(
    serve: ServeProcess, transport: TransportName
) -> None:
    proxy = await TcpProxy(serve.port).start(free_port())
    viewer = LiveChatClient(proxy.url(), serve.token("vic"), config=FAST, transport=transport)
    mod = LiveChatClient(url(serve), serve.token("mo", role="moderator"))
    try:
        async with viewer, mod:
            await viewer.join("cut")
            await mod.join("cut")
            kept = await mod.post("cut", "seen live")
            doomed = await mod.post("cut", "deleted while away")
            await collect(viewer, lambda e: isinstance(e, Comment) and e.id == doomed.id)

            proxy.refusing = True
            proxy.cut()
            await collect(viewer, lambda e: isinstance(e, Disconnected))
            missed = [await mod.post("cut", f"missed {i}") for i in range(3)]
            await mod.delete("cut", doomed.id)
            await collect(viewer, lambda e: isinstance(e, Reconnecting) and e.attempt >= 3)
            proxy.refusing = False

            events = await collect(viewer, lambda e: isinstance(e, Reconnected))
            live = await mod.post("cut", "live again")
            events += await collect(viewer, lambda e: isinstance(e, Comment) and e.id == live.id)

            snap = next(e for e in events if isinstance(e, Snapshot))
            assert snap.recovered and not snap.gap
            recovered = [c for c in comments(events) if c.source == "missed"]
            assert [c.id for c in recovered] == [a.id for a in missed]
            assert doomed.id in [e.id for e in events if isinstance(e, Deleted)]
            assert [c.id for c in comments(events)].count(live.id) == 1
            assert kept.id not in [c.id for c in comments(events)]
            view = viewer.view("cut")
            assert view is not None and view.last_id == live.id
    finally:
        await proxy.close()


async def test_post_whose_ack_was_lost_is_resent_and_stored_once(serve: ServeProcess) -> None:
    proxy = await TcpProxy(serve.port).start(free_port())
    author = LiveChatClient(proxy.url(), serve.token("ann"), config=FAST)
    reader = LiveChatClient(url(serve), serve.token("rob"))
    try:
        async with author, reader:
            await author.join("acks")
            await reader.join("acks")
            proxy.dropping_downstream = True
            post = asyncio.create_task(author.post("acks", "stored once", cmid="lost-ack"))
            # The server stores it and answers; the answer is thrown away on the way back.
            stored = await collect(reader, lambda e: isinstance(e, Comment))
            assert not post.done()
            proxy.dropping_downstream = False
            proxy.cut()
            ack = await asyncio.wait_for(post, 10)
            assert ack.duplicate and ack.id == comments(stored)[0].id
            page = await reader.history("acks")
            assert [c.text for c in page.items] == ["stored once"]
    finally:
        await proxy.close()


async def test_in_flight_request_other_than_post_fails_with_connection_lost(serve: ServeProcess) -> None:
    proxy = await TcpProxy(serve.port).start(free_port())
    client = LiveChatClient(proxy.url(), serve.token("ann"), config=FAST)
    try:
        async with client:
            await client.join("lost")
            proxy.dropping_downstream = True
            history = asyncio.create_task(client.history("lost"))
            await asyncio.sleep(0.2)
            proxy.dropping_downstream = False
            proxy.cut()
            with pytest.raises(ConnectionLost):
                await history
            await collect(client, lambda e: isinstance(e, Reconnected))
            assert (await client.history("lost")).items == ()
    finally:
        await proxy.close()


async def test_too_much_missed_is_reported_as_a_gap(serve: ServeProcess) -> None:
    recover_max = RoomConfig().recover_max
    proxy = await TcpProxy(serve.port).start(free_port())
    viewer = LiveChatClient(proxy.url(), serve.token("vic"), config=FAST)
    # The broadcaster has no comment rate limit.
    host = LiveChatClient(url(serve), serve.token("hal", streams={"gap": "broadcaster"}))
    try:
        async with viewer, host:
            await viewer.join("gap")
            await host.join("gap")
            first = await host.post("gap", "seen")
            await collect(viewer, lambda e: isinstance(e, Comment) and e.id == first.id)
            proxy.refusing = True
            proxy.cut()
            flood = await asyncio.gather(*(host.post("gap", f"flood {i}") for i in range(recover_max + 5)))
            proxy.refusing = False
            events = await collect(viewer, lambda e: isinstance(e, Snapshot), timeout=15)
            snap = events[-1]
            assert isinstance(snap, Snapshot)
            assert snap.recovered and snap.gap and snap.missed == ()
            assert len(snap.recent) == RoomConfig().snapshot_comments
            assert snap.recent[-1].id == max(a.id for a in flood)
    finally:
        await proxy.close()


async def test_reconnect_delays_grow_with_jitter_under_the_cap(serve: ServeProcess) -> None:
    proxy = await TcpProxy(serve.port).start(free_port())
    config = ClientConfig(reconnect_initial_s=0.02, reconnect_max_s=0.16, reconnect_factor=2.0)
    client = LiveChatClient(proxy.url(), serve.token("ann"), config=config)
    try:
        async with client:
            proxy.refusing = True
            proxy.cut()
            events = await collect(client, lambda e: isinstance(e, Reconnecting) and e.attempt == 8)
            delays = [e.delay_s for e in events if isinstance(e, Reconnecting)]
            ceilings = [min(0.16, 0.02 * 2**n) for n in range(8)]
            assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
            assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
            refused_before = proxy.refused
            assert refused_before >= 7
            proxy.refusing = False
            await collect(client, lambda e: isinstance(e, Reconnected))
            assert client.connected and client.reconnects == 1
            await client.ping()
    finally:
        await proxy.close()


async def test_token_provider_is_asked_again_on_every_reconnect(serve: ServeProcess, tmp_path: Path) -> None:
    proxy = await TcpProxy(serve.port).start(free_port())
    issued: list[str] = []

    async def fresh_token() -> str:
        issued.append(serve.token("pat", jti=str(len(issued))))
        return issued[-1]

    client = LiveChatClient(proxy.url(), token_provider=fresh_token, config=FAST)
    try:
        async with client:
            await client.join("tok")
            proxy.cut()
            await collect(client, lambda e: isinstance(e, Reconnected))
            assert len(issued) == 2 and client.user_id == "pat"
            assert (await client.post("tok", "still me")).id > 0
    finally:
        await proxy.close()


async def top_until(client: LiveChatClient, stream: str, test: Callable[[TopPage], bool]) -> TopPage:
    """``top`` asked until ``test`` holds: the server ranks at most once a second and flushes likes
    every 250 ms, so a like shows within about 1.25 s."""
    deadline = time.monotonic() + 10.0
    while True:
        page = await client.top(stream)
        if test(page) or time.monotonic() > deadline:
            return page
        await asyncio.sleep(0.2)


async def test_top_ranks_liked_comments_first_for_every_viewer(serve: ServeProcess) -> None:
    s = "sdk-top"
    fan = LiveChatClient(url(serve), serve.token("fan"))
    likers = [LiveChatClient(url(serve), serve.token(f"liker{i}")) for i in range(3)]
    anon = LiveChatClient(url(serve))
    async with fan, likers[0], likers[1], likers[2], anon:
        for client in (fan, *likers, anon):
            await client.join(s)
        assert await fan.top(s) == TopPage(s, (), ())
        plain = await fan.post(s, "plain")
        liked = await fan.post(s, "liked three times")
        asked = await fan.post(s, "asked once")
        await likers[0].post(s, "an answer", reply_to=asked.id)
        for liker in likers:
            await liker.like(s, liked.id)

        page = await top_until(anon, s, lambda p: [c.id for c in p.items[:1]] == [liked.id])
        ranked = [(c.id, c.text, score) for c, score in zip(page.items, page.scores, strict=True)]
        # 3 likes beat one reply (2 points); the newer of equals would go first.
        assert ranked == [(liked.id, "liked three times", 3), (asked.id, "asked once", 2)], ranked
        assert plain.id not in {c.id for c in page.items}
        assert all(c.stream == s and c.user == "fan" for c in page.items)
        assert [c.id for c in (await fan.top(s, limit=1)).items] == [liked.id]

        # An unlike takes the comment down again: the ranking follows the likes.
        for liker in likers:
            await liker.unlike(s, liked.id)
        page = await top_until(fan, s, lambda p: liked.id not in {c.id for c in p.items})
        assert [c.id for c in page.items] == [asked.id]

        with pytest.raises(ServerError) as bad:
            await fan.top(s, limit=0)
        assert (bad.value.code, bad.value.fields.get("field")) == ("bad_field", "limit")
        with pytest.raises(ServerError) as not_joined:
            await fan.top("sdk-top-elsewhere")
        assert not_joined.value.code == "not_joined"


async def test_follow_and_the_moderation_queue_through_the_client(serve: ServeProcess) -> None:
    s = "sdk-queue"
    owner = LiveChatClient(url(serve), serve.token("owner", streams={s: "broadcaster"}))
    fan = LiveChatClient(url(serve), serve.token("fan"))
    anon = LiveChatClient(url(serve))
    async with owner, fan, anon:
        for client in (owner, fan, anon):
            await client.join(s)

        # Followers-only: refused until the fan follows, refused again after unfollowing.
        await owner.set_followers_only(s, 0)
        with pytest.raises(ServerError) as refused:
            await fan.post(s, "hi")
        assert refused.value.code == "followers_only"
        assert (await fan.join(s)).follow_since is None
        await fan.follow(s)
        await fan.follow(s)  # again: harmless, the first follow time is kept
        # The join's snapshot says so (the page's follow button reads it after a reload).
        since = (await fan.join(s)).follow_since
        assert since is not None and abs(since - time.time()) < 60
        kept = await fan.post(s, "I follow, keep me")
        rude = await fan.post(s, "I follow, remove me")
        await fan.unfollow(s)
        with pytest.raises(ServerError) as again:
            await fan.post(s, "and now?")
        assert again.value.code == "followers_only"
        with pytest.raises(ServerError) as anonymous:
            await anon.follow(s)
        assert anonymous.value.code == "read_only"
        await owner.set_followers_only(s, None)

        # Three distinct reporters flag a comment; one report flags nothing.
        for name in ("rep1", "rep2", "rep3"):
            reporter = LiveChatClient(url(serve), serve.token(name))
            async with reporter:
                await reporter.join(s)
                await reporter.report(s, comment_id=rude.id, reason=f"rude ({name})")
                if name == "rep1":
                    await reporter.report(s, comment_id=kept.id)
                    await reporter.report(s, user="fan", reason="troll")
        with pytest.raises(ServerError) as forbidden:
            await fan.queue(s)
        assert forbidden.value.code == "forbidden"
        page = await owner.queue(s, limit=2)
        assert [(f.comment.id, f.comment.user, f.reason) for f in page.flagged] == [
            (rude.id, "fan", "3 reports")
        ]
        assert [(r.reporter, r.comment_id) for r in page.reports] == [("rep3", rude.id), ("rep2", rude.id)]
        assert page.more and page.stream == s
        rest = await owner.queue(s, limit=2, before=page.reports[-1].report_id)
        assert [(r.reporter, r.comment_id, r.reason) for r in rest.reports] == [
            ("rep1", None, "troll"),
            ("rep1", kept.id, ""),
        ]
        assert rest.more

        # Dismissed: deleted for every viewer; a second review finds nothing pending.
        await owner.review(s, rude.id, approve=False)
        gone = await collect(anon, lambda e: isinstance(e, Deleted) and e.id == rude.id)
        assert isinstance(gone[-1], Deleted)
        assert (await owner.queue(s)).flagged == ()
        with pytest.raises(ServerError) as resolved:
            await owner.review(s, rude.id, approve=True)
        assert (resolved.value.code, resolved.value.fields.get("field")) == ("not_found", "id")
        with pytest.raises(ServerError) as never_flagged:
            await owner.review(s, kept.id, approve=True)
        assert never_flagged.value.code == "not_found"
        history = {c.id for c in (await anon.history(s)).items}
        assert kept.id in history and rude.id not in history
