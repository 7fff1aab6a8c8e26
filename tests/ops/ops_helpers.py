"""Helpers for the operator-surface tests: a `livechat serve` process waited for through its own
/readyz, raw HTTP against the admin port, and /metrics parsed with the reference parser
(``prometheus_client.parser``), so a format mistake fails here before a Prometheus server sees it.

Ports: 18000-18999 (this suite's share of the shared machine).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.ports import free_port

OPS_PORTS = range(18000, 19000)


def ops_port() -> int:
    return free_port(OPS_PORTS)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET on the admin port; 5xx/4xx are returned, not raised."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def raw_http(port: int, request: bytes, timeout: float = 5.0, eof: bool = False) -> bytes:
    """Send ``request`` as it is (then EOF when ``eof``) and return everything the server answers
    until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        if eof:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


@dataclass(frozen=True)
class Metrics:
    """One scrape: every sample by (name, labels)."""

    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float]
    types: Mapping[str, str]

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; KeyError naming it when absent."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            raise KeyError(f"no sample {name}{labels}")
        return self.samples[key]

    def total(self, name: str, **labels: str) -> float:
        """Sum over every sample of ``name`` whose labels include ``labels`` (e.g. all threads)."""
        want = set(labels.items())
        found = [v for (n, ls), v in self.samples.items() if n == name and want <= ls]
        if not found:
            raise KeyError(f"no sample {name}{labels}")
        return sum(found)

    def labelled(self, name: str, label: str) -> dict[str, float]:
        return {dict(ls)[label]: v for (n, ls), v in self.samples.items() if n == name and label in dict(ls)}


def parse_metrics(text: str) -> Metrics:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return Metrics(samples, types)


def scrape(port: int) -> Metrics:
    status, body = http_get(port, "/metrics")
    assert status == 200, body
    return parse_metrics(body)


class OpsServe:
    """`livechat serve --config FILE --port P --admin-port A --data-dir D [extra]`, ready when its
    own /readyz says so (no probe connection to the edge, so the edge's counters stay exact)."""

    def __init__(self, data_dir: Path, config: Path | None, *extra: str) -> None:
        self.data_dir = data_dir
        self.config = config
        self.port = ops_port()
        self.admin_port = ops_port()
        while self.admin_port == self.port:
            self.admin_port = ops_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"serve-{self.port}.log"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "livechat.cli", "serve", "--port", str(self.port)]
        cmd += ["--admin-port", str(self.admin_port), "--data-dir", str(self.data_dir)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        return cmd + list(self.extra)

    def start(self, timeout: float = 30.0) -> OpsServe:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"livechat serve exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if http_get(self.admin_port, "/readyz", timeout=1.0)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"livechat serve was not ready within {timeout} s:\n{self.log_text()}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.signal(signal.SIGTERM)
        return self.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def url(self, token: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.port}/live" + (f"?token={token}" if token else "")

    def mint(self, user: str, *args: str) -> str:
        """A token from `livechat token` with this server's data dir and config file."""
        cmd = [sys.executable, "-m", "livechat.cli", "token", user, "--data-dir", str(self.data_dir)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        done = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()
