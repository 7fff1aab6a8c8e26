"""The edge core's codec pieces against their Python peers, side by side (pytest-benchmark).

Run: ``pytest bench/test_proto.py --benchmark-only`` (groups = one operation on one input; the
rows of a group are the implementations). Every benchmark first asserts that its implementation
gives the same answer as the others on that input, then times it.

- frame encode: ``livechat._edge.encode_frame`` vs websockets' ``Frame.serialize`` vs picows'
  ``WSTransport.send`` (into a transport that keeps the bytes: picows builds frames only inside
  ``send``). Server frames (unmasked) and client frames (masked).
- frame parse: ``decode_client_frames`` vs websockets' ``Frame.parse`` on a batch of 64 masked
  client frames (picows's parser is reachable only from a live socket, so it is not here).
- permessage-deflate: ``deflate`` / ``inflate`` vs ``zlib`` with wbits=-15, one compressor per
  message (no context takeover, as the edge compresses ticks).
- msgpack: ``msgpack_valid`` vs ``msgpack.unpackb`` as a validity check; ``encode_tick`` vs
  ``msgpack.packb`` of the tick dict (events as objects, and events pre-encoded + joined).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from livechat import _edge
from picows import WSMsgType
from picows.picows import WSTransport
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

MASK = b"\x37\xfa\x21\x3d"
TAIL = b"\x00\x00\xff\xff"


def _comment(i: int, rng: random.Random) -> dict[str, Any]:
    words = "lol gg nice play wow hello chat pin this first time here hi from brazil insane clip".split()
    text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 14)))
    return {
        "k": "c",
        "id": (1 << 50) + i * 4099,
        "u": f"user-{rng.randint(1, 99999)}",
        "n": "Viewer",
        "x": text,
    }


_RNG = random.Random(3)
EVENTS = [_comment(i, _RNG) for i in range(100)]
EVENT_BYTES = [msgpack.packb(e) for e in EVENTS]
TICK = msgpack.packb({"t": "tick", "s": "stream-1", "q": 41, "e": EVENTS})
PAYLOADS = {"125B": os.urandom(125), "4KiB": os.urandom(4096), "64KiB": os.urandom(65536)}
COMPRESSIBLE = {"tick-9KiB": TICK, "64KiB": (TICK * 8)[:65536]}


class _KeepBytes:
    """The asyncio transport picows writes frames into; keeps the last write."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.last = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def get_write_buffer_size(self) -> int:
        # Non-zero: picows then hands the frame to write() instead of send()-ing on the socket.
        return 1

    def write(self, data: bytes) -> None:
        self.last = data

    def writelines(self, parts: list[Any]) -> None:
        self.last = b"".join(parts)


def _picows_sender(client_side: bool) -> tuple[Callable[[bytes], bytes], Callable[[], None]]:
    sink = _KeepBytes()
    loop = asyncio.new_event_loop()
    transport = WSTransport(client_side, sink, logging.getLogger("bench.picows"), loop)

    def send(payload: bytes) -> bytes:
        transport.send(WSMsgType.BINARY, payload)
        return sink.last

    def close() -> None:
        loop.close()
        sink.sock.close()

    return send, close


def _unmask_client_frame(frame: bytes) -> bytes:
    """Payload of one masked client frame (any mask), to compare encoders with random masks."""
    reader = StreamReader()
    reader.feed_data(frame)
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        return bytes(done.value.data)
    raise AssertionError("incomplete frame")


# --- frame encode ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", list(PAYLOADS))
@pytest.mark.parametrize("impl", ["livechat", "websockets", "picows"])
def test_server_frame_encode(benchmark: Any, impl: str, size: str) -> None:
    benchmark.group = f"server frame encode {size}"
    payload = PAYLOADS[size]
    expected = _edge.encode_frame(payload)
    close = None
    if impl == "livechat":
        fn: Callable[[], bytes] = lambda: _edge.encode_frame(payload)  # noqa: E731
    elif impl == "websockets":
        frame = Frame(Opcode.BINARY, payload)
        fn = lambda: frame.serialize(mask=False)  # noqa: E731
    else:
        send, close = _picows_sender(client_side=False)
        fn = lambda: send(payload)  # noqa: E731
    try:
        assert fn() == expected
        benchmark(fn)
    finally:
        if close:
            close()


@pytest.mark.parametrize("size", list(PAYLOADS))
@pytest.mark.parametrize("impl", ["livechat", "websockets", "picows"])
def test_client_frame_encode(benchmark: Any, impl: str, size: str) -> None:
    benchmark.group = f"client frame encode (masked) {size}"
    payload = PAYLOADS[size]
    close = None
    if impl == "livechat":
        fn: Callable[[], bytes] = lambda: _edge.encode_frame(payload, True, MASK)  # noqa: E731
    elif impl == "websockets":
        frame = Frame(Opcode.BINARY, payload)
        fn = lambda: frame.serialize(mask=True)  # noqa: E731
    else:
        send, close = _picows_sender(client_side=True)
        fn = lambda: send(payload)  # noqa: E731
    try:
        out = fn()
        assert len(out) == len(_edge.encode_frame(payload, True, MASK))
        assert _unmask_client_frame(out) == payload
        benchmark(fn)
    finally:
        if close:
            close()


