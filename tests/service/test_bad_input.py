"""Bad input against a real `livechat serve`: each gets its documented error (docs/protocol.md §6,
§7) and affects nothing else. Every test has a bystander room (a watcher and a poster) that keeps
receiving exactly the accepted comments, in order, once each; refused comments are never stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import msgpack
import pytest
from livechat.backends import open_meta

from tests.service.serve_process import Client, Room, ServeProcess

BLOCKED = "badword"


async def seed_follower(data: Path, channel: str, user: str, since_s: float) -> None:
    """Write a follow into the data dir's SQLite before the server starts (no API writes follows)."""
    data.mkdir(parents=True, exist_ok=True)
    meta = await open_meta(f"sqlite://{data}/livechat.db")
    try:
        await meta.follow(channel, user, time.time() - since_s)
    finally:
        await meta.aclose()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("bad-input") / "data"
    # An unregistered stream's channel is the stream id itself (the room name, see ``room``).
    asyncio.run(seed_follower(data, "followers_only", "fan", since_s=3600))
    proc = ServeProcess(data, "--set", f'chat.moderation.blocked_terms=["{BLOCKED}"]').start()
    yield proc
    proc.stop()
    proc.assert_no_tracebacks()


@pytest.fixture
async def room(serve: ServeProcess, request: pytest.FixtureRequest) -> Room:
    opened = await Room.open(serve, request.node.name.removeprefix("test_")[:100])
    await opened.healthy()
    return opened


def codes(client: Client) -> list[str]:
    return [m["code"] for m in client.replies if m.get("t") == "err"]


async def test_malformed_msgpack(room: Room) -> None:
    offender = await room.joined("mal")
    for bad in (b"\xc1", b"\x82\xa2op", msgpack.packb({"op": "ping"}) + b"\x00", b""):
        await offender.send_raw(bad)
        err = await offender.reply("err")
        assert err["code"] == "bad_msgpack" and err["msg"]
    assert (await offender.call("ping"))["t"] == "pong", "the connection stays usable"
    await room.healthy()


async def test_not_a_map_and_text_frames(room: Room) -> None:
    offender = await room.joined("shape")
    await offender.send_raw(msgpack.packb([1, 2]))
    assert (await offender.reply("err"))["code"] == "bad_frame"
    await offender.send_raw('{"op": "ping"}')  # JSON in a text frame
    assert (await offender.reply("err"))["code"] == "bad_frame"
    assert (await offender.call("ping"))["t"] == "pong"
    await room.healthy()


async def test_invalid_utf8(room: Room) -> None:
    offender = await room.joined("utf")
    # {"op": "post", "stream": <room>, "text": <2 bytes that are not UTF-8>, "cmid": "u1", "rid": 5}
    stream = room.stream.encode()
    raw = (
        b"\x85\xa2op\xa4post\xa6stream"
        + bytes([0xA0 | len(stream)])
        + stream
        + b"\xa4text\xa2\xff\xfe\xa4cmid\xa2u1\xa3rid\x05"
    )
    await offender.send_raw(raw)
    assert (await offender.reply("err"))["code"] == "bad_utf8"
    assert (await offender.call("ping"))["t"] == "pong"
    # Invalid UTF-8 in a text frame is a protocol error the edge closes with 1007.
    await offender.ws.send(b"\xff\xfe", text=True)
    assert await offender.closed() == 1007
    await room.healthy()
    assert [c["id"] for c in await room.history()] == list(reversed(room.acked))


async def test_unknown_operation(room: Room) -> None:
    offender = await room.joined("ops")
    err = await offender.call("fly", stream=room.stream)
    assert err["code"] == "unknown_op" and "fly" in err["msg"]
    await offender.send(rid=9)  # no op at all
    err = await offender.reply("err")
    assert err["code"] == "unknown_op" and err["rid"] == 9
    await room.healthy()


async def test_bad_fields(room: Room) -> None:
    offender = await room.joined("fields")
    cases = [
        ("join", {"stream": "no spaces allowed"}, "stream"),
        ("post", {"stream": room.stream, "text": "x"}, "cmid"),
        ("post", {"stream": room.stream, "text": 5, "cmid": "a"}, "text"),
        ("like", {"stream": room.stream, "id": 0}, "id"),
        ("react", {"stream": room.stream, "emoji": "poop"}, "emoji"),
        ("history", {"stream": room.stream, "limit": 0}, "limit"),
        ("timeout", {"stream": room.stream, "user": "x", "seconds": 0}, "seconds"),
    ]
    for op, fields, field in cases:
        err = await offender.call(op, **fields)
        assert (err["code"], err.get("field")) == ("bad_field", field), (op, err)
    await offender.send(op="ping", rid=-1)
    err = await offender.reply("err")
    assert (err["code"], err["field"]) == ("bad_field", "rid")
    await room.healthy()


