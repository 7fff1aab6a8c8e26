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
from typing import TypeVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient

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
