"""Every code of the livechat wire protocol, in one place (docs/protocol.md §2-§7).

Error codes, close codes, ops, server message types, event kinds, state keys and reaction names.
The JavaScript client (``livechat/web/livechat-client.js``) carries a generated copy and the Rust
edge (``edge_core/src/proto``) its own constants; ``tests/unit/test_codes_agree.py`` fails when any
copy differs from this module, and ``tests/unit/test_protocol.py`` when docs/protocol.md misses one.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Final

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
    # Never sent in a close frame (RFC 6455 §7.4.1): an empty close payload is reported as 1005,
    # a connection that ended without any close frame as 1006.
    NO_STATUS = 1005
    ABNORMAL = 1006
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
    # A moderator kicked you from a stream you had joined (no ban: reconnecting is allowed).
    KICKED = 4010


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
    # A new token for this connection before the current one expires.
    REFRESH = "refresh"
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
    # Hold for review: viewer comments wait for the classifier before fan-out (or not).
    HOLD = "hold"
    # Disconnect a user's connections in a stream, on every edge (no ban).
    KICK = "kick"
    # The moderation queue: flagged comments and reports; a flagged comment approved or dismissed.
    QUEUE = "queue"
    REVIEW = "review"
    # Follow / unfollow the channel a stream belongs to (followers-only mode).
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    # The stream's top comments (likes, replies, author reputation).
    TOP = "top"


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
        Op.HOLD,
        Op.KICK,
        Op.QUEUE,
        Op.REVIEW,
    }
)


class MessageType(StrEnum):
    """``t`` of a server message (docs/protocol.md §3)."""

    TICK = "tick"
    # Events for one connection only, outside the tick.
    DIRECT = "ev"
    ACK = "ack"
    ERROR = "err"
    OK = "ok"
    SNAPSHOT = "snapshot"
    HISTORY = "history"
    PONG = "pong"
    NOTICE = "notice"
    # Reply to ``queue``: a page of the moderation queue.
    QUEUE = "queue"
    # Reply to ``top``: the stream's top comments, best first.
    TOP = "top"


#: Replies matched to a pending request by ``rid`` (a ``snapshot`` and an ``err`` are too, with more to do).
REPLY_TYPES: Final = frozenset(
    {
        MessageType.ACK,
        MessageType.OK,
        MessageType.HISTORY,
        MessageType.PONG,
        MessageType.QUEUE,
        MessageType.TOP,
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
    # A user was kicked from the stream (their connections in it are closed on every edge).
    KICK = "kick"


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
        EventKind.KICK,
    }
)


class StateKey(StrEnum):
    """Keys of the latest-value state slots carried in a tick's ``st`` map (and in a snapshot)."""

    COUNTS = "n"
    REACTIONS = "rx"
    LIKES = "likes"
    TIER = "tier"
