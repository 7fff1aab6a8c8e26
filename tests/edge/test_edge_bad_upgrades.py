"""Bad upgrade requests, slowloris, a flood of half-open connections and the connection cap: each
gets a clear HTTP answer (400 / 405 / 408 / 426 / 431 / 503) and the TCP connection then ends,
while a healthy client on the same edge keeps its echo round trips going.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from edge_clients import EchoProbe, StartEdge, open_peer
from edge_wire import TIMEOUT, HttpResponse, RawClient, open_socket, parse_http_head, upgrade_request
from livechat._edge import Edge

# EdgeConfig.max_request_bytes default.
MAX_REQUEST = 8 * 1024


async def exchange(port: int, request: bytes, timeout: float = TIMEOUT) -> tuple[HttpResponse, bytes]:
    """Send ``request``, read until the server ends the connection; returns the response and body."""
    sock = await open_socket(port)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, request)
        data = bytearray()
        while True:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    assert sep, f"no HTTP response: {bytes(data)!r}"
    response = parse_http_head(head + sep)
    assert int(response.headers["content-length"]) == len(body), "body and Content-Length disagree"
    assert response.headers["connection"].lower() == "close"
    return response, body


THREE_MB = 3 * 1024 * 1024
BIG_HEADER = [("X-Padding", "p" * (MAX_REQUEST + 100))]
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n"
ENDLESS = b"GET / HTTP/1.1\r\nHost: edge.test\r\nX-Long: " + b"a" * (MAX_REQUEST + 10)

# (id, request, status, header that must be in the answer)
CASES: list[tuple[str, bytes, int, tuple[str, str] | None]] = [
    ("tls-client-hello", TLS_HELLO, 400, None),
    ("header-without-colon", b"GET / HTTP/1.1\r\nHost edge.test\r\n\r\n", 400, None),
    ("garbage-request-line", b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", 400, None),
    ("version-8", upgrade_request(version="8"), 426, ("sec-websocket-version", "13")),
    ("no-version", upgrade_request(version=None), 426, ("sec-websocket-version", "13")),
    ("no-connection-upgrade", upgrade_request(connection="keep-alive"), 426, ("sec-websocket-version", "13")),
    ("plain-get", b"GET /index.html HTTP/1.1\r\nHost: edge.test\r\n\r\n", 426, ("upgrade", "websocket")),
    ("no-key", upgrade_request(key=""), 400, None),
    ("missing-key", upgrade_request().replace(b"Sec-WebSocket-Key", b"X-Not-The-Key"), 400, None),
    ("short-key", upgrade_request(key="c2hvcnQ="), 400, None),
    ("key-not-base64", upgrade_request(key="!!!!!!!!!!!!!!!!!!!!!!=="), 400, None),
    ("no-host", upgrade_request(host=None), 400, None),
    ("http-1.0", upgrade_request(http_version="1.0"), 400, None),
    ("post-upgrade", upgrade_request(method="POST"), 405, ("allow", "GET")),
    ("put-upgrade", upgrade_request(method="PUT"), 405, ("allow", "GET")),
    ("post-plain", b"POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 0\r\n\r\n", 400, None),
    ("oversize-header", upgrade_request(extra=BIG_HEADER), 431, None),
    ("too-many-headers", upgrade_request(extra=[(f"X-H{i}", "v") for i in range(60)]), 431, None),
    ("endless-header", ENDLESS, 431, None),
    # A 3 MB token: the answer is the documented 431, not a connection reset mid-upload.
    ("3mb-token-in-query", upgrade_request("/live?token=" + "t" * THREE_MB), 431, None),
    (
        "3mb-authorization",
        upgrade_request("/live", extra=[("Authorization", "Bearer " + "t" * THREE_MB)]),
        431,
        None,
    ),
]
PARAMS, IDS = [c[1:] for c in CASES], [c[0] for c in CASES]


@pytest.mark.parametrize(("request_bytes", "status", "header"), PARAMS, ids=IDS)
async def test_bad_upgrade_gets_its_http_answer(
    echo_edge: Edge, probe: EchoProbe, request_bytes: bytes, status: int, header: tuple[str, str] | None
) -> None:
    async with probe.alongside():
        response, body = await exchange(echo_edge.port, request_bytes)
    assert response.status == status, (response, body)
    assert body.strip(), "the answer says why"
    if header is not None:
        assert response.headers[header[0]] == header[1]
    stats = echo_edge.stats()
    assert stats["accepted"] == 2
    assert stats["rejected"] == (0 if request_bytes.startswith(b"GET /index.html") else 1)


async def test_all_bad_upgrades_at_once(echo_edge: Edge, probe: EchoProbe) -> None:
    async def one(request: bytes, status: int) -> None:
        response, _ = await exchange(echo_edge.port, request)
        assert response.status == status

    async with probe.alongside():
        await asyncio.gather(*[one(c[1], c[2]) for c in CASES * 5])
    assert echo_edge.stats()["connections"] == 1


async def test_slowloris_gets_408_at_the_handshake_deadline(start_edge: StartEdge) -> None:
    """Bytes trickling in keep nothing alive: the whole request must arrive within the deadline."""
    edge = start_edge(mode="echo", handshake_timeout_ms=500)
    probe = EchoProbe(await open_peer("websockets", edge.port))
    loop = asyncio.get_running_loop()
    request = upgrade_request()
    async with probe.alongside():
        sock = await open_socket(edge.port)
        started = loop.time()
        sent = 0
        try:
            for byte in request[:-1]:
                await loop.sock_sendall(sock, bytes([byte]))
                sent += 1
                await asyncio.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
        elapsed = loop.time() - started
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert sent < len(request) - 1, "the deadline passed before the request was whole"
    # Deadline 500 ms, checked every 250 ms.
    assert 0.45 <= elapsed < 1.5, elapsed
    assert edge.stats()["handshake_timeouts"] == 1
    await probe.peer.close()


async def test_half_open_flood_times_out_and_spares_everyone_else(start_edge: StartEdge) -> None:
    """600 connections that never finish an upgrade (400 silent, 200 with half a request): each
    gets 408 and is closed; meanwhile the open client echoes and new clients still get in."""
    edge = start_edge(mode="echo", handshake_timeout_ms=600)
    probe = EchoProbe(await open_peer("websockets", edge.port))
    loop = asyncio.get_running_loop()
    half = upgrade_request()[:60]
    async with probe.alongside():
        socks = await asyncio.gather(*[open_socket(edge.port) for _ in range(600)])
        for s in socks[400:]:
            await loop.sock_sendall(s, half)
        # A newcomer during the flood gets in and is served.
        newcomer = await RawClient.connect(edge.port)
        newcomer.send_message(b"hello")
        assert (await newcomer.recv_message()).data == b"hello"

        async def answer(s: socket.socket) -> bytes:
            data = bytearray()
            try:
                while chunk := await asyncio.wait_for(loop.sock_recv(s, 4096), TIMEOUT):
                    data += chunk
            except ConnectionResetError:
                pass  # our half request reached a socket the edge had already closed
            s.close()
            return bytes(data)

        answers = await asyncio.gather(*[answer(s) for s in socks])
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:20] for a in answers}
    stats = edge.stats()
    assert stats["handshake_timeouts"] == 600
    assert stats["connections"] == 2
    await newcomer.close()
    await probe.peer.close()


async def test_connection_cap_answers_503_and_frees_with_closes(start_edge: StartEdge) -> None:
    edge = start_edge(mode="echo", max_connections=3)
    clients = [await RawClient.connect(edge.port) for _ in range(3)]
    for _ in range(3):
        response, body = await exchange(edge.port, upgrade_request())
        assert response.status == 503 and response.headers["retry-after"], (response, body)
    for c in clients:
        c.send_message(b"still served")
        assert (await c.recv_message()).data == b"still served"
    await clients.pop().close()
    for _ in range(100):
        if edge.stats()["connections"] == 2:
            break
        await asyncio.sleep(0.01)
    clients.append(await RawClient.connect(edge.port))
    clients[-1].send_message(b"in again")
    assert (await clients[-1].recv_message()).data == b"in again"
    assert edge.stats()["rejected"] == 3
    for c in clients:
        await c.close()
