"""Benchmark (a): comments per second one `livechat serve` accepts end to end, embedded mode.

One edge (SQLite log and history, in-process broker). Poster processes hold signed-in viewer
connections that each keep ``window`` posts in flight (the next post leaves as an ack returns);
every post goes through the whole pipeline: decode and validate, idempotency (a unique cmid each),
bans and room modes, the per-user rate bucket (set to unlimited with ``--set``, so the limit does
not cap the run, but the bucket is still consulted), the per-stream admission cap, the block-list
rules, the comment log and history write (one SQLite transaction per batch), the ack, and the
broadcast into the stream's tick (sampled by tier at these rates, as in production). Two anonymous
viewers per stream count what the broadcast delivered.

Measured over ``seconds`` after ``warmup``: acks/s, server CPU (utime+stime of every thread, from
/proc) per accepted comment, load-generator CPU, everything else on the machine.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fanout import latency
from bench.fanout.processes import LoadWorker
from bench.service.harness import CpuMeter, Edge, ThreadMeter, new_secret, spawn_worker

BLOCK_LIST = '["badword", "spamlink", "scamcoin", "hatefulterm"]'


@dataclass(frozen=True, slots=True)
class ThroughputPlan:
    poster_procs: int = 2
    conns_per_proc: int = 8
    window: int = 64
    streams: int = 1
    viewers_per_stream: int = 2
    warmup_s: float = 3.0
    seconds: float = 10.0
    # Extra `livechat serve` arguments (e.g. "--set", "chat.sampling.tiers=[]").
    edge_args: tuple[str, ...] = ()


def server_args() -> list[str]:
    return [
        "--set",
        "chat.limits.comments_per_minute_viewer=0",
        "--set",
        f"chat.moderation.blocked_terms={BLOCK_LIST}",
    ]


async def run_throughput(plan: ThroughputPlan, work_dir: Path) -> dict[str, Any]:
    edge = Edge("throughput-edge", work_dir / "edge", new_secret(), [*server_args(), *plan.edge_args])
    await edge.start()
    log = open(work_dir / "loadgen.log", "ab")
    workers: list[LoadWorker] = []
    try:
        streams = [f"bench-{i}" for i in range(plan.streams)]
        viewers = await spawn_worker("viewers", "viewers", log)
        workers.append(viewers)
        connected = await viewers.request(
            "connect",
            120,
            url=edge.url,
            streams=streams,
            source_ip="127.0.0.1",
            concurrency=16,
            count=plan.viewers_per_stream * plan.streams,
        )
        if connected["failed"]:
            raise RuntimeError(f"viewers failed to connect: {connected}")
        posters = []
        for p in range(plan.poster_procs):
            worker = await spawn_worker(f"posters-{p}", "posters", log)
            workers.append(worker)
            posters.append(worker)
            tokens = [edge.token(f"poster-{p}-{c}") for c in range(plan.conns_per_proc)]
            connected = await worker.request(
                "connect",
                120,
                url=edge.url,
                streams=streams,
                source_ip="127.0.0.1",
                concurrency=16,
                tokens=tokens,
            )
            if connected["failed"]:
                raise RuntimeError(f"posters failed to connect: {connected}")

        meter = CpuMeter(
            {"server": [edge.pid], "posters": [w.pid for w in posters], "viewers": [viewers.pid]}
        )
        for worker in posters:
            await worker.request("flood_start", 30, window=plan.window)
        await asyncio.sleep(plan.warmup_s)
        for worker in posters:
            await worker.request("acks", 30)  # drop warm-up ack latencies
        before = [await w.request("status", 30) for w in posters]
        seen_before = (await viewers.request("status", 30))["comment_events"]
        threads = ThreadMeter({"server": edge.pid})
        threads.start()
        meter.start()
        await asyncio.sleep(plan.seconds)
        cores = meter.stop()
        thread_cores = threads.stop()["server"]
        after = [await w.request("status", 30) for w in posters]
        seen_after = (await viewers.request("status", 30))["comment_events"]
        ack_parts = [await w.request("acks", 30) for w in posters]
        final = [await w.request("flood_stop", 60) for w in posters]
        edge.process.check_alive()

        acks = sum(a["acks"] - b["acks"] for a, b in zip(after, before, strict=True))
        window_s = sum((a["t_ns"] - b["t_ns"]) / 1e9 for a, b in zip(after, before, strict=True)) / len(after)
        histogram = latency.merge(part["ack_histogram"] for part in ack_parts)
        errors: dict[str, int] = {}
        for status in final:
            for code, n in status["errors"].items():
                errors[code] = errors.get(code, 0) + n
        rate = acks / window_s
        return {
            "plan": asdict(plan),
            "server_command": edge.command,
            "accepted": acks,
            "seconds": window_s,
            "accepted_per_s": rate,
            "server_cores": cores["server"],
            "server_thread_cores": thread_cores,
            "server_us_per_comment": cores["server"] * cores["seconds"] / acks * 1e6 if acks else None,
            "poster_cores": cores["posters"],
            "viewer_cores": cores["viewers"],
            "other_cores": cores["other"],
            "machine_cores": cores["machine"],
            "ack_p50_ms": _ms(latency.percentile_us(histogram, 0.50)),
            "ack_p99_ms": _ms(latency.percentile_us(histogram, 0.99)),
            "viewer_comment_events_per_s": (seen_after - seen_before) / cores["seconds"],
            "viewers": plan.viewers_per_stream * plan.streams,
            "errors": errors,
            "disconnects": sum(s["disconnects"] for s in final),
            "sent_total": sum(s["sent"] for s in final),
            "acked_total": sum(s["acks"] for s in final),
        }
    finally:
        for worker in workers:
            await worker.stop()
        log.close()
        await edge.process.stop(30)


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0
