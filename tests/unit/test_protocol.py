"""Decoding every client op, every decode-time error code, and the server encoders."""

from __future__ import annotations

import unicodedata
from typing import Any

import msgpack
import pytest
from chat_harness import frame, unpack
from livechat.config import LimitsConfig
from livechat.protocol import (
    REACTIONS,
    BanUser,
    ClientDecoder,
    CloseCode,
    DeleteComment,
    ErrorCode,
    EventKind,
    Highlight,
    History,
    Join,
    Leave,
    Like,
    PinComment,
    Ping,
    Post,
    ProtocolError,
    PurgeUser,
    Raw,
    RawArray,
    React,
    Report,
    SetComments,
    SetFollowersOnly,
    SetSlowMode,
    UnbanUser,
    encode_ack,
    encode_comment,
    encode_delete,
    encode_direct,
    encode_error,
    encode_history,
    encode_pin,
    extract_mentions,
    pack_map,
)

decoder = ClientDecoder(LimitsConfig())


def decode(op: str, **fields: Any) -> Any:
    return decoder.decode(frame(op, **fields))


def error_of(data: bytes | str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decoder.decode(data)
    return info.value


def test_every_op_decodes_to_its_type() -> None:
    assert decode("join", stream="s1", rid=7) == Join(7, "s1", None)
    assert decode("join", stream="s1", last_id=99) == Join(None, "s1", 99)
    assert decode("leave", stream="s1") == Leave(None, "s1")
    post = decode("post", stream="s1", text="  hi @Bob  ", cmid="c1", reply_to=5)
    assert post == Post(None, "s1", "hi @Bob", "c1", 5)
    assert decode("react", stream="s1", emoji="heart") == React(None, "s1", "heart")
    assert decode("like", stream="s1", id=3) == Like(None, "s1", 3, True)
    assert decode("unlike", stream="s1", id=3) == Like(None, "s1", 3, False)
    assert decode("history", stream="s1", before=10, limit=20) == History(None, "s1", 10, 20)
    assert decode("history", stream="s1") == History(None, "s1", None, 50)
    assert decode("ping", rid=1) == Ping(1)
    assert decode("report", stream="s1", id=4, reason="spam") == Report(None, "s1", 4, None, "spam")
    assert decode("report", stream="s1", user="u9") == Report(None, "s1", None, "u9", "")
    assert decode("delete", stream="s1", id=4) == DeleteComment(None, "s1", 4)
    assert decode("purge", stream="s1", user="u9") == PurgeUser(None, "s1", "u9")
    assert decode("timeout", stream="s1", user="u9", seconds=600) == BanUser(None, "s1", "u9", 600, "")
    assert decode("ban", stream="s1", user="u9", reason="abuse") == BanUser(None, "s1", "u9", None, "abuse")
    assert decode("unban", stream="s1", user="u9") == UnbanUser(None, "s1", "u9")
    assert decode("pin", stream="s1", id=4) == PinComment(None, "s1", 4)
    assert decode("unpin", stream="s1") == PinComment(None, "s1", None)
    assert decode("highlight", stream="s1", id=4) == Highlight(None, "s1", 4)
    assert decode("slow", stream="s1", seconds=30) == SetSlowMode(None, "s1", 30)
    assert decode("followers_only", stream="s1", min_age=600) == SetFollowersOnly(None, "s1", 600)
    assert decode("followers_only", stream="s1", min_age=None) == SetFollowersOnly(None, "s1", None)
    assert decode("comments", stream="s1", enabled=False) == SetComments(None, "s1", False)


def test_malformed_msgpack_is_bad_msgpack() -> None:
    assert error_of(b"\xc1").code is ErrorCode.BAD_MSGPACK  # 0xc1 is never used
    assert error_of(b"\x82\xa2op").code is ErrorCode.BAD_MSGPACK  # truncated map
    assert error_of(frame("ping") + b"\x00").code is ErrorCode.BAD_MSGPACK  # trailing bytes


def test_invalid_utf8_is_bad_utf8() -> None:
    # fixstr of 2 bytes that are not UTF-8
    data = b"\x82\xa2op\xa4post\xa4text\xa2\xff\xfe"
    assert error_of(data).code is ErrorCode.BAD_UTF8


def test_text_frame_and_non_map_are_bad_frame() -> None:
    assert error_of('{"op": "ping"}').code is ErrorCode.BAD_FRAME
    assert error_of(msgpack.packb([1, 2])).code is ErrorCode.BAD_FRAME


def test_unknown_op() -> None:
    err = error_of(frame("explode", rid=3))
    assert err.code is ErrorCode.UNKNOWN_OP and err.rid == 3
    assert error_of(msgpack.packb({"rid": 1})).code is ErrorCode.UNKNOWN_OP


@pytest.mark.parametrize(
    ("op", "fields", "field"),
    [
        ("join", {"stream": ""}, "stream"),
        ("join", {"stream": "has space"}, "stream"),
        ("join", {"stream": "x" * 129}, "stream"),
        ("join", {"stream": [1, 2]}, "stream"),
        ("join", {"stream": "s", "last_id": -1}, "last_id"),
        ("join", {"stream": "s", "last_id": "1"}, "last_id"),
        ("post", {"stream": "s", "text": "hi"}, "cmid"),
        ("post", {"stream": "s", "text": "hi", "cmid": "x" * 65}, "cmid"),
        ("post", {"stream": "s", "text": 5, "cmid": "c"}, "text"),
        ("post", {"stream": "s", "text": "hi", "cmid": "c", "reply_to": 0}, "reply_to"),
        ("react", {"stream": "s", "emoji": "thumbs"}, "emoji"),
        ("like", {"stream": "s"}, "id"),
        ("history", {"stream": "s", "limit": 0}, "limit"),
        ("timeout", {"stream": "s", "user": "u", "seconds": 0}, "seconds"),
        ("timeout", {"stream": "s", "user": "u"}, "seconds"),
        ("ban", {"stream": "s", "user": ""}, "user"),
        ("slow", {"stream": "s", "seconds": -1}, "seconds"),
        ("comments", {"stream": "s", "enabled": 1}, "enabled"),
        ("report", {"stream": "s"}, "id"),
        ("ping", {"rid": -5}, "rid"),
        ("ping", {"rid": True}, "rid"),
    ],
)
def test_bad_fields_name_the_field(op: str, fields: dict[str, Any], field: str) -> None:
    err = error_of(frame(op, **fields))
    assert err.code is ErrorCode.BAD_FIELD
    assert err.extra["field"] == field


def test_text_length_is_counted_after_nfc() -> None:
    # "é" as e + combining accent: 2 code points before NFC, 1 after.
    decomposed = "e\u0301" * 500
    post = decoder.decode(frame("post", stream="s", text=decomposed, cmid="c"))
    assert post.text == unicodedata.normalize("NFC", decomposed)
    assert len(post.text) == 500
    err = error_of(frame("post", stream="s", text="a" * 501, cmid="c"))
    assert err.code is ErrorCode.TEXT_TOO_LONG and err.extra["max"] == 500 and err.extra["cmid"] == "c"


def test_emoji_and_unicode_text_accepted() -> None:
    text = "🔥🔥 ça va? 日本語 👍🏽"
    assert decoder.decode(frame("post", stream="s", text=text, cmid="c")).text == text
    # 500 emoji (each one code point) is exactly at the limit
    assert len(decoder.decode(frame("post", stream="s", text="😀" * 500, cmid="c")).text) == 500


def test_empty_and_control_text() -> None:
    assert error_of(frame("post", stream="s", text="   ", cmid="c")).code is ErrorCode.TEXT_EMPTY
    assert error_of(frame("post", stream="s", text="a\x00b", cmid="c")).code is ErrorCode.BAD_TEXT
    assert error_of(frame("post", stream="s", text="abc\u202edcba", cmid="c")).code is ErrorCode.BAD_TEXT


def test_configured_text_limit() -> None:
    short = ClientDecoder(LimitsConfig(max_text_chars=10))
    with pytest.raises(ProtocolError) as info:
        short.decode(frame("post", stream="s", text="x" * 11, cmid="c"))
    assert info.value.code is ErrorCode.TEXT_TOO_LONG


def test_mentions() -> None:
    assert extract_mentions("hi @Bob and @alice_2, mail a@b.c @bob") == ["bob", "alice_2"]
    assert extract_mentions("no mentions") == []
    assert len(extract_mentions(" ".join(f"@u{i}" for i in range(20)))) == 10


def test_error_and_ack_encoding() -> None:
    err = unpack(encode_error(ErrorCode.RATE_LIMITED, "slow down", 4, retry_ms=1500))
    assert err == {"t": "err", "code": "rate_limited", "msg": "slow down", "rid": 4, "retry_ms": 1500}
    ack = unpack(encode_ack(None, "s1", "c1", 123, 456, True))
    assert ack == {"t": "ack", "s": "s1", "cmid": "c1", "id": 123, "ts": 456, "dup": True}


def test_raw_embedding_round_trips() -> None:
    comment = encode_comment(9, "u1", "Ann", "hello", 1000, None, ["bob"], "mod")
    assert unpack(comment) == {
        "k": "c",
        "id": 9,
        "u": "u1",
        "n": "Ann",
        "x": "hello",
        "ts": 1000,
        "m": ["bob"],
        "b": "mod",
    }
    direct = unpack(encode_direct("s1", [comment, encode_delete(9)]))
    assert direct["t"] == "ev" and direct["s"] == "s1"
    assert [e["k"] for e in direct["e"]] == [EventKind.COMMENT, EventKind.DELETE]
    page = unpack(encode_history(2, "s1", [comment] * 20, True))
    assert len(page["items"]) == 20 and page["more"] is True and page["rid"] == 2
    assert unpack(encode_pin(comment))["c"]["id"] == 9
    assert unpack(encode_pin(None)) == {"k": "pin", "c": None}
    many = pack_map(
        {f"k{i}": i for i in range(20)} | {"raw": Raw(comment), "arr": RawArray([comment] * 70000)}
    )
    decoded = unpack(many)
    assert decoded["k19"] == 19 and decoded["raw"]["id"] == 9 and len(decoded["arr"]) == 70000


def test_shadow_tombstone_names_who_keeps_it() -> None:
    assert unpack(encode_delete(5)) == {"k": "del", "id": 5}
    assert unpack(encode_delete(5, "u1")) == {"k": "del", "id": 5, "keep": "u1"}


def test_constants_are_documented() -> None:
    """Every error code, close code, op, event kind and reaction appears in docs/protocol.md."""
    from pathlib import Path

    from livechat.protocol import Op, StateKey

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    for code in ErrorCode:
        assert f"`{code.value}`" in doc, code
    for close in CloseCode:
        assert f"`{close.value}`" in doc, close
    for op in Op:
        assert f"`{op.value}`" in doc, op
    for kind in EventKind:
        assert f'`"{kind.value}"`' in doc, kind
    for key in StateKey:
        assert f'`"{key.value}"`' in doc, key
    for name in REACTIONS:
        assert f"`{name}`" in doc, name
