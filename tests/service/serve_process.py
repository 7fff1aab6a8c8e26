"""Run `livechat serve` as a subprocess on a free port, and mint tokens for it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import msgpack
import websockets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServeProcess:
    """`livechat serve --port P --data-dir D [extra]`, waited for until it accepts connections."""

    def __init__(self, data_dir: Path, *extra: str, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        cmd = [sys.executable, "-m", "livechat.cli", "serve", "--port", str(self.port)]
        cmd += ["--data-dir", str(self.data_dir), *self.extra]
        self.log = open(self.data_dir.parent / f"serve-{self.port}.log", "ab")  # noqa: SIM115
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

    def token(self, user: str, role: str = "viewer", **claims: Any) -> str:
        secret = (self.data_dir / "hmac-secret").read_text().strip()
        body = {"sub": user, "aud": "livechat", "role": role, "exp": int(time.time()) + 3600, **claims}
        return jwt.encode(body, secret, algorithm="HS256")

    def url(self, token: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.port}/live" + (f"?token={token}" if token else "")


class Client:
    """A websockets connection speaking the msgpack protocol; keeps every event it receives."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.replies: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, url: str, deflate: bool = True) -> Client:
        ws = await websockets.connect(url, compression="deflate" if deflate else None)
        return cls(ws)

    async def send(self, **msg: Any) -> None:
        await self.ws.send(msgpack.packb(msg))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, bytes)
        m: dict[str, Any] = msgpack.unpackb(raw)
        if m.get("t") == "tick":
            self.events.extend(m.get("e", []))
        else:
            self.replies.append(m)
        return m

    async def reply(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next reply of type ``kind`` (ticks read meanwhile are kept in ``events``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            m = await self.recv(deadline - asyncio.get_running_loop().time())
            if m.get("t") == kind:
                return m

    async def comments(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``n`` comment events have arrived in ticks; return them in order."""
        deadline = asyncio.get_running_loop().time() + timeout
        while sum(1 for e in self.events if e.get("k") == "c") < n:
            await self.recv(deadline - asyncio.get_running_loop().time())
        return [e for e in self.events if e.get("k") == "c"]

    async def close(self) -> None:
        await self.ws.close()
