"""Property tests of ``ClientDecoder``: whatever a client sends, decoding raises nothing but
``ProtocolError`` (whose reply encodes), and every valid message survives the wire unchanged."""

from __future__ import annotations

import unicodedata
from typing import Any

import msgpack
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from livechat.config import LimitsConfig
from livechat.protocol import (
    BAN_REASON_MAX,
    CLIENT_MSG_ID_MAX,
    FOLLOW_AGE_MAX_S,
    FORBIDDEN_TEXT,
    HISTORY_LIMIT_MAX,
    ID_MAX,
    REACTIONS,
    RID_MAX,
    SLOW_MAX_S,
    TIMEOUT_MAX_S,
    USER_ID_MAX,
    BanUser,
    ClientDecoder,
    ClientMessage,
    DeleteComment,
    ErrorCode,
    Highlight,
    History,
    Join,
    Leave,
    Like,
    MessageType,
    Op,
    PinComment,
    Ping,
    Post,
    ProtocolError,
    PurgeUser,
    React,
    Report,
    SetComments,
    SetFollowersOnly,
    SetSlowMode,
    UnbanUser,
)

LIMITS = LimitsConfig()
# Bounded so the suite stays a few seconds on a shared 2-core machine; no example database on disk.
FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_error(
    data: bytes | str, decoder: type[ClientDecoder] = ClientDecoder
) -> ClientMessage | ProtocolError:
    """Decode with a fresh decoder; a ProtocolError is returned after checking its reply encodes."""
    try:
        return decoder(LIMITS).decode(data)
    except ProtocolError as exc:
        assert exc.code in set(ErrorCode)
        reply = msgpack.unpackb(exc.encode(), raw=False)
        assert reply["t"] == MessageType.ERROR and reply["code"] == exc.code
        return exc


# --- anything at all ----------------------------------------------------------------------------

# UTF-8 encodable (no surrogates): msgpack cannot pack others; arbitrary bytes cover invalid UTF-8.
texts = st.text(st.characters(codec="utf-8"), max_size=40)
# Every integer msgpack can carry: int64 .. uint64.
wire_ints = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
scalars = st.none() | st.booleans() | wire_ints | st.floats(allow_nan=True) | texts | st.binary(max_size=40)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts | wire_ints, inner, max_size=5),
    max_leaves=20,
)
# Map keys other than strings are refused anywhere in a frame (msgpack's strict_map_key), so an
# unknown field that is to be ignored carries string-keyed maps only.
str_keyed_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=20,
)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    decode_or_error(data)


@FUZZ
@given(texts)
def test_text_frames_are_bad_frame(data: str) -> None:
    result = decode_or_error(data)
    assert isinstance(result, ProtocolError) and result.code == ErrorCode.BAD_FRAME


@FUZZ
@given(values)
def test_arbitrary_msgpack_values_raise_only_protocol_errors(value: Any) -> None:
    decode_or_error(msgpack.packb(value, use_bin_type=True))


FIELDS = "rid stream last_id text cmid reply_to emoji id before limit user reason seconds min_age enabled"
field_names = st.sampled_from(FIELDS.split())


@FUZZ
@given(st.sampled_from(list(Op)), st.dictionaries(field_names, values, max_size=6))
def test_every_op_with_arbitrary_fields_raises_only_protocol_errors(op: Op, fields: dict[str, Any]) -> None:
    decode_or_error(msgpack.packb({"op": str(op), **fields}, use_bin_type=True))


@FUZZ
@given(st.binary(min_size=1, max_size=60), st.integers(min_value=0, max_value=59))
def test_truncated_and_corrupted_valid_frames_raise_only_protocol_errors(noise: bytes, cut: int) -> None:
    frame = msgpack.packb({"op": "post", "stream": "s1", "text": "hello", "cmid": "c1", "rid": 7})
    decode_or_error(frame[:cut])
    decode_or_error(frame[:cut] + noise + frame[cut:])


# --- valid messages round-trip ------------------------------------------------------------------

rids = st.none() | st.integers(min_value=0, max_value=RID_MAX)
streams = st.from_regex(r"[A-Za-z0-9_.:\-]{1,128}", fullmatch=True)
ids = st.integers(min_value=1, max_value=ID_MAX)
users = st.text(st.characters(codec="utf-8"), min_size=1, max_size=USER_ID_MAX)
cmids = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Zs", "Co", "Cn")), min_size=1
)
cmids = cmids.filter(lambda c: len(c) <= CLIENT_MSG_ID_MAX and c.isprintable())
reasons = st.text(max_size=BAN_REASON_MAX).filter(lambda r: FORBIDDEN_TEXT.search(r) is None)


def _comment_text(raw: str) -> str:
    return unicodedata.normalize("NFC", raw).strip()


comment_texts = (
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)
    .map(_comment_text)
    .filter(lambda t: 0 < len(t) <= LIMITS.max_text_chars and FORBIDDEN_TEXT.search(t) is None)
)

