"""The livechat wire protocol: msgpack maps in binary WebSocket frames (docs/protocol.md).

Client messages are decoded and validated here into typed objects (``ClientDecoder.decode``); a
message that breaks a rule raises ``ProtocolError`` carrying its documented error code. Server
messages are encoded here too, including envelopes that embed already-encoded events (a comment is
encoded once and the same bytes go to the tick, the history store, snapshots and direct sends).

Every error code and close code the server uses is a constant in this module.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from livechat.config import LimitsConfig

PROTOCOL_VERSION: Final = 1


class ErrorCode(StrEnum):
    """``code`` of an ``err`` message. Documented one by one in docs/protocol.md."""

    # Framing and decoding
    BAD_FRAME = "bad_frame"
    BAD_MSGPACK = "bad_msgpack"
    BAD_UTF8 = "bad_utf8"
    UNKNOWN_OP = "unknown_op"
    BAD_FIELD = "bad_field"
    # Comment text
    TEXT_EMPTY = "text_empty"
    TEXT_TOO_LONG = "text_too_long"
    BAD_TEXT = "bad_text"
    # Authentication (sent just before the close with the matching close code)
    AUTH_REQUIRED = "auth_required"
    AUTH_INVALID = "auth_invalid"
    AUTH_EXPIRED = "auth_expired"
    # Permission and state
    READ_ONLY = "read_only"
    FORBIDDEN = "forbidden"
    NOT_JOINED = "not_joined"
    TOO_MANY_STREAMS = "too_many_streams"
    NOT_FOUND = "not_found"
    # Limits and room modes
    RATE_LIMITED = "rate_limited"
    SLOW_MODE = "slow_mode"
    STREAM_BUSY = "stream_busy"
    BANNED = "banned"
    TIMED_OUT = "timed_out"
    COMMENTS_OFF = "comments_off"
    FOLLOWERS_ONLY = "followers_only"
    REJECTED = "rejected"
    # Server side
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """WebSocket close codes livechat uses. 1xxx are RFC 6455; 4xxx are livechat's own."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED = 1003
    INVALID_PAYLOAD = 1007
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    # No token, and anonymous access is off: reconnect with a token.
    AUTH_REQUIRED = 4001
    # Forged, malformed, wrong audience/issuer, refused algorithm, not yet valid: do not retry as is.
    AUTH_INVALID = 4002
    # Expired: refresh the token and reconnect.
    AUTH_EXPIRED = 4003
    # Too many error replies in a minute (a broken or hostile client).
    TOO_MANY_ERRORS = 4005
    # Set by the edge: send queue over its hard cap / no write progress (slow consumer).
    SLOW_CONSUMER = 4008
    WRITE_TIMEOUT = 4009


class Op(StrEnum):
    """``op`` of a client message."""

    JOIN = "join"
    LEAVE = "leave"
    POST = "post"
    REACT = "react"
    LIKE = "like"
    UNLIKE = "unlike"
    HISTORY = "history"
    PING = "ping"
    REPORT = "report"
    # Moderator / broadcaster
    DELETE = "delete"
    PURGE = "purge"
    TIMEOUT = "timeout"
    BAN = "ban"
    UNBAN = "unban"
    PIN = "pin"
    UNPIN = "unpin"
    HIGHLIGHT = "highlight"
    SLOW = "slow"
    FOLLOWERS_ONLY = "followers_only"
    COMMENTS = "comments"


MODERATOR_OPS: Final = frozenset(
    {
        Op.DELETE,
        Op.PURGE,
        Op.TIMEOUT,
        Op.BAN,
        Op.UNBAN,
        Op.PIN,
        Op.UNPIN,
        Op.HIGHLIGHT,
        Op.SLOW,
        Op.FOLLOWERS_ONLY,
        Op.COMMENTS,
    }
)

#: The five room reactions: wire name -> the emoji a client shows.
REACTIONS: Final[Mapping[str, str]] = {
    "heart": "\u2764\ufe0f",
    "laugh": "\U0001f602",
    "wow": "\U0001f62e",
    "sad": "\U0001f622",
    "angry": "\U0001f621",
}


