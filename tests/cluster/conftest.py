"""Fixtures for the cluster tests: fresh Kafka topics and `livechat` subprocesses.

- ``kafka_topic(partitions=4)``: the ``kafka://`` URL of a topic no other test uses (``t-<hex>``
  on the shared broker from ``tests.cluster_services``: a broker that cannot start FAILS the test);
  every topic a test made is deleted when it ends. ``kafka_topic.name(url)`` gives the topic name.
- ``livechat_process(*args)``: ``python -m livechat.cli *args`` with plain logs captured to a file
  (``LivechatProcess``); every process still running is killed when the test ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.cluster_services import service_url

T = TypeVar("T")


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code on its own loop in another thread (a test loop may run here)."""

    async def main() -> T:
        return await fn()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def kafka_servers() -> str:
    return service_url("kafka").removeprefix("kafka://")


class TopicFactory:
    def __init__(self) -> None:
        self.topics: list[str] = []

    def __call__(self, partitions: int = 4, prefix: str = "t") -> str:
        topic = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.topics.append(topic)
        return f"kafka://{kafka_servers()}/{topic}?partitions={partitions}"

    @staticmethod
    def name(url: str) -> str:
        return url.split("/", 3)[3].split("?", 1)[0]

    async def delete(self) -> None:
        if not self.topics:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_servers())
        await admin.start()
        try:
            await admin.delete_topics(self.topics)
        finally:
            await admin.close()


@pytest.fixture
def kafka_topic() -> Iterator[TopicFactory]:
    factory = TopicFactory()
    yield factory
    try:
        run_async(factory.delete)
    except Exception as exc:  # a topic never created (the test failed early): nothing to clean
        print(f"could not delete topics {factory.topics}: {exc}", file=sys.stderr)


class LivechatProcess:
    """``python -m livechat.cli ARGS`` with its output (plain logs) in ``log_path``."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LivechatProcess:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "livechat.cli", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no chance to commit, flush or leave the consumer group."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code (killed after ``timeout``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def wait_for(self, pattern: str, timeout: float = 60.0, after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the output past character ``after``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.output(), after)
            if found is not None:
                return found
            if not self.running:
                raise AssertionError(
                    f"process exited ({self.proc and self.proc.returncode}):\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.output()[-4000:]}")
            time.sleep(0.1)

    def metrics_url(self, timeout: float = 60.0) -> str:
        """Where the process serves /metrics (it was started with ``--metrics-port 0``)."""
        return self.wait_for(r"metrics on (http://\S+/metrics)", timeout).group(1)

    def metric(self, name: str, timeout: float = 60.0, **labels: str) -> float:
        """The value of one Prometheus sample (0.0 when the series has not appeared yet)."""
        with urllib.request.urlopen(self.metrics_url(timeout), timeout=5) as response:
            text = response.read().decode()
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if got == wanted:
                return float(value)
        return 0.0


@pytest.fixture
def livechat_process(tmp_path: Path) -> Iterator[Callable[..., LivechatProcess]]:
    started: list[LivechatProcess] = []

    def start(*args: str, name: str = "process") -> LivechatProcess:
        process = LivechatProcess(list(args), tmp_path / f"{name}-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.running:
            assert process.proc is not None
            process.proc.kill()
            process.proc.wait(10)
