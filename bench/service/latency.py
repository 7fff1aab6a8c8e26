"""Benchmark (b): publish -> delivery latency across two edges on Redis.

Edges A and B are `livechat serve` processes sharing one Redis (broker and registry), each with
its own data dir and comment-id node. Viewers are anonymous connections that join one stream, most
on B, some on A; no server holds more than 15 000. One poster connection on A (the stream's
broadcaster, so no rate limit applies) posts at a fixed rate; each comment's text carries its
sequence number and the poster's CLOCK_MONOTONIC send time, and a viewer's latency for it is its
receive time (same clock, same machine) minus that.

Two kinds of viewer share each edge: *probes* (picows clients on uvloop, ``bench.service.loadgen``)
decode every tick frame, time every comment and check that every comment arrives once and in order
(a miss, repeat or reordering is a gap); *sinks* (``bench.service.sinks``) read their sockets in
bulk without parsing. The server writes the same frames to both; sinks exist because parsing
300 000 frames/s in Python would take about a core of the machine's two and the latency measured
would be mostly the load generator's own queueing. ``probe_share`` = 1.0 makes every viewer a probe.

CPU of both edges, Redis and the load generators is measured from /proc over the measured window,
and the machine's total busy time with it (the two cores are shared by everything).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fanout import latency
from bench.fanout.processes import LoadWorker
from bench.service.harness import CpuMeter, Edge, Redis, ThreadMeter, new_secret, spawn_worker

STREAM = "live-1"
# Probes per load-generator process; sinks per process (each well under the 20 000 open-file limit).
PROBES_PER_WORKER = 3_750
SINKS_PER_WORKER = 15_000


@dataclass(frozen=True, slots=True)
class LatencyPlan:
    viewers_b: int = 12_000
    viewers_a: int = 3_000
    rate: float = 20.0
    warmup_s: float = 5.0
    seconds: float = 30.0
    drain_s: float = 3.0
    connect_concurrency: int = 64
    # Share of each edge's viewers that decode and time every frame (the rest are sinks).
    probe_share: float = 0.05
    # Extra `livechat serve` arguments for both edges (e.g. "--set", "edge.tick_max_ms=50").
    edge_args: tuple[str, ...] = ()

    def probes(self, viewers: int) -> int:
        """How many of an edge's ``viewers`` are probes (at least one when there are viewers)."""
        return min(viewers, max(1, round(viewers * self.probe_share))) if viewers else 0

    def __post_init__(self) -> None:
        if max(self.viewers_a, self.viewers_b) > 15_000:
            raise ValueError("at most 15 000 connections per server process")


