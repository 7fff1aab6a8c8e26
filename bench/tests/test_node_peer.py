"""The Node ``ws`` peer (bench/peers/ws_broadcast.mjs via scripts/node-peer.sh) against real clients.

Its pinned packages are installed first (``scripts/node-peer.sh install``, npm ci into the cache): if
that fails, these tests fail.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from bench.fanout.processes import ServerProcess
from bench.fanout.targets import NODE_PEER_SCRIPT, TARGETS
from bench.tests.test_fanout_harness import assert_clean, fanout_port, measure

HOST = "127.0.0.1"


@pytest.fixture(scope="session", autouse=True)
def node_ws_installed() -> None:
    install = subprocess.run([str(NODE_PEER_SCRIPT), "install"], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    assert (Path(install.stdout.strip()) / "ws" / "package.json").is_file()


async def test_node_ws_broadcast_reaches_every_connection_including_the_sender(tmp_path: Path) -> None:
    port = fanout_port()
    server = ServerProcess(TARGETS["node-ws"].argv(HOST, port), tmp_path / "node-ws.log")
    await server.start(HOST, port)
    clients: list[ClientConnection] = []
    try:
        # No client offers permessage-deflate here or in the bench; the server must not add it either.
        clients = [await connect(f"ws://{HOST}:{port}/", compression=None) for _ in range(20)]
        for client in clients:
            assert client.response is not None
            assert client.response.headers.get("Sec-WebSocket-Extensions") is None
        await clients[7].send(b"\x00binary")
        await clients[0].send("text")
        for client in clients:
            # One sender's messages arrive in order; each keeps its type (bytes stay bytes).
            assert await asyncio.wait_for(client.recv(), 5) == b"\x00binary"
            assert await asyncio.wait_for(client.recv(), 5) == "text"
        # A client that left gets nothing more and breaks nothing.
        await clients.pop(3).close()
        await clients[1].send(b"again")
        for client in clients:
            assert await asyncio.wait_for(client.recv(), 5) == b"again"
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # Clients still connected get a "going away" close, and the server exits 0 (the harness checks).
        assert await asyncio.wait_for(server.process.wait(), 5) == 0
        for client in clients:
            await asyncio.wait_for(client.wait_closed(), 5)
            assert client.close_code == 1001
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await server.stop()
    assert "ws 8." in (tmp_path / "node-ws.log").read_text()


async def test_node_ws_delivers_everything_and_is_measured(tmp_path: Path) -> None:
    result = await measure(TARGETS["node-ws"], tmp_path)
    assert_clean(result)
    assert result["server_command"].startswith(f"{NODE_PEER_SCRIPT} serve")
    assert result["cpu_per_accept_us"] > 0
    assert result["max_ok_rate"] == 20
