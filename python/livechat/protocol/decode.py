"""``ClientDecoder``: one client frame in, one typed message (``livechat.protocol.messages``) out.

Guarantee: ``decode`` returns a message that satisfies every rule of docs/protocol.md §2, or raises
``ProtocolError`` carrying the documented error code; it raises nothing else, whatever the bytes
(``tests/unit/test_decoder_fuzz.py``).
"""

from __future__ import annotations

import unicodedata
from typing import Any, Final, Protocol

import msgpack  # type: ignore[import-untyped]

from livechat.protocol.codes import REACTIONS, ErrorCode, Op
from livechat.protocol.errors import ProtocolError
from livechat.protocol.messages import (
    BanUser,
    ClientMessage,
    DeleteComment,
    Follow,
    Highlight,
    History,
    Join,
    Kick,
    Leave,
    Like,
    ModQueue,
    PinComment,
    Ping,
    Post,
    PurgeUser,
    React,
    Refresh,
    Report,
    Review,
    SetComments,
    SetFollowersOnly,
    SetHold,
    SetSlowMode,
    Top,
    UnbanUser,
)
from livechat.protocol.rules import (
    BAN_REASON_MAX,
    CLIENT_MSG_ID_MAX,
    FOLLOW_AGE_MAX_S,
    FORBIDDEN_TEXT,
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    HOLD_MAX_MS,
    HOLD_MIN_MS,
    HOLD_MODES,
    ID_MAX,
    QUEUE_LIMIT_DEFAULT,
    QUEUE_LIMIT_MAX,
    REVIEW_ACTIONS,
    RID_MAX,
    SLOW_MAX_S,
    STREAM_PATTERN,
    TIMEOUT_MAX_S,
    TOKEN_MAX,
    TOP_LIMIT_DEFAULT,
    TOP_LIMIT_MAX,
    USER_ID_MAX,
)

# Validated stream names a decoder remembers (a set lookup instead of a ~250 ns regex) before it
# starts over. Kept as hashes, not names: a pruned stream's name is freed with its room (issue 13)
# and the cache is ~0.5 MB at most. str hashes are SipHash keyed per process (PYTHONHASHSEED unset),
# so a client cannot forge a name that passes as a validated one.
STREAM_CACHE_MAX: Final = 8_192

# Bound once: CPython 3.11 compiles `NAME.search(...)` on an imported NAME without the method-call
# fast path, measured at +40 ns per post.
_forbidden_text = FORBIDDEN_TEXT.search
_stream_pattern = STREAM_PATTERN.fullmatch


class DecoderLimits(Protocol):
    """What the decoder reads of its configuration (``livechat.config.LimitsConfig`` is one), so the
    protocol package imports nothing above it."""

    @property
    def max_text_chars(self) -> int:
        """The longest comment in code points after NFC normalisation and stripping."""
        ...


def _bad(field: str, rule: str, rid: int | None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, f"{field}: {rule}", rid, field=field)


class ClientDecoder:
    """Decodes one client frame into a typed message, enforcing every rule of docs/protocol.md."""

    __slots__ = ("_ops", "_streams", "_text_max")

    def __init__(self, limits: DecoderLimits) -> None:
        self._text_max = limits.max_text_chars
        # hash() of stream names already validated (a set lookup instead of a regex per message).
        self._streams: set[int] = set()
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
            Op.REFRESH: self._refresh,
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
            Op.HOLD: self._hold,
            Op.KICK: self._kick,
            Op.QUEUE: self._queue,
            Op.REVIEW: self._review,
            Op.FOLLOW: self._follow,
            Op.UNFOLLOW: self._follow,
            Op.TOP: self._top,
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
        key = hash(stream)
        if key in self._streams:
            return stream
        if _stream_pattern(stream) is None:
            raise _bad("stream", "1..128 characters of A-Z a-z 0-9 _ . : -", rid)
        if len(self._streams) >= STREAM_CACHE_MAX:
            self._streams.clear()
        self._streams.add(key)
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
        if type(reason) is not str or len(reason) > BAN_REASON_MAX or _forbidden_text(reason):
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
        if _forbidden_text(text):
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
        limit = obj.get("limit", HISTORY_LIMIT_DEFAULT)
        if type(limit) is not int or not 0 < limit <= HISTORY_LIMIT_MAX:
            raise _bad("limit", f"an integer in 1..{HISTORY_LIMIT_MAX} (the server caps it further)", rid)
        return History(rid, stream, before, limit)

    def _ping(self, obj: dict[str, Any], rid: int | None, op: str) -> Ping:
        return Ping(rid)

    def _refresh(self, obj: dict[str, Any], rid: int | None, op: str) -> Refresh:
        token = obj.get("token")
        if type(token) is not str or not 0 < len(token) <= TOKEN_MAX:
            raise _bad("token", f"a JWT of 1..{TOKEN_MAX} characters", rid)
        return Refresh(rid, token)

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

    def _hold(self, obj: dict[str, Any], rid: int | None, op: str) -> SetHold:
        stream = self._stream(obj, rid)
        mode = obj.get("mode")
        if type(mode) is not str or mode not in HOLD_MODES:
            raise _bad("mode", "one of " + ", ".join(HOLD_MODES), rid)
        if obj.get("ms") is None:
            return SetHold(rid, stream, mode, None)
        return SetHold(rid, stream, mode, self._seconds(obj, "ms", HOLD_MIN_MS, HOLD_MAX_MS, rid))

    def _kick(self, obj: dict[str, Any], rid: int | None, op: str) -> Kick:
        return Kick(rid, self._stream(obj, rid), self._user(obj, rid))

    def _queue(self, obj: dict[str, Any], rid: int | None, op: str) -> ModQueue:
        stream = self._stream(obj, rid)
        limit = obj.get("limit", QUEUE_LIMIT_DEFAULT)
        if type(limit) is not int or not 0 < limit <= QUEUE_LIMIT_MAX:
            raise _bad("limit", f"an integer in 1..{QUEUE_LIMIT_MAX}", rid)
        return ModQueue(rid, stream, limit, self._id(obj, "before", rid, optional=True))

    def _review(self, obj: dict[str, Any], rid: int | None, op: str) -> Review:
        stream = self._stream(obj, rid)
        comment_id = self._id(obj, "id", rid)
        assert comment_id is not None
        action = obj.get("action")
        if action not in REVIEW_ACTIONS:
            raise _bad("action", " or ".join(REVIEW_ACTIONS), rid)
        return Review(rid, stream, comment_id, action == REVIEW_ACTIONS[0])

    def _follow(self, obj: dict[str, Any], rid: int | None, op: str) -> Follow:
        return Follow(rid, self._stream(obj, rid), op == Op.FOLLOW)

    def _top(self, obj: dict[str, Any], rid: int | None, op: str) -> Top:
        stream = self._stream(obj, rid)
        limit = obj.get("limit", TOP_LIMIT_DEFAULT)
        if type(limit) is not int or not 0 < limit <= TOP_LIMIT_MAX:
            raise _bad("limit", f"an integer in 1..{TOP_LIMIT_MAX}", rid)
        return Top(rid, stream, limit)