class EventKind(StrEnum):
    """``k`` of an event inside a tick frame (``e``) or a direct ``ev`` message."""

    COMMENT = "c"
    DELETE = "del"
    PURGE = "purge"
    BAN = "ban"
    UNBAN = "unban"
    PIN = "pin"
    HIGHLIGHT = "hl"
    MODES = "modes"
    # The server may have missed events of this stream (broker reconnect): rejoin with the last id.
    GAP = "gap"


#: Event kinds that travel on the priority lane (never skipped for slow consumers).
PRIORITY_EVENTS: Final = frozenset(
    {
        EventKind.DELETE,
        EventKind.PURGE,
        EventKind.BAN,
        EventKind.UNBAN,
        EventKind.PIN,
        EventKind.HIGHLIGHT,
        EventKind.MODES,
        EventKind.GAP,
    }
)


class StateKey(StrEnum):
    """Keys of the latest-value state slots carried in a tick's ``st`` map."""

    COUNTS = "n"
    REACTIONS = "rx"
    LIKES = "likes"
    TIER = "tier"


# Field limits that are protocol, not configuration.
STREAM_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
USER_ID_MAX: Final = 128
CLIENT_MSG_ID_MAX: Final = 64
RID_MAX: Final = (1 << 53) - 1
ID_MAX: Final = (1 << 63) - 1
TIMEOUT_MAX_S: Final = 14 * 24 * 3600
SLOW_MAX_S: Final = 24 * 3600
FOLLOW_AGE_MAX_S: Final = 5 * 365 * 24 * 3600
BAN_REASON_MAX: Final = 200
MENTIONS_MAX: Final = 10
STREAM_CACHE_MAX: Final = 65_536

# C0/C1 controls, DEL, bidi embeddings/overrides/isolates: never valid in a comment.
_FORBIDDEN_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{1,32})")


