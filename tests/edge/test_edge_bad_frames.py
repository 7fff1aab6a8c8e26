"""Bad frames after a good upgrade: each gets a clear close code (RFC 6455 §7.4.1), the TCP
connection then ends, and a healthy client on the same edge keeps its echo round trips going
before, during and after (``EchoProbe.alongside``).

Codes: 1002 protocol error, 1007 invalid payload (UTF-8, deflate data), 1009 too big.
"""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest
from edge_clients import EchoProbe
from edge_wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    client_frame,
    close_payload,
    raw_deflate,
)
from livechat._edge import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    Edge,
    decode_client_frames,
    encode_frame,
)

LIMIT = 64 * 1024  # EdgeConfig.max_message_bytes default
DEFLATE = "permessage-deflate; client_no_context_takeover"


def bomb(inflated_size: int) -> bytes:
    """A permessage-deflate body of ``inflated_size`` zero bytes: ~1000:1 (10 MB -> ~10 KB)."""
    return raw_deflate(bytes(inflated_size))


def corrupt_deflate() -> bytes:
    # Block type 3 is reserved (RFC 1951 §3.2.3): every inflater must refuse it.
    return b"\x07\xff\xff\xff"


def header_with_length(first_byte: int, length: int) -> bytes:
    """A masked frame header declaring a 64-bit length (no payload follows)."""
    return struct.pack("!BBQ", first_byte, 0x80 | 127, length) + b"\x01\x02\x03\x04"