async def test_text_rules_count_code_points_after_nfc(room: Room) -> None:
    writer = await room.joined("texts", streams={room.stream: "moderator"})  # 100 comments/min
    too_long = await room.post(writer, "x" * 501)
    assert (too_long["code"], too_long["max"]) == ("text_too_long", 500)
    assert (await room.post(writer, "👍🏽" * 251))["code"] == "text_too_long"  # 2 code points each
    assert (await room.post(writer, " \t\n "))["code"] == "text_empty"
    assert (await room.post(writer, "evil \u202e txt"))["code"] == "bad_text"
    assert (await room.post(writer, "bell \x07"))["code"] == "bad_text"
    # 1000 code points, 500 after NFC ("e" + combining acute -> "é"): accepted.
    ack = await room.post(writer, "e\u0301" * 500)
    room.note(ack)
    await room.healthy()
    stored = await room.history()
    assert [c["id"] for c in stored] == list(reversed(room.acked))
    assert next(c["x"] for c in stored if c["id"] == ack["id"]) == "é" * 500


def forged(claims: dict[str, object], header: dict[str, object], signature: bytes = b"") -> str:
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    head = part(json.dumps(header).encode())
    body = part(json.dumps(claims).encode())
    return f"{head}.{body}.{part(signature)}"


async def refused(serve: ServeProcess, token: str) -> tuple[str, int | None]:
    client = await Client.connect(serve.url(token))
    err = await client.reply("err")
    return err["code"], await client.closed()


async def test_bad_tokens_are_refused_with_their_close_codes(serve: ServeProcess, room: Room) -> None:
    now = int(time.time())
    claims = {"sub": "eve", "aud": "livechat", "role": "broadcaster", "exp": now + 600}
    secret = serve.secret()
    expired = jwt.encode({**claims, "exp": now - 120}, secret, algorithm="HS256")
    assert await refused(serve, expired) == ("auth_expired", 4003)
    wrong_key = jwt.encode(claims, "not-the-server-secret-0123456789abcdef", algorithm="HS256")
    assert await refused(serve, wrong_key) == ("auth_invalid", 4002)
    alg_none = forged(claims, {"alg": "none", "typ": "JWT"})
    assert await refused(serve, alg_none) == ("auth_invalid", 4002)
    assert await refused(serve, jwt.encode({**claims, "aud": "other"}, secret)) == ("auth_invalid", 4002)
    assert await refused(serve, jwt.encode({**claims, "nbf": now + 600}, secret)) == ("auth_invalid", 4002)
    assert await refused(serve, "not.a.jwt") == ("auth_invalid", 4002)
    # A signature cut off a valid token is a forgery too.
    assert await refused(serve, jwt.encode(claims, secret).rsplit(".", 1)[0] + ".") == ("auth_invalid", 4002)
    await room.healthy()


async def test_rate_limit_breach(room: Room) -> None:
    viewer = await room.joined("fast")  # viewers: 10 comments per minute
    for i in range(11):
        await viewer.send(op="post", stream=room.stream, text=f"spam {i}", cmid=f"r{i}", rid=i)
    await viewer.wait(lambda: len({m.get("rid") for m in viewer.replies} & set(range(11))) == 11)
    by_rid = {m["rid"]: m for m in viewer.replies if m.get("rid") in range(11)}
    err = by_rid[10]  # the refusal is immediate; acks wait for storage, so it may come first
    assert (err["t"], err["code"], err["cmid"]) == ("err", "rate_limited", "r10") and err["retry_ms"] > 0
    for i in range(10):
        room.note(by_rid[i])
    react = await viewer.call("react", stream=room.stream, emoji="heart")
    assert react["t"] == "ok", "comments and reactions have separate buckets"
    await room.healthy()
    assert "spam 10" not in {c["x"] for c in await room.history()}


