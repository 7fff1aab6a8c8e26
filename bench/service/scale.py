"""Benchmark (c): one stream with 100 000 viewers on one host, `livechat serve --workers N`.

One `livechat serve --workers 7` (embedded mode: the workers share the parent's private Redis and
one SQLite file) holds every viewer; the open-file limit (20 000 per process) is why there are 7.
Viewers are spread over sink processes (``bench.service.sinks``, 15 000 at most each, each from its
own source address in 127.0.51.0/24), then *probes* (picows viewers of ``bench.service.loadgen``
that decode and time every comment) connect **last**: each worker writes a tick frame to its
viewers in the order they joined, so a probe is among the last viewers its worker reaches and the
figures are times to the last viewer. Comments are posted through the real service path: signed-in
viewers (not moderators) whose posts pass limits, the rules stage and the log, round-robin.

Measured, from /proc and the workers' /metrics:
- memory per connection: the workers' RSS and the kernel's slab (both ends of each loopback
  connection: a deployment's viewers are remote, so the server's share is about half) after
  connecting, minus before;
- CPU per accepted connection (the workers' CPU while the viewers connect and join);
- at each rate: p50/p99/max publish -> probe, share delivered, and the workers' CPU per delivered
  comment (deliveries counted by the edges: every viewer of the stream gets each comment);
- a reconnect storm: every worker SIGKILLed at once; the parent starts them again and every viewer
  reconnects and joins; time until all are connected and joined again, and a comment afterwards
  reaches every probe.

Budgets the benchmark lifts, because its load is unlike real viewers': joins per source address
(600/min; here 15 000 viewers share an address) and the per-viewer comment rate (10/min; 20
posters make 200 comments/s). Both are ``--set`` arguments on the command the JSON records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from bench.fanout import latency, procstat
from bench.fanout.processes import LoadWorker
from bench.service.harness import CpuMeter, Edge, new_secret, spawn_worker
from bench.service.latency import split
from tests.contract.redis_service import port_is_free

STREAM = "live-1"
SINKS_PER_PROCESS = 15_000
PROBES_PER_PROCESS = 2_000
LIFTED_LIMITS = ("chat.limits.joins_per_minute_per_user=0", "chat.limits.comments_per_minute_viewer=0")


@dataclass(frozen=True, slots=True)
class ScalePlan:
    workers: int = 7
    viewers: int = 100_000
    probes: int = 140
    # One poster: the probes check that comments arrive in the order they were posted, which two
    # posters on two workers do not promise.
    posters: int = 1
    rates: tuple[float, ...] = (2.0, 20.0, 200.0)
    warmup_s: float = 4.0
    seconds: float = 20.0
    drain_s: float = 3.0
    connect_concurrency: int = 64
    # Sinks read their sockets in bulk this often (the kernel holds the frames meanwhile).
    sink_read_interval_s: float = 0.5
    storm: bool = True
    edge_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.viewers / self.workers > 18_000:
            raise ValueError("at most ~18 000 connections per worker (open-file limit 20 000)")


class WorkersEdge(Edge):
    """`livechat serve --workers N`; worker i's /metrics on ``admin + i``."""

    def __init__(self, data_dir: Path, secret: str, workers: int, extra: list[str]) -> None:
        self.workers = workers
        self.admin = _free_block(workers)
        super().__init__(
            "workers", data_dir, secret, ["--workers", str(workers), "--admin-port", str(self.admin), *extra]
        )

    def worker_metrics(self) -> list[dict[str, float]]:
        out = []
        for i in range(self.workers):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin + i}/metrics", timeout=10) as r:
                body = r.read().decode()
            samples: dict[str, float] = {}
            for line in body.splitlines():
                if line and not line.startswith("#"):
                    sample, _, value = line.rpartition(" ")
                    name = sample.split("{", 1)[0]
                    samples[name] = samples.get(name, 0.0) + float(value)
            out.append(samples)
        return out

    def total(self, name: str) -> float:
        return sum(m.get(name, 0.0) for m in self.worker_metrics())

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.pid), "-f", "livechat.server.workers"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return sorted(int(p) for p in out.split())

    def redis_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid), "redis-server"], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    async def all_ready(self, timeout_s: float = 60.0) -> float:
        """Wait until every worker answers /metrics; seconds waited."""
        started = time.monotonic()
        while True:
            try:
                if len(self.worker_pids()) == self.workers:
                    await asyncio.to_thread(self.worker_metrics)
                    return time.monotonic() - started
            except OSError:
                pass
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"workers not ready within {timeout_s} s")
            await asyncio.sleep(0.1)


