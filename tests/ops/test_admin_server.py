"""The admin server of a LiveChatServer running in this process: HTTP behaviour, health and
readiness rules, and /metrics equal to the edge's own counters after a slow consumer was degraded
and closed (the Rust core's skip and close counters, per I/O thread)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest
from livechat._edge import encode_frame
from livechat.config import BackendConfig, EdgeConfig, LiveChatConfig, OpsConfig
from livechat.server import LiveChatServer
from livechat.server.metrics import EDGE_KEYS
from livechat.server.stats import EdgeStats, EdgeThreadStats

from tests.ops.ops_helpers import http_get, parse_metrics, raw_http
from tests.service.serve_process import Client

SOFT, HARD = 16 * 1024, 64 * 1024


def config(tmp_path: Path, **edge: object) -> LiveChatConfig:
    return LiveChatConfig(
        edge=dataclasses.replace(
            EdgeConfig(
                port=0, io_threads=2, tick_min_ms=10, ping_interval_ms=120_000, idle_timeout_ms=300_000
            ),
            **edge,  # type: ignore[arg-type]
        ),
        backends=BackendConfig(data_dir=str(tmp_path / "data"), broker=f"memory://{tmp_path.name}"),
        ops=OpsConfig(admin_port=0, drain_timeout_ms=500),
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveChatServer]:
    srv = LiveChatServer(
        config(tmp_path, send_queue_soft_bytes=SOFT, send_queue_hard_bytes=HARD, write_timeout_ms=1_000)
    )
    await srv.start()
    yield srv
    await srv.stop()


def admin(srv: LiveChatServer) -> int:
    assert srv.admin is not None
    return srv.admin.port


async def get(srv: LiveChatServer, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, admin(srv), path)


async def test_http_surface(server: LiveChatServer) -> None:
    port = admin(server)
    head = await raw_http(port, b"HEAD /metrics?debug=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, rest = head.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in headers
    assert int(headers.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 1000 and body == b""
    assert (await raw_http(port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
    refused = await raw_http(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD" in refused
    assert (await raw_http(port, b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    assert (await raw_http(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")).startswith(
        b"HTTP/1.1 400 "
    )
    assert (await raw_http(port, b"GET /metr", eof=True)).startswith(b"HTTP/1.1 400 ")  # EOF mid-head
    status_code, body_text = await get(server, "/healthz")
    assert status_code == 200 and json.loads(body_text)["status"] == "ok"
    status_code, body_text = await get(server, "/readyz")
    assert status_code == 200 and json.loads(body_text) == {
        "status": "ready",
        "draining": False,
        "problems": [],
    }


async def test_every_edge_counter_has_a_metric(server: LiveChatServer) -> None:
    stats = server.edge.stats()
    assert set(stats) <= EDGE_KEYS, set(stats) - EDGE_KEYS
    for thread in stats["threads"]:
        assert set(thread) <= EDGE_KEYS
    # The typed view (livechat.server.stats) names exactly the counters the Rust core reports.
    assert set(stats) == EdgeStats.__required_keys__, set(stats) ^ EdgeStats.__required_keys__
    assert all(set(thread) == EdgeThreadStats.__required_keys__ for thread in stats["threads"])
    metrics = parse_metrics((await get(server, "/metrics"))[1])
    assert not [name for name in metrics.types if name.startswith("livechat_edge_")]  # no untyped fallback


def non_reader(port: int, stream: str) -> socket.socket:
    """A WebSocket client that joins ``stream`` and then never reads (4 KiB receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing after the head is consumed
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    sock.sendall(encode_frame(msgpack.packb({"op": "join", "stream": stream}), True, (1, 2, 3, 4)))
    return sock


async def wait_for(condition: object, timeout: float = 15.0, what: str = "") -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_slow_consumer_skips_and_close_match_the_edge_counters(server: LiveChatServer) -> None:
    slow = await asyncio.to_thread(non_reader, server.port, "hot")
    try:
        await wait_for(lambda: server.edge.stream_subscribers("hot") == 1, what="the non-reader subscribed")

        def closes() -> int:
            stats = server.edge.stats()
            return int(stats["slow_closes"] + stats["write_timeouts"])

        published = 0
        while closes() == 0:
            assert published < 3000, "the non-reader was never closed"
            # ~16 KiB incompressible events, one per tick: the non-reader's queue passes the soft
            # cap once the kernel buffers are full, then the hard cap or the write timeout.
            server.edge.publish("hot", msgpack.packb({"k": "x", "b": os.urandom(16_000)}))
            published += 1
            await asyncio.sleep(0.01)
        await wait_for(lambda: server.edge.stats()["connections"] == 0, what="the slow consumer gone")
        assert server.chat is not None
        await wait_for(
            lambda: server.chat is not None and server.chat.stats()["sessions"] == 0, what="its close"
        )

        metrics = parse_metrics((await get(server, "/metrics"))[1])
        stats = server.edge.stats()
        assert stats["ticks_skipped"] > 0
        assert metrics.total("livechat_slow_consumer_skipped_ticks_total") == stats["ticks_skipped"]
        assert (
            metrics.total("livechat_slow_consumer_closes_total", reason="queue_cap") == stats["slow_closes"]
        )
        assert (
            metrics.total("livechat_slow_consumer_closes_total", reason="write_timeout")
            == stats["write_timeouts"]
        )
        assert metrics.value("livechat_sessions") == 0  # the chat services saw the close too
        # Every per-thread counter, thread by thread (busy time moves on its own: left out).
        for index, thread in enumerate(stats["threads"]):
            labels = {"thread": str(index)}
            assert metrics.value("livechat_connections", **labels) == thread["connections"] == 0
            assert metrics.value("livechat_connections_accepted_total", **labels) == thread["accepted"]
            assert metrics.value("livechat_deliveries_total", **labels) == thread["deliveries"]
            assert metrics.value("livechat_frames_out_total", **labels) == thread["frames_out"]
            assert metrics.value("livechat_bytes_out_total", **labels) == thread["bytes_out"]
            assert metrics.value("livechat_messages_in_total", **labels) == thread["messages_in"]
            assert metrics.value("livechat_send_queue_bytes", **labels) == thread["queue_bytes"] == 0
        assert metrics.total("livechat_connections_accepted_total") == 1
        assert metrics.total("livechat_messages_in_total") == 1  # the join
        assert metrics.value("livechat_events_published_total") == stats["events_published"] == published
        assert metrics.value("livechat_tick_frames_built_total") == stats["frames_built"]
        assert metrics.value("livechat_tick_build_seconds_total") == pytest.approx(
            stats["tick_build_ns"] / 1e9
        )
        # What was written before the skips: fewer events than published reached the socket.
        assert 0 < metrics.total("livechat_deliveries_total") == stats["deliveries"] < published
    finally:
        slow.close()


async def test_readiness_rules(tmp_path: Path) -> None:
    srv = LiveChatServer(config(tmp_path, max_connections=1))
    assert not srv.health().ready and srv.health().live  # starting
    await srv.start()
    try:
        assert (await get(srv, "/readyz"))[0] == 200
        viewer = await Client.connect(f"ws://127.0.0.1:{srv.port}/live", ping_interval=None)
        await viewer.join("s")
        status, body = await get(srv, "/readyz")
        assert status == 503 and "full: 1 connections" in json.loads(body)["problems"][0]
        assert (await get(srv, "/healthz"))[0] == 200
        await viewer.close()
        await wait_for(lambda: srv.health().ready, what="ready again")
        # The task that hands edge events to the chat services dies: not live, not ready.
        consumer = srv._consumer
        assert consumer is not None
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        status, body = await get(srv, "/healthz")
        assert status == 503 and "has stopped" in json.loads(body)["problems"][0]
        assert (await get(srv, "/readyz"))[0] == 503
    finally:
        await srv.stop()
    assert srv.admin is not None
    with pytest.raises(OSError):
        http_get(srv.admin.port, "/healthz", timeout=1.0)  # closed with the server
