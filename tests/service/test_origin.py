"""Issue 11, the Origin allow-list end to end: a real `livechat serve`, real upgrades.

With the defaults and ``edge.public_url = https://chat.example.com`` a page on any other origin
(the twelve tricks an attacker tries: another site, ``null``, ``file://``, sub-domain and suffix
look-alikes, another port or scheme, a browser extension) gets 403 before any Python work; the
page's own origin and clients sending no Origin (not browsers) get 101; two Origin headers are
refused. Listed in ``edge.allowed_origins``, each of the twelve is let in.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.service.serve_process import Client, ServeProcess

PUBLIC = "https://chat.example.com"
ATTACKS = (
    "https://evil.com",
    "null",
    "file://",
    "https://evil.chat.example.com",
    "https://chat.example.com.evil.com",
    "https://evilchat.example.com",
    "https://chat.example.com:8443",
    "http://chat.example.com",
    "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
    "https://chat-example.com",
    "https://chat.example.com.",
    "https://chat.example.co",
)


def upgrade_status(port: int, origins: list[str]) -> int:
    """The HTTP status of an upgrade request carrying these Origin headers (raw, so two can be sent)."""
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET /live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        + "".join(f"Origin: {o}\r\n" for o in origins)
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head.encode())
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    return int(got.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def default_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("origin-default") / "data"
    proc = ServeProcess(data, "--set", f"edge.public_url={PUBLIC}").start()
    yield proc
    proc.stop()
    proc.assert_no_tracebacks()


@pytest.mark.parametrize("origin", ATTACKS)
def test_a_foreign_page_is_refused_by_default(default_serve: ServeProcess, origin: str) -> None:
    assert upgrade_status(default_serve.port, [origin]) == 403


def test_the_pages_own_origin_and_non_browsers_pass(default_serve: ServeProcess) -> None:
    assert upgrade_status(default_serve.port, [PUBLIC]) == 101
    assert upgrade_status(default_serve.port, ["HTTPS://CHAT.EXAMPLE.COM:443"]) == 101
    assert upgrade_status(default_serve.port, []) == 101
    assert upgrade_status(default_serve.port, [PUBLIC, PUBLIC]) == 403, "two Origin headers"


async def test_a_refused_page_never_reaches_the_chat(default_serve: ServeProcess) -> None:
    """A browser on evil.com holding a viewer's token: no connection, so no join and no post."""
    token = default_serve.token("victim")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(default_serve.url(token), origin=websockets.Origin("https://evil.com"))
    assert refused.value.response.status_code == 403
    ok = await Client.connect(default_serve.url(token), origin=websockets.Origin(PUBLIC))
    assert (await ok.join("s"))["t"] == "snapshot"


def test_each_listed_origin_is_let_in(tmp_path: Path) -> None:
    listed = json.dumps(list(ATTACKS))
    serve = ServeProcess(tmp_path / "data", "--set", f"edge.allowed_origins={listed}").start()
    try:
        for origin in ATTACKS:
            assert upgrade_status(serve.port, [origin]) == 101, origin
        assert upgrade_status(serve.port, ["https://not-listed.example"]) == 403
    finally:
        assert serve.stop() == 0
    serve.assert_no_tracebacks()
