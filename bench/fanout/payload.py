"""The bench message and the two ways servers deliver it.

A bench message is 100 bytes: a msgpack bin8 header (so the whole message is one valid msgpack
value, whatever a server's inbound validation) around magic, sequence number and the publisher's
CLOCK_MONOTONIC send time in ns, zero padded. CLOCK_MONOTONIC is system-wide on Linux, so a
viewer in another process subtracts it from its own ``time.monotonic_ns()``.

Peers deliver each message as its own WebSocket message; livechat fanout delivers tick frames,
``{"t": "tick", "s": stream, "q": seq, "e": [message, ...]}``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import msgpack  # type: ignore[import-untyped]

PAYLOAD_BYTES = 100
MAGIC = b"LCB1"
_HEADER = bytes([0xC4, PAYLOAD_BYTES - 2])
_BODY = struct.Struct("<4sQq")
_PADDING = bytes(PAYLOAD_BYTES - len(_HEADER) - _BODY.size)

# (sequence numbers, send times in ns) of the bench messages one WebSocket message carries.
Carried = tuple[list[int], list[int]]
Decoder = Callable[[bytes], Carried]


class NotBenchMessage(ValueError):
    """A received WebSocket message is neither a bench message nor a tick frame of them."""


def encode(seq: int, sent_ns: int) -> bytes:
    return _HEADER + _BODY.pack(MAGIC, seq, sent_ns) + _PADDING


def decode(message: bytes) -> tuple[int, int]:
    """(seq, sent_ns) of one bench message."""
    if len(message) != PAYLOAD_BYTES or message[:2] != _HEADER:
        raise NotBenchMessage(f"not a bench message: {message[:16]!r} ({len(message)} bytes)")
    magic, seq, sent_ns = _BODY.unpack_from(message, len(_HEADER))
    if magic != MAGIC:
        raise NotBenchMessage(f"bad magic {magic!r}")
    return seq, sent_ns


def decode_single(message: bytes) -> Carried:
    seq, sent_ns = decode(message)
    return [seq], [sent_ns]


def decode_tick(message: bytes) -> Carried:
    """The bench messages of one tick frame, in frame order. A frame with no events carries none."""
    try:
        frame = msgpack.unpackb(message, raw=False)
    except (ValueError, msgpack.ExtraData) as exc:
        raise NotBenchMessage(f"tick frame is not msgpack: {exc}") from exc
    if not isinstance(frame, dict) or frame.get("t") != "tick":
        raise NotBenchMessage(f"not a tick frame: {message[:32]!r}")
    events = frame.get("e", [])
    if not isinstance(events, list):
        raise NotBenchMessage(f"tick frame 'e' is {type(events).__name__}, not a list")
    seqs: list[int] = []
    sent: list[int] = []
    for event in events:
        raw = event.encode() if isinstance(event, str) else event
        if not isinstance(raw, bytes):
            raise NotBenchMessage(f"tick event is {type(event).__name__}, not bin or str")
        seq, sent_ns = decode(raw)
        seqs.append(seq)
        sent.append(sent_ns)
    return seqs, sent


def decoder_for(tick_frames: bool) -> Decoder:
    return decode_tick if tick_frames else decode_single