def split(total: int, per: int) -> list[int]:
    if total <= 0:
        return []
    parts = max(1, -(-total // per))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_latency(plan: LatencyPlan, work_dir: Path) -> dict[str, Any]:
    redis = Redis(work_dir / "redis")
    redis.start()
    secret = new_secret()
    edges = {
        name: Edge(
            f"edge-{name}",
            work_dir / f"edge-{name}",
            secret,
            [
                "--broker",
                redis.url,
                "--registry",
                redis.url,
                "--edge-id",
                name,
                "--set",
                f"chat.node_id={node}",
                *plan.edge_args,
            ],
        )
        for name, node in (("a", 1), ("b", 2))
    }
    log = open(work_dir / "loadgen.log", "ab")  # closed below
    workers: list[LoadWorker] = []
    viewer_workers: dict[str, list[LoadWorker]] = {"a": [], "b": []}
    sink_workers: list[LoadWorker] = []
    try:
        for edge in edges.values():
            await edge.start()
        connect: dict[str, Any] = {}
        probes = {"b": plan.probes(plan.viewers_b), "a": plan.probes(plan.viewers_a)}
        index = 0
        for name, total in (("b", plan.viewers_b), ("a", plan.viewers_a)):
            edge = edges[name]
            for role, count in [("viewers", n) for n in split(probes[name], PROBES_PER_WORKER)] + [
                ("sinks", n) for n in split(total - probes[name], SINKS_PER_WORKER)
            ]:
                if count == 0:
                    continue
                worker = await spawn_worker(f"{role}-{name}{index}", role, log)
                workers.append(worker)
                source_ip = f"127.0.31.{index + 1}"
                if role == "viewers":
                    viewer_workers[name].append(worker)
                    args: dict[str, Any] = {"url": edge.url, "streams": [STREAM], "count": count}
                else:
                    sink_workers.append(worker)
                    args = {"host": "127.0.0.1", "port": edge.port, "stream": STREAM, "count": count}
                reply = await worker.request(
                    "connect", 300, source_ip=source_ip, concurrency=plan.connect_concurrency, **args
                )
                connect[worker.name] = reply
                if reply["failed"]:
                    raise RuntimeError(f"{worker.name} failed to connect: {reply}")
                index += 1
        poster = await spawn_worker("poster", "posters", log)
        workers.append(poster)
        token = edges["a"].token("host", streams={STREAM: "broadcaster"})
        reply = await poster.request(
            "connect",
            60,
            url=edges["a"].url,
            streams=[STREAM],
            source_ip="127.0.31.100",
            concurrency=1,
            tokens=[token],
        )
        if reply["failed"]:
            raise RuntimeError(f"poster failed to connect: {reply}")

        warm = await poster.request(
            "schedule", plan.warmup_s + 30, rate=plan.rate, seconds=plan.warmup_s, first_seq=0
        )
        await asyncio.sleep(plan.drain_s)
        for group in viewer_workers.values():
            for worker in group:
                await worker.request("summarize", 60, lo=0, hi=warm["next_seq"])  # forget warm-up
        sinks_before = [await w.request("status", 60) for w in sink_workers]
        await poster.request("acks", 30)
        meter = CpuMeter(
            {
                "edge_a": [edges["a"].pid],
                "edge_b": [edges["b"].pid],
                "redis": [redis.pid],
                "loadgen": [w.pid for w in workers],
            }
        )
        counters_before = {name: await asyncio.to_thread(edge.metrics) for name, edge in edges.items()}
        threads = ThreadMeter({"edge_a": edges["a"].pid, "edge_b": edges["b"].pid})
        threads.start()
        meter.start()
        lo = warm["next_seq"]
        sent = await poster.request(
            "schedule", plan.seconds + 60, rate=plan.rate, seconds=plan.seconds, first_seq=lo
        )
        cores = meter.stop()
        thread_cores = threads.stop()
        counters_after = {name: await asyncio.to_thread(edge.metrics) for name, edge in edges.items()}
        frames = {
            name: {
                key: (
                    counters_after[name].get(f"livechat_{key}", 0.0)
                    - counters_before[name].get(f"livechat_{key}", 0.0)
                )
                / cores["seconds"]
                for key in ("frames_out_total", "deliveries_total", "ticks_total", "io_busy_seconds_total")
            }
            for name in edges
        }
        await asyncio.sleep(plan.drain_s)
        hi = sent["next_seq"]
        per_edge: dict[str, dict[str, Any]] = {}
        all_parts = []
        for name, group in viewer_workers.items():
            parts = [await w.request("summarize", 120, lo=lo, hi=hi) for w in group]
            all_parts += parts
            per_edge[name] = _summary(parts, (hi - lo) * probes[name])
        sinks_after = [await w.request("status", 60) for w in sink_workers]
        acks = await poster.request("acks", 30)
        statuses = [await w.request("status", 30) for w in workers]
        per_process = meter.per_process()
        for edge in edges.values():
            edge.process.check_alive()
        ack_hist = latency.merge([acks["ack_histogram"]])
        return {
            "plan": asdict(plan),
            "server_commands": {name: edge.command for name, edge in edges.items()},
            "redis": redis.url,
            "connect": connect,
            "sent": sent,
            "probes": probes,
            "all": _summary(all_parts, (hi - lo) * (probes["a"] + probes["b"])),
            "sinks": {
                "viewers": sum(s["open"] for s in sinks_after),
                "bytes_per_s": sum(
                    a["bytes_read"] - b["bytes_read"] for a, b in zip(sinks_after, sinks_before, strict=True)
                )
                / cores["seconds"],
                "disconnects": sum(s["disconnects"] for s in sinks_after),
            },
            "loadgen_max_process_cores": max(
                (v for k, v in per_process.items() if k.startswith("loadgen")), default=0.0
            ),
            "edge_a_viewers": per_edge["a"],
            "edge_b_viewers": per_edge["b"],
            "ack_p50_ms": _ms(latency.percentile_us(ack_hist, 0.5)),
            "ack_p99_ms": _ms(latency.percentile_us(ack_hist, 0.99)),
            "cores": cores,
            "thread_cores": thread_cores,
            # Per second, per edge: frames written (one per connection per tick), events delivered.
            "edge_rates": frames,
            # Every viewer of B, probe or sink, gets every comment (the probes show it is all).
            "us_per_delivery_b": cores["edge_b"]
            * cores["seconds"]
            / max((hi - lo) * plan.viewers_b, 1)
            * 1e6,
            "disconnects": sum(s["disconnects"] for s in statuses if "gaps" in s),
            "close_codes": [s["close_codes"] for s in statuses if s.get("close_codes")],
            "poster_errors": (await poster.request("status", 30))["errors"],
        }
    finally:
        for worker in workers:
            await worker.stop(30)
        log.close()
        for edge in edges.values():
            await edge.process.stop(30)
        redis.stop()


def _summary(parts: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    histogram = latency.merge(p["histogram"] for p in parts)
    delivered = sum(p["delivered"] for p in parts)
    return {
        "delivered": delivered,
        "expected": expected,
        "delivered_pct": 100.0 * delivered / expected if expected else None,
        "p50_ms": _ms(latency.percentile_us(histogram, 0.50)),
        "p99_ms": _ms(latency.percentile_us(histogram, 0.99)),
        "max_ms": max((p["max_us"] for p in parts), default=0.0) / 1000.0,
        "gaps": sum(p["gaps"] for p in parts),
        "malformed": sum(p["malformed"] for p in parts),
    }


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0