class ProtocolError(Exception):
    """A client message broke a documented rule. Reply with ``encode_error`` and keep the connection."""

    def __init__(self, code: ErrorCode, message: str, rid: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid
        self.extra = extra

    def encode(self) -> bytes:
        return encode_error(self.code, self.message, self.rid, **self.extra)


# --- client messages --------------------------------------------------------------------------


@dataclass(slots=True)
class Join:
    rid: int | None
    stream: str
    # Newest comment id the client already has (reconnect); None on a first join.
    last_id: int | None


@dataclass(slots=True)
class Leave:
    rid: int | None
    stream: str


@dataclass(slots=True)
class Post:
    rid: int | None
    stream: str
    # NFC-normalised, stripped, 1..max_text_chars code points.
    text: str
    cmid: str
    reply_to: int | None


@dataclass(slots=True)
class React:
    rid: int | None
    stream: str
    emoji: str


@dataclass(slots=True)
class Like:
    rid: int | None
    stream: str
    comment_id: int
    # True for "like", False for "unlike".
    on: bool


@dataclass(slots=True)
class History:
    rid: int | None
    stream: str
    before: int | None
    limit: int


@dataclass(slots=True)
class Ping:
    rid: int | None


@dataclass(slots=True)
class Report:
    rid: int | None
    stream: str
    comment_id: int | None
    user: str | None
    reason: str


@dataclass(slots=True)
class DeleteComment:
    rid: int | None
    stream: str
    comment_id: int


@dataclass(slots=True)
class PurgeUser:
    rid: int | None
    stream: str
    user: str


@dataclass(slots=True)
class BanUser:
    """``ban`` (seconds None, permanent) or ``timeout`` (seconds set)."""

    rid: int | None
    stream: str
    user: str
    seconds: int | None
    reason: str


@dataclass(slots=True)
class UnbanUser:
    rid: int | None
    stream: str
    user: str


@dataclass(slots=True)
class PinComment:
    """``pin`` (comment_id set) or ``unpin`` (None)."""

    rid: int | None
    stream: str
    comment_id: int | None


@dataclass(slots=True)
class Highlight:
    rid: int | None
    stream: str
    comment_id: int


@dataclass(slots=True)
class SetSlowMode:
    rid: int | None
    stream: str
    seconds: int


@dataclass(slots=True)
class SetFollowersOnly:
    rid: int | None
    stream: str
    # None switches the mode off; 0 = any follower.
    min_age_s: int | None


@dataclass(slots=True)
class SetComments:
    rid: int | None
    stream: str
    enabled: bool


ModeratorMessage = (
    DeleteComment
    | PurgeUser
    | BanUser
    | UnbanUser
    | PinComment
    | Highlight
    | SetSlowMode
    | SetFollowersOnly
    | SetComments
)
ClientMessage = Join | Leave | Post | React | Like | History | Ping | Report | ModeratorMessage


def extract_mentions(text: str) -> list[str]:
    """Lower-cased @handles in order of first appearance, at most MENTIONS_MAX."""
    found: list[str] = []
    for match in _MENTION.finditer(text):
        handle = match.group(1).lower()
        if handle not in found:
            found.append(handle)
            if len(found) == MENTIONS_MAX:
                break
    return found


def _bad(field: str, rule: str, rid: int | None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, f"{field}: {rule}", rid, field=field)


class ClientDecoder:
    """Decodes one client frame into a typed message, enforcing every rule of docs/protocol.md."""

    __slots__ = ("_ops", "_streams", "_text_max")

    def __init__(self, limits: LimitsConfig) -> None:
        self._text_max = limits.max_text_chars
        # Stream names already validated (a set lookup instead of a regex per message).
        self._streams: set[str] = set()
        self._ops: dict[str, Any] = {
            Op.JOIN: self._join,
            Op.LEAVE: self._leave,
            Op.POST: self._post,
            Op.REACT: self._react,
            Op.LIKE: self._like,
            Op.UNLIKE: self._like,
            Op.HISTORY: self._history,
            Op.PING: self._ping,
            Op.REPORT: self._report,
            Op.DELETE: self._delete,
            Op.PURGE: self._purge,
            Op.TIMEOUT: self._ban,
            Op.BAN: self._ban,
            Op.UNBAN: self._unban,
            Op.PIN: self._pin,
            Op.UNPIN: self._pin,
            Op.HIGHLIGHT: self._highlight,
            Op.SLOW: self._slow,
            Op.FOLLOWERS_ONLY: self._followers_only,
            Op.COMMENTS: self._comments,
        }

    def decode(self, data: bytes | str) -> ClientMessage:
        """Decode and validate one frame; raises ProtocolError with the documented code."""
        if not isinstance(data, bytes):
            raise ProtocolError(
                ErrorCode.BAD_FRAME, "text frames are not accepted: send msgpack in binary frames"
            )
        try:
            obj = msgpack.unpackb(data, raw=False)
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.BAD_UTF8, "a string is not valid UTF-8") from None
        except (ValueError, TypeError, msgpack.UnpackException):
            raise ProtocolError(
                ErrorCode.BAD_MSGPACK, "the frame is not one well-formed msgpack value"
            ) from None
        if type(obj) is not dict:
            raise ProtocolError(ErrorCode.BAD_FRAME, "a client message is a msgpack map")
        rid = obj.get("rid")
        if rid is not None and (type(rid) is not int or not 0 <= rid <= RID_MAX):
            raise _bad("rid", f"an integer in 0..{RID_MAX}", None)
        op = obj.get("op")
        handler = self._ops.get(op) if type(op) is str else None
        if handler is None:
            raise ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown op {op!r}", rid)
        message: ClientMessage = handler(obj, rid, op)
        return message

    # -- field readers --------------------------------------------------------------------------

    def _stream(self, obj: dict[str, Any], rid: int | None) -> str:
        stream = obj.get("stream")
        if type(stream) is not str:
            raise _bad("stream", "1..128 characters of A-Z a-z 0-9 _ . : -", rid)
        if stream in self._streams:
            return stream
        if STREAM_PATTERN.fullmatch(stream) is None:
            raise _bad("stream", "1..128 characters of A-Z a-z 0-9 _ . : -", rid)
        if len(self._streams) >= STREAM_CACHE_MAX:
            self._streams.clear()
        self._streams.add(stream)
        return stream

    @staticmethod
    def _id(obj: dict[str, Any], field: str, rid: int | None, *, optional: bool = False) -> int | None:
        value = obj.get(field)
        if value is None and optional:
            return None
        if type(value) is not int or not 0 < value <= ID_MAX:
            raise _bad(field, "a positive 64-bit comment id", rid)
        return value

    @staticmethod
    def _user(obj: dict[str, Any], rid: int | None) -> str:
        user = obj.get("user")
        if type(user) is not str or not 0 < len(user) <= USER_ID_MAX:
            raise _bad("user", f"a user id of 1..{USER_ID_MAX} characters", rid)
        return user

    @staticmethod
    def _seconds(obj: dict[str, Any], field: str, low: int, high: int, rid: int | None) -> int:
        value = obj.get(field)
        if type(value) is not int or not low <= value <= high:
            raise _bad(field, f"an integer in {low}..{high}", rid)
        return value

    @staticmethod
    def _reason(obj: dict[str, Any], rid: int | None) -> str:
        reason = obj.get("reason", "")
        if reason is None:
            return ""
        if type(reason) is not str or len(reason) > BAN_REASON_MAX or _FORBIDDEN_TEXT.search(reason):
            raise _bad(
                "reason", f"text of at most {BAN_REASON_MAX} characters without control characters", rid
            )
        return reason

    # -- one method per op ----------------------------------------------------------------------

    def _join(self, obj: dict[str, Any], rid: int | None, op: str) -> Join:
        return Join(rid, self._stream(obj, rid), self._id(obj, "last_id", rid, optional=True))

    def _leave(self, obj: dict[str, Any], rid: int | None, op: str) -> Leave:
        return Leave(rid, self._stream(obj, rid))

    def _post(self, obj: dict[str, Any], rid: int | None, op: str) -> Post:
        stream = self._stream(obj, rid)
        cmid = obj.get("cmid")
        if type(cmid) is not str or not 0 < len(cmid) <= CLIENT_MSG_ID_MAX or not cmid.isprintable():
            raise _bad("cmid", f"a client message id of 1..{CLIENT_MSG_ID_MAX} printable characters", rid)
        text = obj.get("text")
        if type(text) is not str:
            raise _bad("text", "a string", rid)
        if not text.isascii() and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        text = text.strip()
        if not text:
            raise ProtocolError(ErrorCode.TEXT_EMPTY, "the comment is empty", rid, cmid=cmid)
        if len(text) > self._text_max:
            raise ProtocolError(
                ErrorCode.TEXT_TOO_LONG,
                f"{len(text)} characters after NFC normalisation; the limit is {self._text_max}",
                rid,
                cmid=cmid,
                max=self._text_max,
            )
        if _FORBIDDEN_TEXT.search(text):
            raise ProtocolError(
                ErrorCode.BAD_TEXT, "control or bidi-override characters are not allowed", rid, cmid=cmid
            )
        return Post(rid, stream, text, cmid, self._id(obj, "reply_to", rid, optional=True))

    def _react(self, obj: dict[str, Any], rid: int | None, op: str) -> React:
        stream = self._stream(obj, rid)
        emoji = obj.get("emoji")
        if type(emoji) is not str or emoji not in REACTIONS:
            raise _bad("emoji", "one of " + ", ".join(REACTIONS), rid)
        return React(rid, stream, emoji)

    def _like(self, obj: dict[str, Any], rid: int | None, op: str) -> Like:
        stream = self._stream(obj, rid)
        comment_id = self._id(obj, "id", rid)
        assert comment_id is not None
        return Like(rid, stream, comment_id, op == Op.LIKE)

    def _history(self, obj: dict[str, Any], rid: int | None, op: str) -> History:
        stream = self._stream(obj, rid)
        before = self._id(obj, "before", rid, optional=True)
        limit = obj.get("limit", 50)
        if type(limit) is not int or not 0 < limit <= 1000:
            raise _bad("limit", "an integer in 1..1000 (the server caps it further)", rid)
        return History(rid, stream, before, limit)

    def _ping(self, obj: dict[str, Any], rid: int | None, op: str) -> Ping:
        return Ping(rid)

    def _report(self, obj: dict[str, Any], rid: int | None, op: str) -> Report:
        stream = self._stream(obj, rid)
        comment_id = self._id(obj, "id", rid, optional=True)
        user = self._user(obj, rid) if obj.get("user") is not None else None
        if comment_id is None and user is None:
            raise _bad("id", "a report names a comment (id) or a user (user)", rid)
        return Report(rid, stream, comment_id, user, self._reason(obj, rid))

    def _delete(self, obj: dict[str, Any], rid: int | None, op: str) -> DeleteComment:
        stream = self._stream(obj, rid)
        comment_id = self._id(obj, "id", rid)
        assert comment_id is not None
        return DeleteComment(rid, stream, comment_id)

    def _purge(self, obj: dict[str, Any], rid: int | None, op: str) -> PurgeUser:
        return PurgeUser(rid, self._stream(obj, rid), self._user(obj, rid))

    def _ban(self, obj: dict[str, Any], rid: int | None, op: str) -> BanUser:
        stream = self._stream(obj, rid)
        user = self._user(obj, rid)
        seconds = self._seconds(obj, "seconds", 1, TIMEOUT_MAX_S, rid) if op == Op.TIMEOUT else None
        return BanUser(rid, stream, user, seconds, self._reason(obj, rid))

    def _unban(self, obj: dict[str, Any], rid: int | None, op: str) -> UnbanUser:
        return UnbanUser(rid, self._stream(obj, rid), self._user(obj, rid))

    def _pin(self, obj: dict[str, Any], rid: int | None, op: str) -> PinComment:
        stream = self._stream(obj, rid)
        comment_id = self._id(obj, "id", rid) if op == Op.PIN else None
        return PinComment(rid, stream, comment_id)

    def _highlight(self, obj: dict[str, Any], rid: int | None, op: str) -> Highlight:
        stream = self._stream(obj, rid)
        comment_id = self._id(obj, "id", rid)
        assert comment_id is not None
        return Highlight(rid, stream, comment_id)

    def _slow(self, obj: dict[str, Any], rid: int | None, op: str) -> SetSlowMode:
        return SetSlowMode(rid, self._stream(obj, rid), self._seconds(obj, "seconds", 0, SLOW_MAX_S, rid))

    def _followers_only(self, obj: dict[str, Any], rid: int | None, op: str) -> SetFollowersOnly:
        stream = self._stream(obj, rid)
        if obj.get("min_age") is None:
            return SetFollowersOnly(rid, stream, None)
        return SetFollowersOnly(rid, stream, self._seconds(obj, "min_age", 0, FOLLOW_AGE_MAX_S, rid))

    def _comments(self, obj: dict[str, Any], rid: int | None, op: str) -> SetComments:
        stream = self._stream(obj, rid)
        enabled = obj.get("enabled")
        if type(enabled) is not bool:
            raise _bad("enabled", "true or false", rid)
        return SetComments(rid, stream, enabled)