async def test_posting_while_timed_out_or_banned(room: Room) -> None:
    target = await room.joined("troll")
    mod = await room.joined("modo", streams={room.stream: "moderator"})
    assert (await mod.call("timeout", stream=room.stream, user="troll", seconds=300))["t"] == "ok"
    err = await room.post(target, "am I muted?")
    assert err["code"] == "timed_out" and err["until"] > time.time() * 1000
    assert (await mod.call("ban", stream=room.stream, user="troll"))["t"] == "ok"
    assert await target.closed() == 1008
    again = await room.joined("troll")
    assert (await room.post(again, "let me in"))["code"] == "banned"
    await room.healthy()


async def test_slow_mode(room: Room) -> None:
    viewer = await room.joined("slowpoke")
    assert (await room.poster.call("slow", stream=room.stream, seconds=30))["t"] == "ok"
    room.note(await room.post(viewer, "first"))
    err = await room.post(viewer, "second")
    assert err["code"] == "slow_mode" and 29_000 <= err["retry_ms"] <= 30_000
    await room.healthy()  # the broadcaster is exempt
    await room.healthy()
    assert (await room.poster.call("slow", stream=room.stream, seconds=0))["t"] == "ok"
    room.note(await room.post(viewer, "slow mode is off"))
    await room.healthy()


async def test_comments_off(room: Room) -> None:
    viewer = await room.joined("quiet")
    assert (await room.poster.call("comments", stream=room.stream, enabled=False))["t"] == "ok"
    assert (await room.post(viewer, "hello?"))["code"] == "comments_off"
    await room.healthy()  # the broadcaster still may
    assert (await room.poster.call("comments", stream=room.stream, enabled=True))["t"] == "ok"
    room.note(await room.post(viewer, "back on"))
    await room.healthy()


async def test_followers_only(room: Room) -> None:
    stranger = await room.joined("stranger")
    assert (await room.poster.call("followers_only", stream=room.stream, min_age=600))["t"] == "ok"
    err = await room.post(stranger, "hi")
    assert (err["code"], err["min_age"]) == ("followers_only", 600)
    fan = await room.joined("fan")  # has followed the channel for an hour
    room.note(await room.post(fan, "I follow"))
    assert (await room.poster.call("followers_only", stream=room.stream, min_age=7200))["t"] == "ok"
    assert (await room.post(fan, "not long enough"))["code"] == "followers_only"
    await room.healthy()


async def test_block_list_rejects_before_storing(room: Room) -> None:
    viewer = await room.joined("potty")
    err = await room.post(viewer, "B. 4 d w 0 0 r d")  # spacing, leetspeak and repeats undone
    assert err["code"] == "rejected"
    await room.healthy()
    assert all(BLOCKED not in c["x"] for c in await room.history())


async def test_permission_and_state_errors(serve: ServeProcess, room: Room) -> None:
    viewer = await room.joined("plain")
    assert (await viewer.call("delete", stream=room.stream, id=room.acked[0]))["code"] == "forbidden"
    assert (await viewer.call("ban", stream=room.stream, user="x"))["code"] == "forbidden"
    assert (await viewer.call("like", stream=room.stream, id=12345))["code"] == "not_found"
    outsider = await serve.client("outsider")
    err = await outsider.call("post", stream=room.stream, text="hi", cmid="o1")
    assert err["code"] == "not_joined"
    anon = await room.joined(None)
    assert (await room.post(anon, "hi"))["code"] == "read_only"
    assert (await anon.call("react", stream=room.stream, emoji="wow"))["code"] == "read_only"
    for i in range(7):  # 8 streams at most, this room included
        await viewer.join(f"{room.stream[:90]}-x{i}")
    assert (await viewer.call("join", stream="one-too-many"))["code"] == "too_many_streams"
    await room.healthy()


async def test_too_many_errors_closes_the_connection(room: Room) -> None:
    offender = await room.joined("noisy")
    for i in range(60):  # LimitsConfig.max_errors_per_minute: this many are answered ...
        await offender.send(op="nope", rid=i)
    assert (await offender.call("ping"))["t"] == "pong"
    await offender.send(op="nope", rid=60)  # ... one more closes
    assert await offender.closed() == 4005
    assert codes(offender).count("unknown_op") == 61
    await room.healthy()


async def test_oversize_message_closes_with_1009(room: Room) -> None:
    offender = await room.joined("huge")
    await offender.send(op="post", stream=room.stream, text="x" * (64 * 1024), cmid="big")
    assert await offender.closed() == 1009
    await room.healthy()
