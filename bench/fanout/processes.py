"""Child processes of a run: the server under test and the load-generator processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from bench.fanout import rust_loadgen

_REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """The environment for children: ``bench`` importable from the repo root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ServerExited(RuntimeError):
    pass


class ServerProcess:
    def __init__(self, command: list[str], log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        """Start the server and return once it accepts TCP connections on ``host:port``."""
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=child_env(),
            cwd=_REPO_ROOT,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.command} not listening on {host}:{port} after {timeout_s}s"
                    ) from None
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.returncode is not None:
            raise ServerExited(
                f"server exited with code {self.process.returncode}; log tail:\n{log_tail(self.log_path)}"
            )

    async def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; returns the exit code."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._log is not None:
            self._log.close()
        return self.process.returncode if self.process is not None else None


class WorkerError(RuntimeError):
    pass


class LoadWorker:
    """One load-generator process and its JSON-lines request channel.

    ``bench.fanout.loadgen`` (Python), or for viewers with ``loadgen="rust"`` the compiled
    ``lc-loadgen``, which answers the same requests the same way.
    """

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name

    @classmethod
    async def spawn(
        cls, name: str, role: str, tick_frames: bool, log: IO[bytes], loadgen: str = "python"
    ) -> LoadWorker:
        if loadgen == "rust" and role == "viewers":
            args = [str(rust_loadgen.require_built()), "--role", role]
        else:
            args = [sys.executable, "-m", "bench.fanout.loadgen", "--role", role]
        if tick_frames:
            args.append("--tick-frames")
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=child_env(),
            cwd=_REPO_ROOT,
            limit=64 << 20,
        )
        return cls(process, name)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def request(self, op: str, timeout_s: float, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.process.stdin.drain()
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        except TimeoutError:
            raise WorkerError(f"{self.name}: no reply to {op!r} within {timeout_s}s") from None
        if not line:
            raise WorkerError(f"{self.name} exited (code {self.process.returncode}) during {op!r}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"{self.name}: {op!r} failed: {reply['error']}")
        return reply

    async def stop(self, grace_s: float = 10.0) -> None:
        if self.process.returncode is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(b'{"op": "exit"}\n')
                await self.process.stdin.drain()
                await asyncio.wait_for(self.process.wait(), grace_s)
            except (TimeoutError, ConnectionError):
                self.process.kill()
                await self.process.wait()