# --- server messages --------------------------------------------------------------------------

_packb = msgpack.Packer(use_bin_type=True).pack


class Raw:
    """Already-encoded msgpack bytes to embed as one value (``pack_map``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class RawArray:
    """A msgpack array of already-encoded values."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[bytes]) -> None:
        self.items = items


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    if n < 0x10000:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def pack_raw_array(items: Sequence[bytes]) -> bytes:
    """A msgpack array whose elements are the given encoded values."""
    return _array_header(len(items)) + b"".join(items)


def pack_map(fields: Mapping[str, Any]) -> bytes:
    """Encode a map whose values may be ``Raw`` / ``RawArray`` (embedded as is); None values are kept."""
    parts = [_map_header(len(fields))]
    for key, value in fields.items():
        parts.append(_packb(key))
        if isinstance(value, Raw):
            parts.append(value.data)
        elif isinstance(value, RawArray):
            parts.append(pack_raw_array(value.items))
        else:
            parts.append(_packb(value))
    return b"".join(parts)


def packb(value: Any) -> bytes:
    """msgpack-encode a plain value (str as str, bytes as bin)."""
    data: bytes = _packb(value)
    return data


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


def _with_rid(fields: dict[str, Any], rid: int | None) -> dict[str, Any]:
    if rid is not None:
        fields["rid"] = rid
    return fields


