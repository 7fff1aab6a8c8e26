"""Server messages and events as msgpack bytes (docs/protocol.md §3-§5), and the pack helpers.

Envelopes can embed already-encoded events (``Raw``, ``RawArray``): a comment is encoded once and
the same bytes go to the tick, the history store, snapshots and direct sends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from livechat.protocol.codes import ErrorCode, EventKind, MessageType

_packb = msgpack.Packer(use_bin_type=True).pack

# The codes as plain str: msgpack packs an enum member (a str subclass) on a slower path, measured
# at 70-170 ns more per encode_comment.
_T_ERROR: Final = MessageType.ERROR.value
_T_ACK: Final = MessageType.ACK.value
_T_OK: Final = MessageType.OK.value
_T_PONG: Final = MessageType.PONG.value
_T_NOTICE: Final = MessageType.NOTICE.value
_T_DIRECT: Final = MessageType.DIRECT.value
_T_HISTORY: Final = MessageType.HISTORY.value
_K_COMMENT: Final = EventKind.COMMENT.value
_K_DELETE: Final = EventKind.DELETE.value
_K_PURGE: Final = EventKind.PURGE.value
_K_BAN: Final = EventKind.BAN.value
_K_UNBAN: Final = EventKind.UNBAN.value
_K_PIN: Final = EventKind.PIN.value
_K_HIGHLIGHT: Final = EventKind.HIGHLIGHT.value
_K_MODES: Final = EventKind.MODES.value


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
    fields: dict[str, Any] = {"t": _T_ERROR, "code": str(code), "msg": message}
    if rid is not None:
        fields["rid"] = rid
    fields.update(extra)
    return packb(fields)


def encode_ack(
    rid: int | None, stream: str, cmid: str, comment_id: int, ts_ms: int, duplicate: bool
) -> bytes:
    """The author's acknowledgement of a stored comment; a repost gets the first ack with dup=True."""
    fields: dict[str, Any] = {"t": _T_ACK, "s": stream, "cmid": cmid, "id": comment_id, "ts": ts_ms}
    if duplicate:
        fields["dup"] = True
    return packb(_with_rid(fields, rid))


def encode_ok(rid: int | None, op: str) -> bytes:
    return packb(_with_rid({"t": _T_OK, "op": op}, rid))


def encode_pong(rid: int | None, ts_ms: int) -> bytes:
    return packb(_with_rid({"t": _T_PONG, "ts": ts_ms}, rid))


def encode_notice(stream: str, code: str, message: str, **extra: Any) -> bytes:
    """A notice to one user: banned, timed_out, unbanned, role."""
    fields: dict[str, Any] = {"t": _T_NOTICE, "s": stream, "code": code, "msg": message}
    fields.update(extra)
    return packb(fields)


def encode_direct(stream: str, events: Sequence[bytes]) -> bytes:
    """``{"t": "ev", "s", "e": [event...]}``: events sent to chosen connections outside the tick."""
    return pack_map({"t": _T_DIRECT, "s": stream, "e": RawArray(events)})


def encode_history(rid: int | None, stream: str, items: Sequence[bytes], more: bool) -> bytes:
    """A history page: ``items`` newest first; ``more`` when older comments remain."""
    fields: dict[str, Any] = {"t": _T_HISTORY, "s": stream, "items": RawArray(items), "more": more}
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
    fields: dict[str, Any] = {
        "k": _K_COMMENT,
        "id": comment_id,
        "u": user_id,
        "n": name,
        "x": text,
        "ts": ts_ms,
    }
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
        return packb({"k": _K_DELETE, "id": comment_id})
    return packb({"k": _K_DELETE, "id": comment_id, "keep": keep_for})


def encode_purge(user_id: str) -> bytes:
    return packb({"k": _K_PURGE, "u": user_id})


def encode_ban(user_id: str, until_ms: int | None) -> bytes:
    return packb({"k": _K_BAN, "u": user_id, "until": until_ms})


def encode_unban(user_id: str) -> bytes:
    return packb({"k": _K_UNBAN, "u": user_id})


def encode_pin(comment: bytes | None) -> bytes:
    """The pinned comment's event, or nil for unpin."""
    return pack_map({"k": _K_PIN, "c": Raw(comment) if comment is not None else None})


def encode_highlight(comment_id: int) -> bytes:
    return packb({"k": _K_HIGHLIGHT, "id": comment_id})


def modes_fields(
    slow_s: int,
    followers_min_age_s: int | None,
    comments_off: bool,
    hold: str | None = None,
    hold_ms: int = 0,
) -> dict[str, Any]:
    """The ``modes`` of a snapshot and event; ``hold`` and ``hold_ms`` (hold for review) when set."""
    fields: dict[str, Any] = {"slow": slow_s, "fo": followers_min_age_s, "off": comments_off}
    if hold is not None:
        fields["hold"] = hold
        fields["hold_ms"] = hold_ms
    return fields


def encode_modes(
    slow_s: int,
    followers_min_age_s: int | None,
    comments_off: bool,
    hold: str | None = None,
    hold_ms: int = 0,
) -> bytes:
    fields: dict[str, Any] = {"k": _K_MODES}
    fields.update(modes_fields(slow_s, followers_min_age_s, comments_off, hold, hold_ms))
    return packb(fields)


def tier_fields(level: int, keep_ppm: int, rate: float) -> dict[str, Any]:
    """``{"lvl", "pct", "rate"}``: level 0 = everything broadcast; pct = share broadcast."""
    return {"lvl": level, "pct": keep_ppm / 10_000, "rate": round(rate, 1)}
