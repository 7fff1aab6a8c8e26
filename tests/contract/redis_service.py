"""Start and stop real Redis servers through the project's own ``scripts/redis.sh``."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REDIS_SCRIPT = REPO / "scripts" / "redis.sh"
# Ports this suite may use (shared machine: stay inside the assigned range).
REDIS_PORTS = range(16300, 16400)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """A Redis started by scripts/redis.sh on ``port`` with its data under ``data_dir``."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{port}"

    def start(self) -> None:
        """Start (or find running) the server; raises RuntimeError with the script's stderr."""
        done = subprocess.run(
            [str(REDIS_SCRIPT), "start", str(self.port), str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/redis.sh start {self.port} failed: {done.stderr.strip()}")
        assert done.stdout.strip() == self.url

    def stop(self) -> None:
        subprocess.run(
            [str(REDIS_SCRIPT), "stop", str(self.port), str(self.data_dir)], capture_output=True, timeout=30
        )

    def cli(self, *args: str) -> str:
        """Run one redis-cli command against this server (used to simulate failures)."""
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout


def free_redis_ports(exclude: int | None = None) -> list[int]:
    return [p for p in REDIS_PORTS if p != exclude and port_is_free(p)]


def redis_url(request: pytest.FixtureRequest, backend: str) -> str:
    """The server behind a contract backend name: "redis" is this session's private server
    (scripts/redis.sh; tests may kill its clients), "redis-cluster" the shared Redis Cluster
    (tests use their own key prefix and touch only their own connections there)."""
    if backend == "redis":
        return str(request.getfixturevalue("redis_server").url)
    if backend == "redis-cluster":
        return cluster_url()
    raise ValueError(f"not a Redis backend: {backend!r}")


def cluster_url() -> str:
    """``redis+cluster://`` URL of the shared cluster; FAILS (never skips) when it cannot start."""
    from tests.cluster_services import service_url

    try:
        return service_url("redis-cluster")
    except RuntimeError as exc:
        pytest.fail(f"the Redis Cluster could not start: {exc}")


def toxiproxy_api() -> str:
    """URL of the shared Toxiproxy's API; FAILS (never skips) when it cannot start."""
    from tests.cluster_services import service_url

    try:
        return service_url("toxiproxy")
    except RuntimeError as exc:
        pytest.fail(f"Toxiproxy could not start: {exc}")