def encode_error(code: ErrorCode, message: str, rid: int | None = None, **extra: Any) -> bytes:
    """``{"t": "err", "code", "msg", "rid"?, ...extra}`` (extra: retry_ms, until, cmid, field, max)."""
    fields: dict[str, Any] = {"t": "err", "code": str(code), "msg": message}
    if rid is not None:
        fields["rid"] = rid
    fields.update(extra)
    return packb(fields)


def encode_ack(
    rid: int | None, stream: str, cmid: str, comment_id: int, ts_ms: int, duplicate: bool
) -> bytes:
    """The author's acknowledgement of a stored comment; a repost gets the first ack with dup=True."""
    fields: dict[str, Any] = {"t": "ack", "s": stream, "cmid": cmid, "id": comment_id, "ts": ts_ms}
    if duplicate:
        fields["dup"] = True
    return packb(_with_rid(fields, rid))


def encode_ok(rid: int | None, op: str) -> bytes:
    return packb(_with_rid({"t": "ok", "op": op}, rid))


def encode_pong(rid: int | None, ts_ms: int) -> bytes:
    return packb(_with_rid({"t": "pong", "ts": ts_ms}, rid))


def encode_notice(stream: str, code: str, message: str, **extra: Any) -> bytes:
    """A notice to one user: banned, timed_out, unbanned, role."""
    fields: dict[str, Any] = {"t": "notice", "s": stream, "code": code, "msg": message}
    fields.update(extra)
    return packb(fields)