messages = st.one_of(
    st.builds(Join, rids, streams, st.none() | ids),
    st.builds(Leave, rids, streams),
    st.builds(Post, rids, streams, comment_texts, cmids, st.none() | ids),
    st.builds(React, rids, streams, st.sampled_from(list(REACTIONS))),
    st.builds(Like, rids, streams, ids, st.booleans()),
    st.builds(History, rids, streams, st.none() | ids, st.integers(1, HISTORY_LIMIT_MAX)),
    st.builds(Ping, rids),
    st.builds(Report, rids, streams, ids, st.none() | users, reasons),
    st.builds(Report, rids, streams, st.none(), users, reasons),
    st.builds(DeleteComment, rids, streams, ids),
    st.builds(PurgeUser, rids, streams, users),
    st.builds(BanUser, rids, streams, users, st.none() | st.integers(1, TIMEOUT_MAX_S), reasons),
    st.builds(UnbanUser, rids, streams, users),
    st.builds(PinComment, rids, streams, st.none() | ids),
    st.builds(Highlight, rids, streams, ids),
    st.builds(SetSlowMode, rids, streams, st.integers(0, SLOW_MAX_S)),
    st.builds(SetFollowersOnly, rids, streams, st.none() | st.integers(0, FOLLOW_AGE_MAX_S)),
    st.builds(SetComments, rids, streams, st.booleans()),
)


def to_wire(message: ClientMessage) -> dict[str, Any]:
    """The map a client sends for ``message`` (docs/protocol.md §2); optional fields left out."""
    fields: dict[str, Any]
    match message:
        case Join(last_id=last_id):
            fields = {"op": Op.JOIN, "last_id": last_id}
        case Leave():
            fields = {"op": Op.LEAVE}
        case Post(text=text, cmid=cmid, reply_to=reply_to):
            fields = {"op": Op.POST, "text": text, "cmid": cmid, "reply_to": reply_to}
        case React(emoji=emoji):
            fields = {"op": Op.REACT, "emoji": emoji}
        case Like(comment_id=comment_id, on=on):
            fields = {"op": Op.LIKE if on else Op.UNLIKE, "id": comment_id}
        case History(before=before, limit=limit):
            fields = {"op": Op.HISTORY, "before": before, "limit": limit}
        case Ping():
            fields = {"op": Op.PING}
        case Report(comment_id=comment_id, user=user, reason=reason):
            fields = {"op": Op.REPORT, "id": comment_id, "user": user, "reason": reason}
        case DeleteComment(comment_id=comment_id):
            fields = {"op": Op.DELETE, "id": comment_id}
        case PurgeUser(user=user):
            fields = {"op": Op.PURGE, "user": user}
        case BanUser(user=user, seconds=None, reason=reason):
            fields = {"op": Op.BAN, "user": user, "reason": reason}
        case BanUser(user=user, seconds=seconds, reason=reason):
            fields = {"op": Op.TIMEOUT, "user": user, "seconds": seconds, "reason": reason}
        case UnbanUser(user=user):
            fields = {"op": Op.UNBAN, "user": user}
        case PinComment(comment_id=None):
            fields = {"op": Op.UNPIN}
        case PinComment(comment_id=comment_id):
            fields = {"op": Op.PIN, "id": comment_id}
        case Highlight(comment_id=comment_id):
            fields = {"op": Op.HIGHLIGHT, "id": comment_id}
        case SetSlowMode(seconds=seconds):
            fields = {"op": Op.SLOW, "seconds": seconds}
        case SetFollowersOnly(min_age_s=min_age_s):
            fields = {"op": Op.FOLLOWERS_ONLY, "min_age": min_age_s}
        case SetComments(enabled=enabled):
            fields = {"op": Op.COMMENTS, "enabled": enabled}
    if not isinstance(message, Ping):
        fields["stream"] = message.stream
    fields["rid"] = message.rid
    return {key: value for key, value in fields.items() if value is not None}


@FUZZ
@given(messages)
def test_valid_messages_round_trip(message: ClientMessage) -> None:
    assert decode_or_error(msgpack.packb(to_wire(message), use_bin_type=True)) == message


@FUZZ
@given(messages, st.dictionaries(st.text(max_size=8).map(lambda k: "x-" + k), str_keyed_values, max_size=3))
def test_unknown_fields_are_ignored(message: ClientMessage, extra: dict[str, Any]) -> None:
    wire = {**extra, **to_wire(message)}
    assert decode_or_error(msgpack.packb(wire, use_bin_type=True)) == message


class _Buggy(ClientDecoder):
    """A decoder with a bug the properties must find: a missing ``stream`` raises KeyError."""

    __slots__ = ()

    def _stream(self, obj: dict[str, Any], rid: int | None) -> str:
        stream: str = obj["stream"]
        return stream


def _escapes(op: Op, fields: dict[str, Any]) -> bool:
    try:
        decode_or_error(msgpack.packb({"op": str(op), **fields}, use_bin_type=True), _Buggy)
    except KeyError:
        return True
    return False


def test_the_properties_find_a_non_protocol_error() -> None:
    """The fuzzing can fail: against a buggy decoder its inputs make a KeyError escape."""
    op, fields = find(
        st.tuples(st.sampled_from(list(Op)), st.dictionaries(field_names, values, max_size=6)),
        lambda case: _escapes(*case),
        settings=settings(database=None, max_examples=400),
    )
    assert op != Op.PING and "stream" not in fields
