"""Moderator/broadcaster actions, reports, and the classifier's retro-delete (real HTTP endpoint)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chat_harness import Harness, chat_config, unpack
from classifier_server import ClassifierServer
from livechat.config import ModerationConfig
from livechat.ports.meta import FlagStatus, ModActionKind, Role
from livechat.services.moderation import TOMBSTONE_BUDGET_S, HttpClassifier


@pytest.fixture
async def room(make_harness: Any) -> tuple[Harness, int, int, int]:
    """A harness with a broadcaster, a moderator and a viewer joined to s1."""
    h: Harness = await make_harness()
    owner = h.connect("owner", streams={"s1": "broadcaster"})
    mod = h.connect("mod", role="moderator")
    viewer = h.connect("viewer")
    for conn in (owner, mod, viewer):
        await h.join(conn)
    return h, owner, mod, viewer


async def ok(h: Harness, conn: int, op: str, **fields: Any) -> Any:
    await h.send(conn, op, stream="s1", rid=1, **fields)
    reply = h.outbox.take(conn)[-1]
    assert reply == {"t": "ok", "op": op, "rid": 1}, reply
    return reply


async def test_viewers_cannot_moderate(room: tuple[Harness, int, int, int]) -> None:
    h, _, _, viewer = room
    await h.send(viewer, "slow", stream="s1", seconds=5)
    assert h.outbox.take(viewer)[-1]["code"] == "forbidden"
    await h.send(viewer, "delete", stream="other", id=5)
    assert h.outbox.take(viewer)[-1]["code"] == "not_joined"


async def test_delete_tombstones_and_removes_from_history_and_snapshot(
    room: tuple[Harness, int, int, int],
) -> None:
    h, _, mod, viewer = room
    ack = await h.post(viewer, "delete me")
    keep = await h.post(viewer, "keep me")
    await ok(h, mod, "delete", id=ack["id"])
    assert h.outbox.events("s1", priority=True) == [{"k": "del", "id": ack["id"]}]
    assert [c.comment_id for c in await h.backends.history.page("s1", None, 10)] == [keep["id"]]
    assert [c["id"] for c in (await h.join(h.connect("late")))["recent"]] == [keep["id"]]
    await h.send(mod, "delete", stream="s1", id=ack["id"])
    assert h.outbox.take(mod)[-1]["code"] == "not_found"
    await h.chat.context.background.drain()
    [action] = await h.backends.meta.list_actions("s1", 10)
    assert action.kind is ModActionKind.DELETE_COMMENT and action.target_comment_id == ack["id"]


async def test_purge_removes_every_comment_of_a_user(room: tuple[Harness, int, int, int]) -> None:
    h, owner, _, viewer = room
    for i in range(3):
        await h.post(viewer, f"spam {i}")
    mine = await h.post(owner, "mine")
    await ok(h, owner, "purge", user="viewer")
    assert {"k": "purge", "u": "viewer"} in h.outbox.events("s1", priority=True)
    assert [c.comment_id for c in await h.backends.history.page("s1", None, 10)] == [mine["id"]]


async def test_timeout_ban_unban_with_notices(room: tuple[Harness, int, int, int]) -> None:
    h, owner, mod, viewer = room
    await ok(h, mod, "timeout", user="viewer", seconds=120, reason="calm down")
    notice = h.outbox.take(viewer)[-1]
    assert notice["t"] == "notice" and notice["code"] == "timed_out" and notice["reason"] == "calm down"
    assert (await h.post(viewer, "hi"))["code"] == "timed_out"
    assert viewer not in h.outbox.closed, "a timeout keeps the connection"
    await ok(h, mod, "ban", user="viewer")
    # A ban notifies, then disconnects the user's connections in the stream.
    assert h.outbox.take(viewer)[-1]["code"] == "banned"
    assert h.outbox.closed[viewer] == (1008, "banned from s1")
    h.chat.on_close(viewer)  # what the edge reports once the close is done
    viewer = h.connect("viewer")
    await h.join(viewer)
    assert (await h.post(viewer, "hi"))["code"] == "banned"
    ban_events = [e for e in h.outbox.events("s1", priority=True) if e["k"] == "ban"]
    assert ban_events[-1] == {"k": "ban", "u": "viewer", "until": None}
    await ok(h, owner, "unban", user="viewer")
    assert h.outbox.take(viewer)[-1]["code"] == "unbanned"
    assert (await h.post(viewer, "back"))["t"] == "ack"
    # Stored: a new process sees the ban.
    await ok(h, mod, "ban", user="viewer")
    assert await h.backends.meta.get_ban("s1", "viewer") is not None


async def test_role_order_for_bans(room: tuple[Harness, int, int, int]) -> None:
    h, owner, mod, _ = room
    await h.send(mod, "ban", stream="s1", user="owner")
    assert h.outbox.take(mod)[-1]["code"] == "forbidden"
    await h.send(mod, "ban", stream="s1", user="mod")
    assert h.outbox.take(mod)[-1]["code"] == "forbidden"
    await h.backends.meta.set_role("s1", "mod2", Role.MODERATOR)
    await h.send(mod, "ban", stream="s1", user="mod2")
    assert h.outbox.take(mod)[-1]["code"] == "forbidden"
    await ok(h, owner, "ban", user="mod2")


async def test_pin_highlight_and_modes_reach_snapshots(room: tuple[Harness, int, int, int]) -> None:
    h, owner, mod, viewer = room
    ack = await h.post(viewer, "pin me")
    await ok(h, mod, "pin", id=ack["id"])
    await ok(h, mod, "highlight", id=ack["id"])
    await ok(h, owner, "slow", seconds=15)
    await ok(h, owner, "followers_only", min_age=0)
    await ok(h, owner, "comments", enabled=False)
    kinds = [e["k"] for e in h.outbox.events("s1", priority=True)]
    assert kinds == ["pin", "hl", "modes", "modes", "modes"]
    assert h.outbox.events("s1", priority=True)[-1] == {"k": "modes", "slow": 15, "fo": 0, "off": True}
    snap = await h.join(h.connect("late"))
    assert snap["pin"]["id"] == ack["id"] and snap["hl"] == [ack["id"]]
    assert snap["modes"] == {"slow": 15, "fo": 0, "off": True}
    # Modes and pin are stored.
    modes = await h.backends.meta.get_modes("s1")
    assert (modes.slow_seconds, modes.followers_only_min_age_s, modes.comments_off) == (15, 0, True)
    assert (await h.backends.meta.get_pin("s1")) is not None
    await ok(h, mod, "unpin")
    assert h.outbox.events("s1", priority=True)[-1] == {"k": "pin", "c": None}
    await h.send(mod, "pin", stream="s1", id=12345)
    assert h.outbox.take(mod)[-1]["code"] == "not_found"


async def test_deleting_the_pinned_comment_unpins_it(room: tuple[Harness, int, int, int]) -> None:
    h, _, mod, viewer = room
    ack = await h.post(viewer, "pinned then deleted")
    await ok(h, mod, "pin", id=ack["id"])
    await ok(h, mod, "delete", id=ack["id"])
    assert (await h.join(h.connect("late")))["pin"] is None
    assert await h.backends.meta.get_pin("s1") is None


async def test_reports_flag_a_comment_for_review(room: tuple[Harness, int, int, int]) -> None:
    h, _, _, viewer = room
    ack = await h.post(viewer, "questionable")
    for name in ("r1", "r2", "r3"):
        conn = h.connect(name)
        await h.join(conn)
        await ok(h, conn, "report", id=ack["id"], reason="spam")
    flagged = await h.backends.meta.list_flagged("s1", 10, FlagStatus.PENDING)
    assert [f.comment_id for f in flagged] == [ack["id"]] and flagged[0].user_id == "viewer"
    reports = await h.backends.meta.list_reports("s1", 10)
    assert len(reports) == 3 and reports[0].target_user_id == "viewer"
    await h.send(viewer, "report", stream="s1", id=999)
    assert h.outbox.take(viewer)[-1]["code"] == "not_found"


async def test_flag_terms_store_for_review_and_stay_visible(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(moderation=ModerationConfig(flagged_terms=("spoiler",))))
    conn = h.connect("u1")
    await h.join(conn)
    ack = await h.post(conn, "SP0ILER alert")
    assert [e["id"] for e in h.outbox.events("s1")] == [ack["id"]]
    await h.chat.context.background.drain()
    [flag] = await h.backends.meta.list_flagged("s1", 10)
    assert flag.comment_id == ack["id"] and "spoiler" in flag.reason


@pytest.fixture
async def classifier_server() -> AsyncIterator[ClassifierServer]:
    server = ClassifierServer()
    await server.start()
    yield server
    await server.stop()


async def wait_for_priority(h: Harness, predicate: Any, timeout: float) -> tuple[Any, float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        for _, data, prio in h.outbox.published:
            if prio and predicate(unpack(data)):
                return unpack(data), time.monotonic() - start
        await asyncio.sleep(0.01)
    raise AssertionError("no matching priority event in time")


async def test_retro_delete_reaches_clients_within_two_seconds(
    make_harness: Any, classifier_server: ClassifierServer
) -> None:
    h: Harness = await make_harness(classifier=HttpClassifier(classifier_server.url))
    conn = h.connect("u1")
    await h.join(conn)
    # The classifier takes 0.5 s: the comment is broadcast first, the tombstone follows.
    ack = await h.post(conn, "toxic take sleep:0.5")
    assert [e["id"] for e in h.outbox.events("s1", priority=False)] == [ack["id"]]
    _, elapsed = await wait_for_priority(h, lambda e: e == {"k": "del", "id": ack["id"]}, 3.0)
    assert elapsed < TOMBSTONE_BUDGET_S
    await h.chat.reviews.join()  # type: ignore[union-attr]
    await h.chat.context.background.drain()
    assert await h.backends.history.get("s1", ack["id"]) is None
    assert (await h.join(h.connect("late")))["recent"] == []
    assert (await h.backends.meta.get_reputation("u1")).get("strikes") == 1
    actions = await h.backends.meta.list_actions("s1", 10)
    assert actions[0].kind is ModActionKind.REJECT and actions[0].actor_id == "automod"


async def test_retro_shadow_ban_keeps_it_for_the_author(
    make_harness: Any, classifier_server: ClassifierServer
) -> None:
    h: Harness = await make_harness(classifier=HttpClassifier(classifier_server.url))
    await h.backends.meta.bump_reputation("troll", "strikes", 3)
    conn = h.connect("troll")
    await h.join(conn)
    ack = await h.post(conn, "toxic")
    tombstone, _ = await wait_for_priority(h, lambda e: e.get("id") == ack["id"], 3.0)
    # A plain delete: nothing in the frame tells the author they are shadow-banned.
    assert tombstone == {"k": "del", "id": ack["id"]}


async def test_classifier_down_fails_open(make_harness: Any, classifier_server: ClassifierServer) -> None:
    classifier_server.fail = True
    h: Harness = await make_harness(classifier=HttpClassifier(classifier_server.url))
    conn = h.connect("u1", role="broadcaster")
    await h.join(conn)
    acks = [await h.post(conn, f"toxic {i}") for i in range(8)]
    await h.chat.reviews.join()  # type: ignore[union-attr]
    assert h.outbox.events("s1", priority=True) == []
    assert len(h.outbox.events("s1")) == len(acks)
    stats = h.chat.stats()
    moderation = stats["moderation"]
    # Calls already in flight when the breaker opened still fail; everything after is skipped.
    assert stats["breaker"] == "open" and moderation["failures"] >= 5 and moderation["breaker_skipped"] >= 1
    assert moderation["failures"] + moderation["breaker_skipped"] == len(acks)


async def test_classifier_url_in_config_turns_reviews_on(
    make_harness: Any, classifier_server: ClassifierServer
) -> None:
    config = chat_config(moderation=ModerationConfig(classifier_url=classifier_server.url))
    h: Harness = await make_harness(config)
    assert h.chat.reviews is not None
    conn = h.connect("u1")
    await h.join(conn)
    ack = await h.post(conn, "toxic")
    await wait_for_priority(h, lambda e: e == {"k": "del", "id": ack["id"]}, 3.0)
    assert classifier_server.requests == 1