def encode_direct(stream: str, events: Sequence[bytes]) -> bytes:
    """``{"t": "ev", "s", "e": [event...]}``: events sent to chosen connections outside the tick."""
    return pack_map({"t": "ev", "s": stream, "e": RawArray(events)})


def encode_history(rid: int | None, stream: str, items: Sequence[bytes], more: bool) -> bytes:
    """A history page: ``items`` newest first; ``more`` when older comments remain."""
    fields: dict[str, Any] = {"t": "history", "s": stream, "items": RawArray(items), "more": more}
    return pack_map(_with_rid(fields, rid))


def encode_comment(
    comment_id: int,
    user_id: str,
    name: str,
    text: str,
    ts_ms: int,
    reply_to: int | None,
    mentions: Sequence[str],
    badge: str | None,
) -> bytes:
    """A comment event ``{"k": "c", "id", "u", "n", "x", "ts", "r"?, "m"?, "b"?}``."""
    fields: dict[str, Any] = {"k": "c", "id": comment_id, "u": user_id, "n": name, "x": text, "ts": ts_ms}
    if reply_to is not None:
        fields["r"] = reply_to
    if mentions:
        fields["m"] = mentions
    if badge is not None:
        fields["b"] = badge
    return packb(fields)


def encode_delete(comment_id: int, keep_for: str | None = None) -> bytes:
    """Tombstone. ``keep`` names the author of a shadow-banned comment, whose client keeps it."""
    if keep_for is None:
        return packb({"k": "del", "id": comment_id})
    return packb({"k": "del", "id": comment_id, "keep": keep_for})


def encode_purge(user_id: str) -> bytes:
    return packb({"k": "purge", "u": user_id})


def encode_ban(user_id: str, until_ms: int | None) -> bytes:
    return packb({"k": "ban", "u": user_id, "until": until_ms})


def encode_unban(user_id: str) -> bytes:
    return packb({"k": "unban", "u": user_id})


def encode_pin(comment: bytes | None) -> bytes:
    """The pinned comment's event, or nil for unpin."""
    return pack_map({"k": "pin", "c": Raw(comment) if comment is not None else None})


def encode_highlight(comment_id: int) -> bytes:
    return packb({"k": "hl", "id": comment_id})


def modes_fields(slow_s: int, followers_min_age_s: int | None, comments_off: bool) -> dict[str, Any]:
    return {"slow": slow_s, "fo": followers_min_age_s, "off": comments_off}


def encode_modes(slow_s: int, followers_min_age_s: int | None, comments_off: bool) -> bytes:
    fields: dict[str, Any] = {"k": "modes"}
    fields.update(modes_fields(slow_s, followers_min_age_s, comments_off))
    return packb(fields)


def tier_fields(level: int, keep_ppm: int, rate: float) -> dict[str, Any]:
    """``{"lvl", "pct", "rate"}``: level 0 = everything broadcast; pct = share broadcast."""
    return {"lvl": level, "pct": keep_ppm / 10_000, "rate": round(rate, 1)}
