"""scripts/services.sh and tests/cluster_services.py: every service comes up through ``service_url``
and answers its real driver; ``up`` is idempotent; a start that cannot succeed fails with the reason;
``down`` stops only what the script started; Toxiproxy's latency toxic really delays traffic.

The shared services are only started (never stopped) here. The start/stop/failure checks run a private Redis
on a free port with its own work dir, so they never touch the shared instances.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis
import redis.asyncio
from aiokafka.admin import AIOKafkaAdminClient
from cassandra.cluster import Cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.cluster_services import SCRIPT, Toxiproxy, _up, service_url
from tests.ports import free_port


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


def running(pid: int) -> bool:
    """The process exists and is not a zombie (a daemon's parent is init, which may reap it late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


# --- each service answers its real driver ---------------------------------------------------------


async def test_kafka_answers_admin_client() -> None:
    url = service_url("kafka")
    assert url == "kafka://127.0.0.1:19092"
    host, port = host_port(url)
    admin = AIOKafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=10_000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        assert [b["port"] for b in cluster["brokers"]] == [port]
        assert cluster["controller_id"] == cluster["brokers"][0]["node_id"]
        topics = await admin.list_topics()
        assert isinstance(topics, list)
    finally:
        await admin.close()


def test_cassandra_answers_cql() -> None:
    host, port = host_port(service_url("cassandra"))
    cluster = Cluster([host], port=port, protocol_version=5, connect_timeout=10)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        assert row.release_version == "5.0.9"
    finally:
        cluster.shutdown()


async def test_postgres_answers_asyncpg() -> None:
    url = service_url("postgres")
    assert url == "postgresql://postgres@127.0.0.1:19432/postgres"
    conn = await asyncpg.connect(url, timeout=10)
    try:
        version = await conn.fetchval("select version()")
        assert version.startswith("PostgreSQL 15."), version
        # fsync=off is part of the recipe (test data only): a durable setting would slow every test.
        assert await conn.fetchval("show fsync") == "off"
    finally:
        await conn.close()


async def test_redis_single_answers_ping() -> None:
    url = service_url("redis")
    assert url == "redis://127.0.0.1:19600"
    client = redis.asyncio.Redis.from_url(url)
    try:
        assert await client.ping() is True
        major = int((await client.info("server"))["redis_version"].split(".")[0])
        assert major >= 7  # sharded pub/sub
    finally:
        await client.aclose()


async def test_redis_cluster_is_ok_with_three_synced_replicas() -> None:
    url = service_url("redis-cluster")
    assert url == "redis+cluster://127.0.0.1:19701"
    host, port = host_port(url)
    client = redis.asyncio.RedisCluster(host=host, port=port)
    try:
        info = await client.cluster_info()
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_size"]) == 3
        nodes = await client.cluster_nodes()
        roles = sorted("master" if "master" in str(n["flags"]) else "slave" for n in nodes.values())
        assert roles == ["master"] * 3 + ["slave"] * 3
    finally:
        await client.aclose()


def test_toxiproxy_latency_toxic_delays_redis() -> None:
    url = service_url("toxiproxy")
    assert url == "http://127.0.0.1:18474"
    toxi = Toxiproxy(url)
    assert toxi.version()
    name = f"test-services-{uuid.uuid4().hex[:8]}"
    proxy = toxi.proxy(name, "127.0.0.1:0", f"127.0.0.1:{host_port(service_url('redis'))[1]}")
    host, _, port = proxy["listen"].rpartition(":")
    client = redis.Redis(host=host, port=int(port), socket_timeout=5)
    try:

        def ping_s() -> float:
            t0 = time.perf_counter()
            assert client.ping() is True
            return time.perf_counter() - t0

        ping_s()  # connect outside the measurement
        assert ping_s() < 0.05
        latency_ms = 100
        toxi.add_toxic(name, "latency", "downstream", {"latency": latency_ms, "jitter": 0}, name="lat")
        delayed = min(ping_s() for _ in range(3))
        assert delayed >= latency_ms / 1000, delayed
        toxi.remove_toxic(name, "lat")
        assert ping_s() < 0.05
        toxi.set_enabled(name, False)
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host=host, port=int(port), socket_timeout=2, retry=Retry(NoBackoff(), 0)).ping()
        toxi.set_enabled(name, True)
    finally:
        client.close()
        toxi.delete_proxy(name)


# --- the script itself, on a private Redis --------------------------------------------------------


@pytest.fixture
def private_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """services.sh settings for a private work dir and ready file; the Redis it starts is stopped after."""
    env = dict(os.environ)
    env["LIVECHAT_SERVICES_DIR"] = str(tmp_path / "infra")
    env["LIVECHAT_SERVICES_READY"] = str(tmp_path / "ready")
    env["LIVECHAT_REDIS_PORT"] = str(free_port())
    yield env
    subprocess.run([str(SCRIPT), "down", "redis"], env=env, capture_output=True, timeout=30, check=False)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_up_is_idempotent_and_down_stops_it(private_env: dict[str, str]) -> None:
    port = int(private_env["LIVECHAT_REDIS_PORT"])
    first = run(private_env, "up", "redis")
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"redis redis://127.0.0.1:{port}\n"
    assert "starting" in first.stderr
    assert Path(private_env["LIVECHAT_SERVICES_READY"]).read_text() == f"redis redis://127.0.0.1:{port}\n"
    pid = int((Path(private_env["LIVECHAT_SERVICES_DIR"]) / "run" / f"redis-{port}.pid").read_text())

    t0 = time.perf_counter()
    again = run(private_env, "up", "redis")
    assert again.returncode == 0 and time.perf_counter() - t0 < 2.0
    assert "already answering" in again.stderr
    assert redis.Redis(host="127.0.0.1", port=port).ping() is True

    status = run(private_env, "status")
    assert f"redis          up       {pid}" in status.stdout

    down = run(private_env, "down", "redis")
    assert down.returncode == 0, down.stderr
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
    assert not running(pid)
    assert Path(private_env["LIVECHAT_SERVICES_READY"]).read_text() == ""


def test_busy_port_fails_with_reason(private_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:  # not a Redis: `up` must neither accept it nor kill it
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        private_env["LIVECHAT_REDIS_PORT"] = str(squatter.getsockname()[1])
        for key in ("LIVECHAT_SERVICES_DIR", "LIVECHAT_SERVICES_READY", "LIVECHAT_REDIS_PORT"):
            monkeypatch.setenv(key, private_env[key])
        with pytest.raises(RuntimeError, match=r"(?s)exit 1.*in use by another program"):
            _up("redis")
    assert not Path(private_env["LIVECHAT_SERVICES_READY"]).exists() or (
        "redis" not in Path(private_env["LIVECHAT_SERVICES_READY"]).read_text()
    )


def test_unknown_name_is_a_usage_error(private_env: dict[str, str]) -> None:
    bad = run(private_env, "up", "mongodb")
    assert bad.returncode == 2
    assert "unknown service 'mongodb'" in bad.stderr