# --- frame parse ----------------------------------------------------------------------------


def _websockets_parse(data: bytes) -> list[bytes]:
    reader = StreamReader()
    reader.feed_data(data)
    out = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=True, max_size=1 << 20)
        try:
            next(parser)
        except StopIteration as done:
            out.append(done.value.data)
    return out


@pytest.mark.parametrize("size", ["125B", "4KiB"])
@pytest.mark.parametrize("impl", ["livechat", "websockets"])
def test_client_frames_parse_64(benchmark: Any, impl: str, size: str) -> None:
    benchmark.group = f"parse 64 masked client frames of {size}"
    payload = PAYLOADS[size]
    batch = _edge.encode_frame(payload, True, MASK) * 64
    if impl == "livechat":
        fn: Callable[[], list[bytes]] = lambda: _edge.decode_client_frames(batch)[0]  # noqa: E731
    else:
        fn = lambda: _websockets_parse(batch)  # noqa: E731
    assert [bytes(m) for m in fn()] == [payload] * 64
    benchmark(fn)


# --- permessage-deflate ---------------------------------------------------------------------


def _zlib_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(3, zlib.DEFLATED, -15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _zlib_inflate(data: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(data + TAIL)


@pytest.mark.parametrize("name", list(COMPRESSIBLE))
@pytest.mark.parametrize("impl", ["livechat", "zlib"])
def test_deflate(benchmark: Any, impl: str, name: str) -> None:
    benchmark.group = f"deflate level 3 {name}"
    data = COMPRESSIBLE[name]
    fn = (lambda: _edge.deflate(data, 3)) if impl == "livechat" else (lambda: _zlib_deflate(data))
    out = fn()
    assert _zlib_inflate(out) == data and _edge.inflate(out) == data
    assert len(out) < len(data) // 2
    benchmark(fn)


@pytest.mark.parametrize("name", list(COMPRESSIBLE))
@pytest.mark.parametrize("impl", ["livechat", "zlib"])
def test_inflate(benchmark: Any, impl: str, name: str) -> None:
    benchmark.group = f"inflate {name}"
    data = COMPRESSIBLE[name]
    z = _zlib_deflate(data)
    fn = (lambda: _edge.inflate(z)) if impl == "livechat" else (lambda: _zlib_inflate(z))
    assert fn() == data
    benchmark(fn)


# --- msgpack --------------------------------------------------------------------------------


def _unpackb_valid(data: bytes) -> bool:
    try:
        msgpack.unpackb(data)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return False
    return True


INVALID = [b"", b"\xc1", b"\x92\x01", TICK + b"\x00", TICK[:-1]]


@pytest.mark.parametrize("impl", ["livechat", "msgpack"])
def test_msgpack_validate_tick(benchmark: Any, impl: str) -> None:
    benchmark.group = "validate one 9 KiB tick"
    check = _edge.msgpack_valid if impl == "livechat" else _unpackb_valid
    assert check(TICK) and not any(check(b) for b in INVALID)
    benchmark(check, TICK)


@pytest.mark.parametrize("impl", ["livechat", "msgpack"])
def test_msgpack_validate_small(benchmark: Any, impl: str) -> None:
    benchmark.group = "validate 100 client messages"
    check = _edge.msgpack_valid if impl == "livechat" else _unpackb_valid
    assert all(check(e) for e in EVENT_BYTES)
    benchmark(lambda: [check(e) for e in EVENT_BYTES])


def _packb_objects() -> bytes:
    return msgpack.packb({"t": "tick", "s": "stream-1", "q": 41, "e": EVENTS})


_HEAD = msgpack.packb({"t": "tick", "s": "stream-1", "q": 41})


def _join_preencoded() -> bytes:
    # A 4-entry map: the 3 packed entries, then "e" and an array16 of the ready events.
    return b"\x84" + _HEAD[1:] + b"\xa1e" + struct.pack("!BH", 0xDC, len(EVENT_BYTES)) + b"".join(EVENT_BYTES)


@pytest.mark.parametrize("impl", ["livechat", "msgpack-objects", "msgpack-preencoded"])
def test_tick_encode_100_events(benchmark: Any, impl: str) -> None:
    benchmark.group = "encode a tick of 100 events"
    fn: Callable[[], bytes] = {
        "livechat": lambda: _edge.encode_tick("stream-1", 41, EVENT_BYTES),
        "msgpack-objects": _packb_objects,
        "msgpack-preencoded": _join_preencoded,
    }[impl]
    assert msgpack.unpackb(fn()) == msgpack.unpackb(TICK)
    benchmark(fn)
