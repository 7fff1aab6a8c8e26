"""Fixtures for the end-to-end suite: `livechat serve` processes and, for cluster tests, a real Redis.

Redis is started by the project's own ``scripts/redis.sh`` (through ``tests/contract/redis_service``)
on a free port in 16400-16499, once per session; when it cannot start, the tests that need it FAIL
(never skip). Each cluster test uses its own key/channel prefix, so tests never see each other.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from livechat.devsecret import SECRET_FILE

from tests.contract.redis_service import RedisServer, port_is_free
from tests.service.serve_process import Client, ServeProcess

REDIS_PORTS = range(16400, 16500)

StartServe = Callable[..., ServeProcess]


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Every client a test opened is closed at its end, in the loop that opened it."""
    yield
    await Client.close_all()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session; FAILS the tests that need it if it cannot start."""
    candidates = [p for p in REDIS_PORTS if port_is_free(p)]
    random.shuffle(candidates)
    errors = []
    for port in candidates[:5]:  # another process may take a port between the check and the start
        server = RedisServer(port, tmp_path_factory.mktemp(f"redis-{port}"))
        try:
            server.start()
        except RuntimeError as exc:
            errors.append(str(exc))
            continue
        try:
            yield server
        finally:
            server.stop()
        return
    pytest.fail(f"could not start Redis with scripts/redis.sh: {'; '.join(errors) or 'no free port'}")


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[StartServe]:
    """``start_serve("a", *extra_args)``: one more `livechat serve` with its own data dir; every
    one is stopped (SIGTERM) at the end of the test."""
    started: list[ServeProcess] = []

    def start(name: str = "edge", *extra: str) -> ServeProcess:
        proc = ServeProcess(tmp_path / f"data-{name}", *extra).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop()
    for proc in started:
        proc.assert_no_tracebacks()


@pytest.fixture
def start_edge(tmp_path: Path, start_serve: StartServe, redis_server: RedisServer) -> StartServe:
    """``start_edge("a", node_id, *extra)``: a `livechat serve` in cluster mode: Redis broker and
    registry under a prefix unique to this test, edge id ``name``, comment-id node ``node_id``
    (None: the edge assigns its own)."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    # One signing secret for the cluster (a token works on every edge), put where each edge's
    # `livechat serve` reads its development secret.
    secret = secrets.token_urlsafe(32)

    def start(name: str, node_id: int | None, *extra: str) -> ServeProcess:
        data_dir = tmp_path / f"data-{name}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / SECRET_FILE).write_text(secret + "\n")
        return start_serve(
            name,
            "--broker",
            redis_server.url,
            "--registry",
            redis_server.url,
            "--edge-id",
            name,
            *(("--set", f"chat.node_id={node_id}") if node_id is not None else ()),
            "--set",
            f"backends.redis_prefix={prefix}",
            *extra,
        )

    return start
