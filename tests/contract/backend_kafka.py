"""Kafka comment logs for the contract suites: one fresh topic per test on the shared broker.

The broker (and the Redis holding the cross-edge dedupe index) are the shared services from
``tests.cluster_services``: a test FAILS when they cannot start. Each test gets its own topic
(``t-<uuid>``, 4 partitions, so several streams share a partition as in production) and its own
dedupe key prefix; the topic is deleted when the test ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.cluster_services import service_url

T = TypeVar("T")
PARTITIONS = 4


def broker() -> str:
    """``host:port`` of the shared broker, started if needed."""
    return service_url("kafka").removeprefix("kafka://")


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code on its own loop in another thread (the test's loop may be
    running)."""

    async def main() -> T:
        return await fn()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def _delete_topic(servers: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _create_topic(servers: str, topic: str, partitions: int, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


def create_topic(
    request: pytest.FixtureRequest, configs: dict[str, str], partitions: int = PARTITIONS
) -> str:
    """A topic of this test's own made beforehand with ``configs`` (the log keeps an existing
    topic's settings); its name, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    run_async(lambda: _create_topic(broker(), name, partitions, configs))
    request.addfinalizer(lambda: delete_topic(name))
    return name


def delete_topic(topic: str) -> None:
    run_async(lambda: _delete_topic(broker(), topic))


def kafka_url(
    request: pytest.FixtureRequest, *, dedupe: str | None = "redis", partitions: int = PARTITIONS
) -> str:
    """A URL naming a topic no other test uses (deleted afterwards); ``dedupe`` names the shared
    service holding the dedupe index ("redis", "redis-cluster") or None for the per-process one."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    request.addfinalizer(lambda: delete_topic(name))
    url = f"kafka://{broker()}/{name}?partitions={partitions}"
    if dedupe is not None:
        url += f"&dedupe={service_url(dedupe)}&dedupe_prefix={name}:"
    return url


def fresh_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty comment log (``kind`` must be "log")."""
    if kind != "log":
        raise ValueError(f"Kafka backs only the comment log, not {kind!r}")
    return kafka_url(request)


def kafka_proxy(request: pytest.FixtureRequest) -> tuple[Any, str, str]:
    """A Toxiproxy proxy in front of the shared broker, and every aiokafka connection opened
    from now on in this test routed through it: (toxiproxy client, proxy name, "host:port").

    The broker advertises only its own address, so a client bootstrapped through a proxy would
    connect straight to the broker for everything after the first metadata answer; wrapping
    aiokafka's ``create_conn`` for this test sends those connections to the proxy too (the
    shared broker has no second listener advertised at a proxy address). Connections opened
    before this call stay direct; the routing ends (before the proxy and the test's topic go)
    when the test ends."""
    import aiokafka.client

    from tests.cluster_services import Toxiproxy

    toxiproxy = Toxiproxy(service_url("toxiproxy"))
    name = f"kafka-{uuid.uuid4().hex[:8]}"
    listen = str(toxiproxy.proxy(name, "127.0.0.1:0", broker())["listen"])
    request.addfinalizer(lambda: toxiproxy.delete_proxy(name))
    broker_host, broker_port = broker().rsplit(":", 1)
    proxy_host, proxy_port = listen.rsplit(":", 1)
    real_create_conn: Callable[..., Awaitable[Any]] = aiokafka.client.create_conn

    async def via_proxy(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if (host, str(port)) == (broker_host, broker_port):
            host, port = proxy_host, int(proxy_port)
        return await real_create_conn(host, port, *args, **kwargs)

    aiokafka.client.create_conn = via_proxy
    request.addfinalizer(lambda: setattr(aiokafka.client, "create_conn", real_create_conn))
    return toxiproxy, name, listen
