"""Run `livechat serve` as a subprocess on a free port, mint tokens for it, and talk to it.

Servers take ports in 17000-17999 (this suite's share of the shared machine).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jwt
import msgpack
import websockets

from tests.ports import free_port

SERVE_PORTS = range(17000, 18000)


class ServeProcess:
    """`livechat serve --port P --data-dir D [extra]`, waited for until it accepts connections."""

    def __init__(self, data_dir: Path, *extra: str, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port(SERVE_PORTS)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        cmd = [sys.executable, "-m", "livechat.cli", "serve", "--port", str(self.port)]
        # The admin server (/metrics) on any free port: several edges run side by side here.
        cmd += ["--data-dir", str(self.data_dir), "--admin-port", "0", *self.extra]
        self.log = open(self.log_path(), "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"livechat serve exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("livechat serve did not start")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.log.close()
        return code

    def log_path(self) -> Path:
        return self.data_dir.parent / f"serve-{self.port}.log"

    def assert_no_tracebacks(self) -> None:
        """Every refusal is an answer, not a crash: the server logged no exception."""
        lines = self.log_path().read_text(errors="replace").splitlines()
        crashes = [line for line in lines if "Traceback" in line]
        assert not crashes, f"{self.log_path()}:\n" + "\n".join(crashes[-5:])

    def secret(self) -> str:
        return (self.data_dir / "hmac-secret").read_text().strip()

    def token(self, user: str, role: str = "viewer", **claims: Any) -> str:
        body = {"sub": user, "aud": "livechat", "role": role, "exp": int(time.time()) + 3600, **claims}
        return jwt.encode(body, self.secret(), algorithm="HS256")

    async def client(self, user: str | None = None, role: str = "viewer", **claims: Any) -> Client:
        """A connected client: signed in as ``user`` (with ``role``), or anonymous."""
        return await Client.connect(self.url(self.token(user, role, **claims) if user is not None else None))

    def url(self, token: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.port}/live" + (f"?token={token}" if token else "")


class Client:
    """A websockets connection speaking the msgpack protocol; keeps everything it receives.

    ``events``: tick events in arrival order; ``ticks``: the tick frames themselves; ``state``: the
    latest value of each ``st`` slot per stream; ``direct``: events of ``ev`` messages; ``replies``:
    every other message (ack, err, ok, snapshot, history, pong, notice).
    """

    #: Connections not closed yet: ``close_all`` (an autouse fixture in tests/service/conftest.py)
    #: closes what a test left open, so none is garbage-collected open (a ResourceWarning).
    opened: ClassVar[set[Client]] = set()

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.replies: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.ticks: list[dict[str, Any]] = []
        self.direct: list[dict[str, Any]] = []
        self.state: dict[str, dict[str, Any]] = {}

    @classmethod
    async def connect(cls, url: str, deflate: bool = True, **kwargs: Any) -> Client:
        ws = await websockets.connect(url, compression="deflate" if deflate else None, **kwargs)
        client = cls(ws)
        cls.opened.add(client)
        return client

    async def send(self, **msg: Any) -> None:
        await self.ws.send(msgpack.packb(msg))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, bytes), f"server sent a text frame: {raw!r}"
        m: dict[str, Any] = msgpack.unpackb(raw, strict_map_key=False)
        kind = m.get("t")
        if kind == "tick":
            self.ticks.append(m)
            self.events.extend(m.get("e", []))
            self.state.setdefault(m["s"], {}).update(m.get("st", {}))
        elif kind == "ev":
            self.direct.extend(m.get("e", []))
        else:
            self.replies.append(m)
        return m

    async def wait(self, done: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
        """Read until ``done()`` is true; TimeoutError (naming ``what``) after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"waited {timeout} s for {what or done}")
            try:
                await self.recv(left)
            except TimeoutError:
                raise TimeoutError(f"waited {timeout} s for {what or done}") from None

    async def reply(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next reply of type ``kind`` (other messages read meanwhile are kept)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            m = await self.recv(deadline - loop.time())
            if m.get("t") == kind:
                return m

    async def call(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send ``op`` with a fresh rid; return the reply carrying that rid (ok/err/ack/...)."""
        rid = random.randrange(1, 1 << 40)
        await self.send(op=op, rid=rid, **fields)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            m = await self.recv(deadline - loop.time())
            if m.get("rid") == rid and m.get("t") != "tick":
                return m

    async def join(self, stream: str, **fields: Any) -> dict[str, Any]:
        snap = await self.call("join", stream=stream, **fields)
        assert snap["t"] == "snapshot", snap
        return snap

    def comment_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("k") == "c"]

    async def comments(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``n`` comment events have arrived in ticks; return them in order."""
        await self.wait(lambda: len(self.comment_events()) >= n, timeout, f"{n} comments")
        return self.comment_events()

    async def event(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Wait for a tick event of ``kind`` whose fields include ``match``; return it."""

        def found() -> dict[str, Any] | None:
            for e in self.events:
                if e.get("k") == kind and all(e.get(k) == v for k, v in match.items()):
                    return e
            return None

        await self.wait(lambda: found() is not None, timeout, f"event {kind} {match}")
        result = found()
        assert result is not None
        return result

    async def slot(self, stream: str, key: str, done: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        """Wait until state slot ``key`` of ``stream`` satisfies ``done``; return its value."""

        def ok() -> bool:
            value = self.state.get(stream, {}).get(key)
            return value is not None and bool(done(value))

        await self.wait(ok, timeout, f"slot {key} of {stream}")
        return self.state[stream][key]

    async def drain(self, seconds: float) -> None:
        """Read everything that arrives within ``seconds`` (to check that nothing more comes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                await self.recv(left)
            except TimeoutError:
                return

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes the connection; its close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                await self.recv(deadline - loop.time())
        except websockets.ConnectionClosed:
            pass
        return self.ws.close_code

    async def close(self) -> None:
        Client.opened.discard(self)
        await self.ws.close()

    @classmethod
    async def close_all(cls) -> None:
        """Close every client still open (the end of a test)."""
        await asyncio.gather(*(client.close() for client in list(cls.opened)), return_exceptions=True)


class Room:
    """A stream on one server with a watcher (a viewer) and a poster (its broadcaster).

    ``healthy()`` proves that whatever happened meanwhile affected nothing else: one more comment
    is acked and reaches the watcher, whose comments are then exactly the acked ones, in order,
    each once (so nothing refused was ever broadcast).
    """

    def __init__(self, serve: ServeProcess, stream: str, watcher: Client, poster: Client) -> None:
        self.serve = serve
        self.stream = stream
        self.watcher = watcher
        self.poster = poster
        self.acked: list[int] = []

    @classmethod
    async def open(cls, serve: ServeProcess, stream: str) -> Room:
        watcher = await serve.client(f"watcher-{stream}")
        poster = await serve.client(f"owner-{stream}", "viewer", streams={stream: "broadcaster"})
        for c in (watcher, poster):
            await c.join(stream)
        return cls(serve, stream, watcher, poster)

    async def joined(self, user: str | None, role: str = "viewer", **claims: Any) -> Client:
        client = await self.serve.client(user, role, **claims)
        await client.join(self.stream)
        return client

    def note(self, ack: dict[str, Any]) -> int:
        """Count a comment acked to another client of this room as one the watcher must get."""
        assert ack["t"] == "ack" and not ack.get("dup"), ack
        self.acked.append(ack["id"])
        return int(ack["id"])

    async def post(self, client: Client, text: str, **fields: Any) -> dict[str, Any]:
        """Post from ``client``; the ack or the error."""
        return await client.call(
            "post", stream=self.stream, text=text, cmid=f"c{random.getrandbits(48)}", **fields
        )

    async def healthy(self) -> None:
        self.note(await self.post(self.poster, f"healthy {len(self.acked)}"))
        got = await self.watcher.comments(len(self.acked))
        assert [e["id"] for e in got] == self.acked

    async def history(self) -> list[dict[str, Any]]:
        page = await self.watcher.call("history", stream=self.stream, limit=100)
        assert page["t"] == "history", page
        items: list[dict[str, Any]] = page["items"]
        return items

    async def close(self) -> None:
        await self.watcher.close()
        await self.poster.close()
