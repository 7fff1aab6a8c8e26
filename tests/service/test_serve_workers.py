"""`livechat serve --workers 2`: two edge processes behind one port, one system.

Each test learns which worker holds a connection from the workers' own ``livechat_connections``
gauges (connections are opened one at a time, so exactly one gauge moves), then checks what must hold
across workers: fan-out, a ban, slow mode (a shared limit); that an unrelated server cannot take the
port; and that a worker killed with SIGKILL is started again while the other keeps serving.
Embedded mode (the parent's private Redis) and cluster mode (a real Redis the test starts) both run.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.redis_service import RedisServer
from tests.ports import free_port
from tests.service.serve_process import SERVE_PORTS, Client, ServeProcess

STREAM = "workers-s1"
WORKERS = 2
#: An unrelated `livechat serve` (admin server on any free port, so only the WebSocket port clashes).
STRANGER = (sys.executable, "-m", "livechat.cli", "serve", "--admin-port", "0")
_GAUGE = re.compile(rb"^livechat_connections(?:\{[^}]*\})? (\d+(?:\.\d+)?)$", re.M)


class WorkersServe(ServeProcess):
    """``livechat serve --workers 2`` with admin ports ``admin`` and ``admin + 1``."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.admin = free_port(SERVE_PORTS)
        while not _port_free(self.admin + 1):
            self.admin = free_port(SERVE_PORTS)
        super().__init__(data_dir, "--workers", str(WORKERS), "--admin-port", str(self.admin), *extra)

    def connections(self) -> list[int]:
        """Each worker's open WebSocket connections, by worker index."""
        counts = []
        for i in range(WORKERS):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin + i}/metrics", timeout=5) as r:
                found = _GAUGE.findall(r.read())  # one sample per I/O thread
            assert found, "livechat_connections gauge missing"
            counts.append(sum(int(float(n)) for n in found))
        return counts

    def ready(self) -> None:
        """Both workers answer on their admin ports (the port may accept before every worker runs)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self.connections()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid), "-f", "livechat.server.workers"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return sorted(int(p) for p in out.split())


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def connect_on(serve: WorkersServe, url: str, worker: int, tries: int = 60) -> Client:
    """A connection that landed on ``worker`` (others opened on the way are closed)."""
    for _ in range(tries):
        before = await asyncio.to_thread(serve.connections)
        client = await Client.connect(url)
        await client.call("ping")
        after = await asyncio.to_thread(serve.connections)
        moved = [i for i in range(WORKERS) if after[i] > before[i]]
        if moved == [worker]:
            return client
        await client.close()
    raise AssertionError(f"no connection landed on worker {worker} in {tries} tries")


@pytest.fixture
def redis_for_workers(tmp_path: Path) -> Iterator[RedisServer]:
    """A real Redis (scripts/redis.sh) on a free port; the test FAILS if it cannot start."""
    server = RedisServer(free_port(range(16500, 16600)), tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def start_workers(tmp_path: Path, *extra: str) -> WorkersServe:
    serve = WorkersServe(tmp_path / "data", *extra)
    serve.start()
    serve.ready()
    return serve


@pytest.fixture(params=["embedded", "cluster"])
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkersServe]:
    extra: tuple[str, ...] = ()
    if request.param == "cluster":
        redis: RedisServer = request.getfixturevalue("redis_for_workers")
        extra = ("--broker", redis.url, "--registry", redis.url)
    serve = start_workers(tmp_path, *extra)
    yield serve
    if serve.proc is not None and serve.proc.poll() is None:
        assert serve.stop() == 0, "every worker drained and exited 0"
    serve.assert_no_tracebacks()


async def test_fanout_ban_and_slow_mode_hold_across_workers(workers: WorkersServe) -> None:
    owner = await connect_on(workers, workers.url(workers.token("olga", "broadcaster")), 0)
    await owner.join(STREAM)
    viewer = await connect_on(workers, workers.url(workers.token("vic")), 1)
    await viewer.join(STREAM)

    # A comment posted on worker 1 reaches a viewer on worker 0, and the other way round.
    ack = await viewer.call("post", stream=STREAM, text="from worker one", cmid="v1")
    assert ack["t"] == "ack", ack
    assert [c["x"] for c in await owner.comments(1)] == ["from worker one"]
    ack = await owner.call("post", stream=STREAM, text="from worker zero", cmid="o1")
    assert ack["t"] == "ack", ack
    assert [c["x"] for c in await viewer.comments(2)] == ["from worker one", "from worker zero"]

    # Slow mode set on worker 0 binds a poster on worker 1, and one poster's two connections on
    # the two workers share one slow-mode clock.
    assert (await owner.call("slow", stream=STREAM, seconds=30))["t"] == "ok"
    await viewer.event("modes", slow=30)
    ack = await viewer.call("post", stream=STREAM, text="first in slow mode", cmid="v2")
    assert ack["t"] == "ack", ack
    twin = await connect_on(workers, workers.url(workers.token("vic")), 0)
    await twin.join(STREAM)
    refused = await twin.call("post", stream=STREAM, text="second in slow mode", cmid="v3")
    assert refused["t"] == "err" and refused["code"] == "slow_mode", refused
    assert refused.get("retry_ms", 0) > 0
    await twin.close()

    # A ban issued on worker 0 closes the user's connection on worker 1, and neither worker lets
    # them post again (a banned user may still read).
    assert (await owner.call("ban", stream=STREAM, user="vic"))["t"] == "ok"
    assert await viewer.closed(timeout=5) == 1008
    for worker in range(WORKERS):
        again = await connect_on(workers, workers.url(workers.token("vic")), worker)
        await again.join(STREAM)
        err = await again.call("post", stream=STREAM, text="let me in", cmid=f"b{worker}")
        assert err["t"] == "err" and err["code"] == "banned", (worker, err)
        await again.close()


async def test_a_foreign_server_cannot_take_the_port(tmp_path: Path) -> None:
    serve = start_workers(tmp_path)
    try:
        stranger = subprocess.run(
            [*STRANGER, "--port", str(serve.port), "--data-dir", str(tmp_path / "stranger")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert stranger.returncode != 0
        assert "address already in use" in (stranger.stdout + stranger.stderr).lower()
        # Every connection still goes to this server's workers: 20 in a row are all served.
        before = sum(await asyncio.to_thread(serve.connections))
        clients = [await Client.connect(serve.url()) for _ in range(20)]
        for c in clients:
            assert (await c.call("ping"))["t"] == "pong"
        assert sum(await asyncio.to_thread(serve.connections)) == before + 20
    finally:
        assert serve.stop() == 0
    serve.assert_no_tracebacks()


async def test_a_killed_worker_is_started_again(tmp_path: Path) -> None:
    serve = start_workers(tmp_path)
    try:
        pids = serve.worker_pids()
        assert len(pids) == WORKERS, pids
        os.kill(pids[0], signal.SIGKILL)
        # The other worker keeps taking connections while the dead one is replaced.
        for _ in range(10):
            c = await Client.connect(serve.url())
            assert (await c.call("ping"))["t"] == "pong"
            await c.close()
        deadline = time.monotonic() + 30
        while True:
            now = serve.worker_pids()
            if len(now) == WORKERS and pids[0] not in now:
                break
            assert time.monotonic() < deadline, f"worker not restarted: {now}"
            await asyncio.sleep(0.2)
        await asyncio.to_thread(serve.ready)
        # The new worker serves: a connection lands on each worker again.
        for worker in range(WORKERS):
            c = await connect_on(serve, serve.url(), worker)
            await c.close()
    finally:
        assert serve.stop() == 0