def _free_block(n: int) -> int:
    """The first port of ``n`` consecutive free ports in 18200-18399 (not the services' 184xx)."""
    for base in range(18200, 18400 - n, n):
        if all(port_is_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no block of free admin ports in 18200-18399")


#: Why the edges closed connections (summed over workers since their start).
CLOSE_COUNTERS = (
    "livechat_slow_consumer_closes_total",
    "livechat_idle_closes_total",
    "livechat_slow_consumer_skipped_ticks_total",
    "livechat_connections_rejected_total",
)


def _closes(edge: WorkersEdge) -> dict[str, float]:
    metrics = edge.worker_metrics()
    return {name: sum(m.get(name, 0.0) for m in metrics) for name in CLOSE_COUNTERS}


def rss(pids: list[int]) -> int:
    return sum(procstat.rss_bytes(p) for p in pids)


def cpu(pids: list[int]) -> float:
    return sum(procstat.cpu_seconds(p) for p in pids)


async def run_scale(plan: ScalePlan, work_dir: Path) -> dict[str, Any]:
    secret = new_secret()
    edge = WorkersEdge(
        work_dir / "edge",
        secret,
        plan.workers,
        [arg for s in LIFTED_LIMITS for arg in ("--set", s)] + list(plan.edge_args),
    )
    log = open(work_dir / "loadgen.log", "ab")  # closed below
    sinks: list[LoadWorker] = []
    procs: list[LoadWorker] = []
    result: dict[str, Any] = {"plan": asdict(plan), "server_command": edge.command}
    try:
        await edge.start()
        await edge.all_ready()
        workers = edge.worker_pids()
        idle = {"rss": rss(workers), "slab": procstat.kernel_slab_bytes()}

        # Viewers: sinks first, probes last (so they are the last each worker writes to).
        sink_counts = split(plan.viewers - plan.probes, SINKS_PER_PROCESS)
        cpu_before, wall_before = cpu(workers), time.monotonic()
        sink_replies = []
        for i, count in enumerate(sink_counts):
            w = await spawn_worker(
                f"sinks-{i}", "sinks", log, "--read-interval", str(plan.sink_read_interval_s)
            )
            sinks.append(w)
            procs.append(w)
            # One process at a time: its 64 handshakes in flight are what a 2-core machine shared
            # with the server can finish inside the edge's handshake timeout.
            sink_replies.append(await _connect_sinks(w, edge.port, count, f"127.0.51.{i + 1}", plan))
        probes = []
        for i, count in enumerate(split(plan.probes, PROBES_PER_PROCESS)):
            w = await spawn_worker(f"probes-{i}", "viewers", log)
            procs.append(w)
            probes.append(w)
            reply = await _connect_probes(w, edge.url, count, f"127.0.52.{i + 1}")
            if reply["failed"]:
                raise RuntimeError(f"probes failed to connect: {reply}")
        connect_wall = time.monotonic() - wall_before
        connect_cpu = cpu(workers) - cpu_before
        failed = sum(r["failed"] for r in sink_replies)
        if failed:
            raise RuntimeError(f"{failed} sinks failed to connect: {[r['errors'] for r in sink_replies]}")
        result["connect_retried"] = sum(r["retried"] for r in sink_replies)
        await asyncio.sleep(3.0)  # joins finish, rooms settle
        joined = await asyncio.to_thread(edge.total, "livechat_connections")
        loaded = {"rss": rss(workers), "slab": procstat.kernel_slab_bytes()}
        result["connect"] = {
            "viewers": plan.viewers,
            "connections_on_workers": joined,
            "seconds": connect_wall,
            "worker_cpu_s": connect_cpu,
            "cpu_us_per_connection": connect_cpu / plan.viewers * 1e6,
            "per_worker": [m.get("livechat_connections", 0.0) for m in edge.worker_metrics()],
            "closes": await asyncio.to_thread(_closes, edge),
        }
        result["memory"] = {
            "idle_rss_mib": idle["rss"] / 2**20,
            "loaded_rss_mib": loaded["rss"] / 2**20,
            "rss_bytes_per_connection": (loaded["rss"] - idle["rss"]) / plan.viewers,
            "kernel_slab_bytes_per_connection_both_ends": (loaded["slab"] - idle["slab"]) / plan.viewers,
        }

        poster = await spawn_worker("posters", "posters", log)
        procs.append(poster)
        tokens = [edge.token(f"poster{i}", name=f"Poster {i}") for i in range(plan.posters)]
        reply = await poster.request(
            "connect",
            120,
            url=edge.url,
            streams=[STREAM],
            source_ip="127.0.53.1",
            concurrency=8,
            tokens=tokens,
        )
        if reply["failed"]:
            raise RuntimeError(f"posters failed to connect: {reply}")

        seq = 0
        steps = []
        for rate in plan.rates:
            step, seq = await _step(plan, edge, workers, poster, probes, sinks, rate, seq)
            steps.append(step)
        result["steps"] = steps
        if plan.storm:
            result["poster_errors"] = (await poster.request("status", 30))["errors"]
            result["storm"], seq = await _storm(plan, edge, probes, sinks, sink_counts, seq, log, procs)
        else:
            result["poster_errors"] = (await poster.request("status", 30))["errors"]
        return result
    finally:
        for w in procs:
            await w.stop(30)
        log.close()
        await edge.process.stop(60)


async def _step(
    plan: ScalePlan,
    edge: WorkersEdge,
    workers: list[int],
    poster: LoadWorker,
    probes: list[LoadWorker],
    sinks: list[LoadWorker],
    rate: float,
    seq: int,
) -> tuple[dict[str, Any], int]:
    warm = await poster.request(
        "schedule", plan.warmup_s + 60, rate=rate, seconds=plan.warmup_s, first_seq=seq
    )
    await asyncio.sleep(plan.drain_s)
    lo = warm["next_seq"]
    for w in probes:
        await w.request("summarize", 120, lo=0, hi=lo)  # forget the warm-up
    await poster.request("acks", 30)
    delivered_before = await asyncio.to_thread(edge.total, "livechat_deliveries_total")
    meter = CpuMeter({"workers": workers, "loadgen": [w.pid for w in [poster, *probes, *sinks]]})
    meter.start()
    sent = await poster.request("schedule", plan.seconds + 120, rate=rate, seconds=plan.seconds, first_seq=lo)
    await asyncio.sleep(plan.drain_s)  # the last comments reach everyone
    cores = meter.stop()
    delivered = await asyncio.to_thread(edge.total, "livechat_deliveries_total") - delivered_before
    hi = sent["next_seq"]
    parts = [await w.request("summarize", 300, lo=lo, hi=hi) for w in probes]
    histogram = latency.merge(p["histogram"] for p in parts)
    expected = (hi - lo) * plan.probes
    got = sum(p["delivered"] for p in parts)
    acks = await poster.request("acks", 30)
    ack_hist = latency.merge([acks["ack_histogram"]])
    sink_status = [await w.request("status", 60) for w in sinks]
    worker_cpu_s = cores["workers"] * cores["seconds"]
    step = {
        "rate": rate,
        "sent": hi - lo,
        "max_post_lag_ms": sent["max_lag_ms"],
        "probe_delivered_pct": 100.0 * got / expected if expected else None,
        "p50_ms": _ms(latency.percentile_us(histogram, 0.50)),
        "p99_ms": _ms(latency.percentile_us(histogram, 0.99)),
        "max_ms": max((p["max_us"] for p in parts), default=0.0) / 1000.0,
        "gaps": sum(p["gaps"] for p in parts),
        "edge_deliveries": delivered,
        "deliveries_expected": (hi - lo) * plan.viewers,
        "worker_cores": cores["workers"],
        "loadgen_cores": cores["loadgen"],
        "machine_cores": cores["machine"],
        "worker_cpu_us_per_delivery": worker_cpu_s / delivered * 1e6 if delivered else None,
        "ack_p50_ms": _ms(latency.percentile_us(ack_hist, 0.5)),
        "ack_p99_ms": _ms(latency.percentile_us(ack_hist, 0.99)),
        "sinks_open": sum(s["open"] for s in sink_status),
        "sink_disconnects": sum(s["disconnects"] for s in sink_status),
        "closes": await asyncio.to_thread(_closes, edge),
    }
    print(f"scale: rate {rate}/s: {step}", flush=True)
    return step, hi


async def _storm(
    plan: ScalePlan,
    edge: WorkersEdge,
    probes: list[LoadWorker],
    sinks: list[LoadWorker],
    sink_counts: list[int],
    seq: int,
    log: IO[bytes],
    extra: list[LoadWorker],
) -> tuple[dict[str, Any], int]:
    """Every worker SIGKILLed at once; every viewer reconnects and joins again."""
    old = edge.worker_pids()
    started = time.monotonic()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(1.0)
    while set(edge.worker_pids()) & set(old) or len(edge.worker_pids()) < plan.workers:
        await asyncio.sleep(0.1)
    await edge.all_ready()
    workers_back = time.monotonic() - started
    sink_open = await _settled_open(sinks)
    probe_open = await _settled_open(probes)
    lost = [(s, count - n) for s, count, n in zip(sinks, sink_counts, sink_open, strict=True)]
    probe_counts = split(plan.probes, PROBES_PER_PROCESS)
    probe_lost = [(p, count - n) for p, count, n in zip(probes, probe_counts, probe_open, strict=True)]
    workers = edge.worker_pids()
    cpu_before = cpu(workers)
    # Every sink process reconnects at once: the storm (each retries what the edge timed out).
    replies = list(
        await asyncio.gather(
            *(
                _connect_sinks(s, edge.port, n, f"127.0.51.{i + 1}", plan)
                for i, (s, n) in enumerate(lost)
                if n > 0
            )
        )
    )
    for i, (p, n) in enumerate(probe_lost):
        if n > 0:
            replies.append(await _connect_probes(p, edge.url, n, f"127.0.52.{i + 1}"))
    viewers_back = time.monotonic() - started
    reconnect_cpu = cpu(workers) - cpu_before
    await asyncio.sleep(2.0)
    connections = await asyncio.to_thread(edge.total, "livechat_connections")
    storm: dict[str, Any] = {
        "workers_killed": len(old),
        "workers_back_s": workers_back,
        "viewers_lost": sum(n for _, n in lost) + sum(n for _, n in probe_lost),
        "reconnected": sum(r["connected"] for r in replies),
        "reconnect_failed": sum(r["failed"] for r in replies),
        "reconnect_retried": sum(r.get("retried", 0) for r in replies),
        "all_back_s": viewers_back,
        "connections_after": connections,
        "worker_cpu_us_per_reconnect": reconnect_cpu / max(1, plan.viewers) * 1e6,
        "closes": await asyncio.to_thread(_closes, edge),
    }
    # The posters' connections died with the workers: a new poster process, then comments at
    # 2/s must reach every probe again.
    fresh = await spawn_worker("posters-after", "posters", log)
    extra.append(fresh)
    tokens = [edge.token(f"poster{i}", name=f"Poster {i}") for i in range(plan.posters)]
    reply = await fresh.request(
        "connect", 120, url=edge.url, streams=[STREAM], source_ip="127.0.53.2", concurrency=8, tokens=tokens
    )
    if reply["failed"]:
        raise RuntimeError(f"posters failed to reconnect: {reply}")
    check = dataclasses.replace(plan, seconds=5.0, warmup_s=1.0)
    after, seq = await _step(check, edge, workers, fresh, probes, sinks, 2.0, seq)
    storm["after"] = after
    print(f"scale: storm: {storm}", flush=True)
    return storm, seq


async def _connect_sinks(
    w: LoadWorker, port: int, count: int, source_ip: str, plan: ScalePlan
) -> dict[str, Any]:
    """Connect ``count`` sinks, retrying the ones refused (408: the machine was too busy to
    finish a handshake in time; 503: that worker is at its cap) as a client would, up to 10 rounds."""
    remaining, retried, connected = count, 0, 0
    started = time.monotonic()
    reply: dict[str, Any] = {"errors": {}}
    for attempt in range(10):
        reply = await w.request(
            "connect",
            900,
            host="127.0.0.1",
            port=port,
            stream=STREAM,
            count=remaining,
            source_ip=source_ip,
            concurrency=plan.connect_concurrency,
        )
        connected += reply["connected"]
        if attempt:
            retried += remaining
        remaining = reply["failed"]
        if not remaining:
            break
        await asyncio.sleep(0.5)
    return {
        "connected": connected,
        "failed": remaining,
        "retried": retried,
        "errors": reply["errors"],
        "seconds": time.monotonic() - started,
    }


async def _connect_probes(w: LoadWorker, url: str, count: int, source_ip: str) -> dict[str, Any]:
    """Connect ``count`` probes, retrying refusals (503: that worker is at its connection cap) as a
    client would, up to 10 rounds."""
    remaining, retried, connected = count, 0, 0
    reply: dict[str, Any] = {"errors": {}}
    for attempt in range(10):
        reply = await w.request(
            "connect", 300, url=url, streams=[STREAM], count=remaining, source_ip=source_ip, concurrency=16
        )
        connected += reply["connected"]
        if attempt:
            retried += remaining
        remaining = reply["failed"]
        if not remaining:
            break
        await asyncio.sleep(0.5)
    return {"connected": connected, "failed": remaining, "retried": retried, "errors": reply["errors"]}


async def _settled_open(group: list[LoadWorker]) -> list[int]:
    """Each process's open connections once it has noticed every closed one (a sink sees a
    close on its next bulk read): the same counts twice, 1 s apart."""
    last: list[int] | None = None
    while True:
        now = [(await w.request("status", 60))["open"] for w in group]
        if now == last:
            return now
        last = now
        await asyncio.sleep(1.0)


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0