# (id, bytes sent after the upgrade, expected close code, deflate offered)
CASES: list[tuple[str, bytes, int, bool]] = [
    ("unmasked-binary", client_frame(OP_BINARY, b"hi", mask=None), CLOSE_PROTOCOL_ERROR, False),
    ("unmasked-close", client_frame(OP_CLOSE, close_payload(1000), mask=None), CLOSE_PROTOCOL_ERROR, False),
    *[(f"opcode-{op:#x}", client_frame(op, b"x"), CLOSE_PROTOCOL_ERROR, False) for op in (3, 4, 5, 6, 7)],
    *[(f"opcode-{op:#x}", client_frame(op, b""), CLOSE_PROTOCOL_ERROR, False) for op in (11, 12, 13, 14, 15)],
    ("rsv2", client_frame(OP_BINARY, b"x", rsv2=True), CLOSE_PROTOCOL_ERROR, False),
    ("rsv3", client_frame(OP_TEXT, b"x", rsv3=True), CLOSE_PROTOCOL_ERROR, False),
    (
        "rsv1-without-deflate",
        client_frame(OP_BINARY, raw_deflate(b"x"), rsv1=True),
        CLOSE_PROTOCOL_ERROR,
        False,
    ),
    (
        "rsv1-on-continuation",
        client_frame(OP_BINARY, b"ab", fin=False) + client_frame(OP_CONT, raw_deflate(b"c"), rsv1=True),
        CLOSE_PROTOCOL_ERROR,
        True,
    ),
    ("rsv1-on-ping", client_frame(OP_PING, b"", rsv1=True), CLOSE_PROTOCOL_ERROR, True),
    ("ping-over-125", client_frame(OP_PING, b"p" * 126), CLOSE_PROTOCOL_ERROR, False),
    ("close-over-125", client_frame(OP_CLOSE, close_payload(1000, "r" * 124)), CLOSE_PROTOCOL_ERROR, False),
    ("fragmented-ping", client_frame(OP_PING, b"a", fin=False), CLOSE_PROTOCOL_ERROR, False),
    ("fragmented-pong", client_frame(OP_PONG, b"a", fin=False), CLOSE_PROTOCOL_ERROR, False),
    ("orphan-continuation", client_frame(OP_CONT, b"x"), CLOSE_PROTOCOL_ERROR, False),
    (
        "message-inside-message",
        client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_BINARY, b"b"),
        CLOSE_PROTOCOL_ERROR,
        False,
    ),
    ("length-top-bit", header_with_length(0x82, 1 << 63), CLOSE_PROTOCOL_ERROR, False),
    ("close-one-byte", client_frame(OP_CLOSE, b"\x03"), CLOSE_PROTOCOL_ERROR, False),
    *[
        (f"close-code-{c}", client_frame(OP_CLOSE, close_payload(c)), CLOSE_PROTOCOL_ERROR, False)
        for c in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000)
    ],
    (
        "close-reason-not-utf8",
        client_frame(OP_CLOSE, close_payload(1000) + b"\xff"),
        CLOSE_INVALID_PAYLOAD,
        False,
    ),
    *[
        (f"text-{name}", client_frame(OP_TEXT, bad), CLOSE_INVALID_PAYLOAD, False)
        for name, bad in [
            ("ff", b"ok\xff"),
            ("overlong", b"\xc0\xaf"),
            ("surrogate", b"\xed\xa0\x80"),
            ("above-10ffff", b"\xf4\x90\x80\x80"),
            ("truncated", "€".encode()[:2]),
        ]
    ],
    ("text-fragment-bad-early", client_frame(OP_TEXT, b"\xff", fin=False), CLOSE_INVALID_PAYLOAD, False),
    (
        "text-truncated-at-fin",
        client_frame(OP_TEXT, b"ok", fin=False) + client_frame(OP_CONT, "€".encode()[:1]),
        CLOSE_INVALID_PAYLOAD,
        False,
    ),
    (
        "compressed-text-not-utf8",
        client_frame(OP_TEXT, raw_deflate(b"ok\xfe"), rsv1=True),
        CLOSE_INVALID_PAYLOAD,
        True,
    ),
    ("corrupt-deflate", client_frame(OP_BINARY, corrupt_deflate(), rsv1=True), CLOSE_INVALID_PAYLOAD, True),
    ("declared-over-limit", header_with_length(0x82, LIMIT + 1), CLOSE_TOO_BIG, False),
    ("declared-2^62", header_with_length(0x82, 1 << 62), CLOSE_TOO_BIG, False),
    ("frame-over-limit", client_frame(OP_BINARY, bytes(LIMIT + 1)), CLOSE_TOO_BIG, False),
    (
        "fragments-over-limit",
        client_frame(OP_BINARY, bytes(LIMIT // 2), fin=False)
        + client_frame(OP_CONT, bytes(LIMIT // 2), fin=False)
        + client_frame(OP_CONT, b"x"),
        CLOSE_TOO_BIG,
        False,
    ),
    ("deflate-bomb", client_frame(OP_BINARY, bomb(10_000_000), rsv1=True), CLOSE_TOO_BIG, True),
    ("deflate-bomb-just-over", client_frame(OP_TEXT, bomb(LIMIT + 1), rsv1=True), CLOSE_TOO_BIG, True),
    (
        "deflate-bomb-fragmented",
        client_frame(OP_BINARY, bomb(10_000_000)[:3000], fin=False, rsv1=True)
        + client_frame(OP_CONT, bomb(10_000_000)[3000:]),
        CLOSE_TOO_BIG,
        True,
    ),
]


async def wait_connections(edge: Edge, n: int) -> None:
    # A failed connection gets a lingering close: FIN after the close frame, then the edge waits
    # for the peer's EOF up to close_linger_ms (2 s); these raw clients never close, so allow 4 s.
    for _ in range(400):
        if edge.stats()["connections"] == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"connections = {edge.stats()['connections']}, expected {n}")


@pytest.mark.parametrize(("payload", "code", "deflate"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_frame_gets_its_close_code(
    echo_edge: Edge, probe: EchoProbe, payload: bytes, code: int, deflate: bool
) -> None:
    async with probe.alongside():
        bad = await RawClient.connect(echo_edge.port, extensions=DEFLATE if deflate else None)
        assert bad.deflate == deflate
        # A good message first: its echo must still arrive ahead of the close (RFC 6455 §7.1.7).
        bad.send(client_frame(OP_BINARY, b"before") + payload)
        assert (await bad.recv_message()).data == b"before"
        reason = await bad.expect_close(code)
        assert reason, "close frames carry a reason"
    stats = echo_edge.stats()
    assert stats["protocol_errors"] == 1
    await wait_connections(echo_edge, 1)


async def test_bad_clients_all_at_once(echo_edge: Edge, probe: EchoProbe) -> None:
    """Every case above at the same time, four times over, while the probe keeps going."""

    async def attack(payload: bytes, code: int, deflate: bool) -> None:
        bad = await RawClient.connect(echo_edge.port, extensions=DEFLATE if deflate else None)
        bad.send(payload)
        await bad.expect_close(code)

    async with probe.alongside():
        await asyncio.gather(*[attack(*c[1:]) for c in CASES * 4])
    assert echo_edge.stats()["protocol_errors"] == len(CASES) * 4
    await wait_connections(echo_edge, 1)


async def test_bomb_is_refused_without_inflating_it_all(echo_edge: Edge) -> None:
    """The biggest bomb a frame under the limit can carry (48 MB from ~48 KB at level 9) is refused
    as soon as inflation passes the limit."""
    bad = await RawClient.connect(echo_edge.port, extensions=DEFLATE)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    body = b"".join(z.compress(chunk) for _ in range(48)) + z.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(body) < LIMIT, "the frame itself passes the size check"
    loop = asyncio.get_running_loop()
    started = loop.time()
    bad.send(client_frame(OP_BINARY, body, rsv1=True))
    assert "inflation" in await bad.expect_close(CLOSE_TOO_BIG)
    assert loop.time() - started < 1.0
    assert echo_edge.stats()["protocol_errors"] == 1


def test_builders_agree_with_the_edge_codec() -> None:
    """The tests' frame builder writes what the edge's own encoder writes, and the edge decodes it."""
    mask = b"\x37\xfa\x21\x3d"
    for n in (0, 1, 125, 126, 65535, 65536, 70_000):
        payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
        assert client_frame(OP_BINARY, payload, mask=mask) == encode_frame(payload, True, mask)
        assert client_frame(OP_TEXT, payload, mask=None) == encode_frame(payload, False)
        messages, used = decode_client_frames(client_frame(OP_BINARY, payload) * 2)
        assert messages == [payload, payload] and used == 2 * len(client_frame(OP_BINARY, payload))
    with pytest.raises(ValueError, match="1002"):
        decode_client_frames(client_frame(OP_BINARY, b"x", mask=None))
    with pytest.raises(ValueError, match="1009"):
        decode_client_frames(client_frame(OP_BINARY, bytes(11)), max_message=10)
    with pytest.raises(ValueError, match="1009"):
        decode_client_frames(client_frame(OP_BINARY, bomb(2 << 20), rsv1=True), deflate=True)
    partial = client_frame(OP_BINARY, b"abcdef")
    assert decode_client_frames(partial[:-1]) == ([], 0)
