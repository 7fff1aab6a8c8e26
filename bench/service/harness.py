"""The processes of a service benchmark: `livechat serve` edges, a Redis, load-generator workers,
and CPU accounting for all of them from /proc.

Ports: edges 17000-17999, Redis 16400-16499 (this benchmark's share of the shared machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import jwt

from bench.fanout import procstat
from bench.fanout.processes import LoadWorker, ServerProcess, child_env
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EDGE_PORTS = range(17000, 18000)
REDIS_PORTS = range(16400, 16500)
SECRET_FILE = "hmac-secret"


class Redis:
    """A Redis started (and stopped) by the project's ``scripts/redis.sh``."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port(REDIS_PORTS)
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        done = subprocess.run(
            [str(REPO / "scripts" / "redis.sh"), "start", str(self.port), str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/redis.sh start {self.port} failed: {done.stderr.strip()}")

    @property
    def pid(self) -> int:
        return int((self.data_dir / "redis.pid").read_text().strip())

    def stop(self) -> None:
        subprocess.run(
            [str(REPO / "scripts" / "redis.sh"), "stop", str(self.port), str(self.data_dir)],
            capture_output=True,
            timeout=30,
        )


class Edge:
    """One `livechat serve` process with its own data dir (holding ``secret``)."""

    def __init__(self, name: str, data_dir: Path, secret: str, extra: list[str]) -> None:
        self.name = name
        self.port = free_port(EDGE_PORTS)
        self.data_dir = data_dir
        self.secret = secret
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / SECRET_FILE).write_text(secret + "\n")
        self.command = [
            sys.executable,
            "-m",
            "livechat.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--admin-port",
            "0",  # /metrics on any free port: several edges run side by side
            *extra,
        ]
        self.process = ServerProcess(self.command, data_dir.parent / f"{name}.log")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/live"

    @property
    def pid(self) -> int:
        return self.process.pid

    async def start(self) -> None:
        await self.process.start("127.0.0.1", self.port)

    def admin_port(self) -> int:
        """The /metrics port the edge logged at start (it is started with ``--admin-port 0``)."""
        for line in self.process.log_path.read_text(errors="replace").splitlines():
            if '"admin_port"' in line:
                port: int = json.loads(line)["admin_port"]
                return port
        raise RuntimeError(f"{self.name} logged no admin port")

    def metrics(self) -> dict[str, float]:
        """The edge's /metrics samples by name, summed over labels (per-thread counters add up)."""
        url = f"http://127.0.0.1:{self.admin_port()}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                sample, _, value = line.rpartition(" ")
                name = sample.split("{", 1)[0]
                out[name] = out.get(name, 0.0) + float(value)
        return out

    def token(self, user: str, **claims: Any) -> str:
        body = {"sub": user, "aud": "livechat", "exp": int(time.time()) + 7200, **claims}
        return jwt.encode(body, self.secret, algorithm="HS256")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


async def spawn_worker(name: str, role: str, log: IO[bytes], *extra: str) -> LoadWorker:
    """A ``bench.service.loadgen`` process (role posters or viewers), or for role ``sinks`` a
    ``bench.service.sinks`` process; ``extra``: more command-line arguments."""
    args = ["bench.service.sinks"] if role == "sinks" else ["bench.service.loadgen", "--role", role]
    args += extra
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=child_env(),
        cwd=REPO,
        limit=64 << 20,
    )
    return LoadWorker(process, name)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid``'s threads by kind: ``python`` (the event loop: the main thread),
    ``io`` (the edge's ``lc-io-N`` threads), ``ticker`` (``lc-ticker``), ``other`` (SQLite writer,
    libuv workers...)."""
    groups = {"python": 0.0, "io": 0.0, "ticker": 0.0, "other": 0.0}
    task_dir = Path(f"/proc/{pid}/task")
    for tid in os.listdir(task_dir):
        try:
            comm = (task_dir / tid / "comm").read_text().strip()
            with open(task_dir / tid / "stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if int(tid) == pid:
            groups["python"] += seconds
        elif comm.startswith("lc-io"):
            groups["io"] += seconds
        elif comm.startswith("lc-ticker"):
            groups["ticker"] += seconds
        else:
            groups["other"] += seconds
    return groups


@dataclass
class ThreadMeter:
    """Cores of each thread kind of some processes between ``start`` and ``stop``."""

    pids: dict[str, int]
    started: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_started: float = 0.0

    def start(self) -> None:
        self.started = {name: thread_cpu(pid) for name, pid in self.pids.items()}
        self.wall_started = time.monotonic()

    def stop(self) -> dict[str, dict[str, float]]:
        wall = time.monotonic() - self.wall_started
        out = {}
        for name, pid in self.pids.items():
            now = thread_cpu(pid)
            out[name] = {kind: (now[kind] - self.started[name][kind]) / wall for kind in now}
        return out


@dataclass
class CpuMeter:
    """CPU seconds of named processes and of the whole machine between ``start`` and ``stop``."""

    pids: dict[str, list[int]]
    started: dict[str, float] = field(default_factory=dict)
    machine_started: float = 0.0
    wall_started: float = 0.0
    _pid_started: dict[int, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        return {name: sum(procstat.cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}

    def start(self) -> None:
        self._pid_started = {pid: procstat.cpu_seconds(pid) for pids in self.pids.values() for pid in pids}
        self.started = self._read()
        self.machine_started = procstat.machine_busy_seconds()
        self.wall_started = time.monotonic()

    def per_process(self) -> dict[str, float]:
        """Cores of each process since ``start`` (``group:pid``), to spot one saturated process."""
        wall = time.monotonic() - self.wall_started
        return {
            f"{name}:{pid}": (procstat.cpu_seconds(pid) - self._pid_started.get(pid, 0.0)) / wall
            for name, pids in self.pids.items()
            for pid in pids
        }

    def stop(self) -> dict[str, float]:
        """Cores used by each group over the interval, plus ``machine`` (all processes) and
        ``other`` (the machine minus every group: other agents, the kernel's softirqs...)."""
        now = self._read()
        wall = time.monotonic() - self.wall_started
        cores = {name: (now[name] - self.started[name]) / wall for name in self.pids}
        cores["machine"] = (procstat.machine_busy_seconds() - self.machine_started) / wall
        cores["other"] = cores["machine"] - sum(v for k, v in cores.items() if k != "machine")
        cores["seconds"] = wall
        return cores


def wait_quiet(max_wait_s: float, busy_limit_cores: float = 0.3) -> float:
    """Wait (up to ``max_wait_s``) until the machine is nearly idle; returns the busy cores seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before = procstat.machine_busy_seconds()
        time.sleep(1.0)
        busy = procstat.machine_busy_seconds() - before
        if busy < busy_limit_cores or time.monotonic() >= deadline:
            return busy
