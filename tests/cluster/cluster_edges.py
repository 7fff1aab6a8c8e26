"""A real cluster for the tests: `livechat serve` edges on Kafka (the log), Cassandra (history),
PostgreSQL (metadata) and Redis (registry, broker), plus `livechat worker persist`.

Every store is fresh per ``Cluster``: its own Kafka topic, Cassandra keyspace, PostgreSQL database
and Redis key prefix on the shared services (``tests.cluster_services``: started once per run by
the project's scripts; a service that cannot start FAILS the test). One HS256 secret signs tokens
for every edge.

``Cluster(tmp, via={...})`` points the edges and workers at other addresses ("host:port") of a
service, e.g. Toxiproxy proxies in front of it (tests/faults/): keys ``kafka``, ``redis``,
``cassandra``, ``postgres``. The test's own set-up and clean-up (database, keyspace, topic) always
talk to the services directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from livechat.devsecret import SECRET_FILE

from tests.cluster_services import service_url
from tests.service.serve_process import Client, ServeProcess

PARTITIONS = 4


class Worker:
    """`livechat worker persist …` as a subprocess."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livechat.cli", "worker", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Cluster:
    def __init__(self, tmp: Path, via: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        via = via or {}
        tag = uuid.uuid4().hex[:10]
        self.topic = f"lc-cluster-{tag}"
        self.notifications_topic = f"lc-notify-{tag}"
        self.keyspace = f"lc_cluster_{tag}"
        self.database = f"lc_cluster_{tag}"
        self.prefix = f"c{tag}:"
        self.secret = secrets.token_urlsafe(32)
        kafka = service_url("kafka").removeprefix("kafka://")
        self.redis_direct = service_url("redis")
        # A full URL (redis+cluster://…) is taken as it is; host:port is a proxy of the single node.
        via_redis = via.get("redis", "")
        self.redis = (
            via_redis if "://" in via_redis else f"redis://{via_redis}" if via_redis else self.redis_direct
        )
        self.kafka_servers = kafka
        self.log_url = (
            f"kafka://{via.get('kafka', kafka)}/{self.topic}?partitions={PARTITIONS}&dedupe={self.redis}"
            f"&dedupe_prefix={self.prefix}"
        )
        self.cassandra_direct = service_url("cassandra").removeprefix("cassandra://")
        self.history_url = f"cassandra://{via.get('cassandra', self.cassandra_direct)}/{self.keyspace}"
        self.pg_base = service_url("postgres")
        host = self.pg_base.removeprefix("postgresql://").split("/")[0]
        if "postgres" in via:
            host = f"{host.partition('@')[0]}@{via['postgres']}"
        self.meta_url = f"postgresql://{host}/{self.database}?migrate=auto"
        self.edges: list[ServeProcess] = []
        self.workers: list[Worker] = []

    async def create(self) -> None:
        conn = await asyncpg.connect(self.pg_base)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    def edge(self, name: str, *extra: str) -> ServeProcess:
        data_dir = self.tmp / f"data-{name}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / SECRET_FILE).write_text(self.secret + "\n")
        edge = ServeProcess(
            data_dir,
            "--edge-id",
            name,
            "--broker",
            self.redis,
            "--registry",
            self.redis,
            "--set",
            f"backends.redis_prefix={self.prefix}",
            "--set",
            f"backends.log={self.log_url}",
            "--set",
            f"backends.history={self.history_url}",
            "--set",
            f"backends.meta={self.meta_url}",
            *extra,
        ).start()
        self.edges.append(edge)
        return edge

    def persist_worker(self, name: str = "persist") -> Worker:
        worker = Worker(
            ["persist", "--log", self.log_url, "--history", self.history_url, "--group", f"p-{self.topic}"],
            self.tmp / f"worker-{name}.log",
        ).start()
        self.workers.append(worker)
        return worker

    def notify_worker(self, webhook: str | None = None) -> Worker:
        """`livechat worker notify` into this cluster's own topic (``notifications_topic``)."""
        args = ["notify", "--log", self.log_url, "--meta", self.meta_url, "--history", self.history_url]
        args += ["--group", f"n-{self.topic}", "--topic", self.notifications_topic]
        worker = Worker([*args, *(("--webhook", webhook) if webhook else ())], self.tmp / "worker-notify.log")
        self.workers.append(worker.start())
        return worker

    async def close(self, check_tracebacks: bool = True) -> None:
        """Stop every process, drop the topic, database and keyspace; ``check_tracebacks``: fail
        when an edge logged a traceback."""
        for edge in self.edges:
            if edge.proc is not None and edge.proc.poll() is None:
                edge.stop()
        for worker in self.workers:
            worker.stop()
        with contextlib.suppress(Exception):
            admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka_servers)
            await admin.start()
            try:
                topics = set(await admin.list_topics())
                await admin.delete_topics([t for t in (self.topic, self.notifications_topic) if t in topics])
            finally:
                await admin.close()
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(self.pg_base)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await conn.close()
        await asyncio.to_thread(self._drop_keyspace)
        if check_tracebacks:
            for edge in self.edges:
                edge.assert_no_tracebacks()

    def _drop_keyspace(self) -> None:
        from cassandra.cluster import Cluster as CassandraCluster

        host, _, port = self.cassandra_direct.partition(":")
        with contextlib.suppress(Exception):
            cluster = CassandraCluster([host], port=int(port), protocol_version=5)
            try:
                cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=30)
            finally:
                cluster.shutdown()


async def joined(
    edge: ServeProcess, stream: str, user: str | None, role: str = "viewer", **claims: Any
) -> Client:
    client = await Client.connect(edge.url(edge.token(user, role, **claims) if user is not None else None))
    await client.join(stream)
    return client


async def eventually(check: Any, timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``await check()`` until it returns a truthy value (the value) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what or 'condition'} not met within {timeout} s (last: {last!r})")
