"""Echo mode with real clients: every message comes back whole, with its type, in order.

Sizes straddle every frame-length encoding (7-bit, 16-bit, 64-bit: 125/126, 65535/65536) up to
``max_message_bytes`` itself; each client kind is run (picows, websockets with and without
permessage-deflate, the raw client with and without it).
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest
from edge_clients import KINDS, Peer, StartEdge, open_peer
from edge_wire import (
    ETHERNET_MSS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Closed,
    RawClient,
    client_frame,
    close_payload,
    raw_deflate,
)
from livechat._edge import Edge

LIMIT = 64 * 1024  # EdgeConfig.max_message_bytes default
SIZES = [0, 1, 125, 126, 127, 65535, LIMIT]
# Incompressible data grows under deflate (zlib: ~21 bytes per 64 KiB; websockets' memLevel=5
# compressor: more than 136). The dedicated test below covers a compressed message at the limit;
# the matrix keeps random payloads of deflate clients this far under it.
DEFLATE_GROWTH = 1024


def text_of_size(n: int, seed: int) -> str:
    """Exactly ``n`` UTF-8 bytes mixing 1-, 2-, 3- and 4-byte characters."""
    rng = random.Random(seed)
    chars: list[str] = []
    size = 0
    while size < n:
        c = rng.choice("abcxyz 019é€😀ĳ") if n - size >= 4 else "a"
        chars.append(c)
        size += len(c.encode())
    return "".join(chars)


@pytest.mark.parametrize("kind", KINDS)
async def test_every_size_and_type_comes_back_exact(echo_edge: Edge, kind: str) -> None:
    peer = await open_peer(kind, echo_edge.port)
    for n in SIZES:
        random_n = min(n, LIMIT - DEFLATE_GROWTH) if kind.endswith("deflate") else n
        for payload in (os.urandom(random_n), text_of_size(n, n), b"chat " * (n // 5)):
            await peer.send(payload)
            got = await peer.recv()
            assert type(got) is type(payload) and got == payload, (kind, n, type(payload))
    await peer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_many_messages_keep_their_order(echo_edge: Edge, kind: str) -> None:
    rng = random.Random(kind)
    sent: list[bytes | str] = []
    # ~120 KiB in all: under send_queue_soft_bytes, so replies never wait on the slow-consumer cap.
    for i in range(300):
        n = rng.choice([0, 3, 120, 126, 300, 600, 1_500])
        sent.append(text_of_size(n, i) if i % 3 == 0 else i.to_bytes(4, "big") + os.urandom(n))
    peer = await open_peer(kind, echo_edge.port)

    async def send_all() -> None:
        for m in sent:
            await peer.send(m)

    sender = asyncio.create_task(send_all())
    got = [await peer.recv() for _ in sent]
    await sender
    assert got == sent
    await peer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_fragmented_messages_are_reassembled(echo_edge: Edge, kind: str) -> None:
    peer = await open_peer(kind, echo_edge.port)
    binary_parts = [os.urandom(10), b"", os.urandom(40_000), os.urandom(LIMIT - 40_010 - DEFLATE_GROWTH)]
    await peer.send_fragments(binary_parts)
    assert await peer.recv() == b"".join(binary_parts)
    text_parts = ["héllo ", "wörld ", "€" * 1000, ""]
    await peer.send_fragments(text_parts)
    assert await peer.recv() == "".join(text_parts)
    await peer.close()


async def test_incompressible_message_at_the_limit_sent_compressed(echo_edge: Edge) -> None:
    """A message at the size limit, compressed by a client that compresses everything, is
    accepted: deflate grows incompressible data (65 536 random bytes become 65 557), so the
    compressed wire length gets slack and the limit is enforced on the inflated size."""
    client = await RawClient.connect(echo_edge.port, extensions="permessage-deflate")
    for n in (LIMIT - 10, LIMIT):
        payload = os.urandom(n)
        z = raw_deflate(payload)
        assert len(z) > LIMIT
        client.send(client_frame(OP_BINARY, z, rsv1=True))
        assert (await client.recv_message()).data == payload, n
    await client.close()


async def test_pipelining_client_that_reads_is_not_closed(echo_edge: Edge) -> None:
    """A client that writes 4 MiB of messages at once and reads every reply as it comes is a fast
    reader and is never closed: the edge writes before it judges the hard cap (256 KiB), and stops
    reading the client while the replies queued for it are over the soft cap."""
    client = await RawClient.connect(echo_edge.port)
    sent = [i.to_bytes(4, "big") + os.urandom(4_092) for i in range(1024)]
    client.send(b"".join(client_frame(OP_BINARY, m) for m in sent))
    for i, m in enumerate(sent):
        assert (await client.recv_message()).data == m, i
    await client.close()


async def test_slow_close_of_a_client_still_sending_keeps_the_stream_in_sync(start_edge: StartEdge) -> None:
    """A client that sends 4 MiB of echo requests and reads nothing. The edge stops reading it
    once its reply queue passes the soft cap (TCP pushes back on the sender), and closes it with
    4009 when the queue makes no progress for write_timeout_ms. The frames it sent after that are
    not its fault: they must not count as protocol errors (input after a forced close is discarded,
    not decoded from the middle of a frame), and its close frame must still reach it when it reads
    at last (a lingering close, not an RST)."""
    echo_edge = start_edge(mode="echo", write_timeout_ms=1500)
    client = await RawClient.connect(echo_edge.port, rcvbuf=4096, maxseg=ETHERNET_MSS)
    frames = b"".join(client_frame(OP_BINARY, i.to_bytes(4, "big") + bytes(4_092)) for i in range(1024))
    client.send(frames)
    for _ in range(400):
        stats = echo_edge.stats()
        if stats["slow_closes"] + stats["write_timeouts"]:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # the rest of its 4 MiB arrives after the close began
    stats = echo_edge.stats()
    assert stats["slow_closes"] + stats["write_timeouts"] == 1, stats
    assert stats["protocol_errors"] == 0, "bytes after a slow-consumer close were parsed out of sync"
    reason = ""
    with pytest.raises(Closed) as closed:
        while True:
            await client.recv_message()
    reason = closed.value.reason
    assert closed.value.code in (4008, 4009), reason


async def test_text_split_inside_a_character_and_ping_between_fragments(echo_edge: Edge) -> None:
    """A UTF-8 sequence may be cut across frames; control frames may sit between fragments."""
    client = await RawClient.connect(echo_edge.port)
    euro = "x€😀y".encode()  # 1 + 3 + 4 + 1 bytes
    client.send(
        client_frame(OP_TEXT, euro[:2], fin=False)
        + client_frame(OP_PING, b"mid")
        + client_frame(OP_CONT, euro[2:5], fin=False)
        + client_frame(OP_CONT, euro[5:], fin=True)
    )
    pong = await client.recv_frame()
    assert (pong.opcode, pong.payload) == (OP_PONG, b"mid")
    m = await client.recv_message()
    assert (m.binary, m.data) == (False, euro)
    await client.close()


async def test_upgrade_and_first_frames_in_one_write(echo_edge: Edge) -> None:
    frames = client_frame(OP_BINARY, b"one") + client_frame(OP_TEXT, b"two")
    client = await RawClient.connect(echo_edge.port, trailing=frames)
    assert (await client.recv_message()).data == b"one"
    assert (await client.recv_message()).data == b"two"
    await client.close()


async def test_deflate_replies_are_compressed_from_the_threshold(start_edge: StartEdge) -> None:
    """permessage-deflate agreed with server_no_context_takeover; replies of at least
    deflate_min_bytes are compressed (RSV1), smaller ones go plain; compressed input is inflated."""
    edge = start_edge(mode="echo", deflate_min_bytes=256)
    client = await RawClient.connect(edge.port, extensions="permessage-deflate; client_no_context_takeover")
    agreed = client.response.headers["sec-websocket-extensions"]
    assert "server_no_context_takeover" in agreed and "client_no_context_takeover" in agreed
    big, small = b"chat message " * 100, b"hi there"
    for payload in (big, small):
        client.send(client_frame(OP_BINARY, raw_deflate(payload), rsv1=True))
        m = await client.recv_message()
        assert m.data == payload
        assert m.compressed == (len(payload) >= 256)
    # A compressed message in three frames: RSV1 on the first only (RFC 7692 §6.1).
    z = raw_deflate(big)
    client.send(
        client_frame(OP_TEXT, z[:5], fin=False, rsv1=True)
        + client_frame(OP_CONT, z[5:20], fin=False)
        + client_frame(OP_CONT, z[20:])
    )
    m = await client.recv_message()
    assert (m.binary, m.data, m.compressed) == (False, big, True)
    await client.close()


async def test_deflate_refused_by_config_is_not_agreed(start_edge: StartEdge) -> None:
    edge = start_edge(mode="echo", deflate=False)
    client = await RawClient.connect(edge.port, extensions="permessage-deflate")
    assert "sec-websocket-extensions" not in client.response.headers
    client.send_message(b"x" * 1000)
    m = await client.recv_message()
    assert (m.data, m.compressed) == (b"x" * 1000, False)
    await client.close()


async def test_close_handshake_echoes_the_code(echo_edge: Edge) -> None:
    client = await RawClient.connect(echo_edge.port)
    client.send(client_frame(OP_CLOSE, close_payload(4321, "done")))
    f = await client.recv_frame()
    assert (f.opcode, f.payload[:2]) == (OP_CLOSE, (4321).to_bytes(2, "big"))
    await client.read_to_eof()
    # A close frame without a code is answered by one without a code (RFC 6455 §5.5.1).
    client = await RawClient.connect(echo_edge.port)
    client.send(client_frame(OP_CLOSE, b""))
    f = await client.recv_frame()
    assert (f.opcode, f.payload) == (OP_CLOSE, b"")
    await client.read_to_eof()


async def test_ping_is_answered_with_its_payload(echo_edge: Edge) -> None:
    client = await RawClient.connect(echo_edge.port)
    for payload in (b"", b"p" * 125):
        client.send(client_frame(OP_PING, payload))
        f = await client.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, payload)
    await client.close()


async def test_idle_connection_is_pinged_then_closed_1001(start_edge: StartEdge) -> None:
    edge = start_edge(mode="echo", ping_interval_ms=200, idle_timeout_ms=900)
    silent = await RawClient.connect(edge.port)
    answering = await RawClient.connect(edge.port)
    f = await silent.recv_frame(timeout=2)
    assert f.opcode == OP_PING
    # `answering` replies to every ping (recv_message does) and so stays open past the idle limit.
    reader = asyncio.create_task(answering.recv_message(timeout=3))
    reason = await silent.expect_close(1001, timeout=3)
    assert "idle" in reason
    assert not reader.done()
    reader.cancel()
    answering.send_message(b"still here")
    assert (await answering.recv_message()).data == b"still here"
    assert answering.pings, "the answering client was pinged too"
    assert edge.stats()["idle_closes"] == 1
    await answering.close()


async def test_graceful_stop_closes_clients_1001(start_edge: StartEdge) -> None:
    edge = start_edge(mode="echo")
    peers: list[Peer] = [await open_peer(k, edge.port) for k in KINDS]
    for p in peers:
        await p.send(b"before stop")
        assert await p.recv() == b"before stop"
    stopping = asyncio.create_task(asyncio.to_thread(edge.stop, 3000))
    for p in peers:
        with pytest.raises(Closed) as closed:
            await p.recv()
        assert closed.value.code == 1001
    await stopping
