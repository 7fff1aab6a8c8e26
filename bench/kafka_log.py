"""Comment log throughput and follower latency: Kafka (shared broker, acks=all) against SQLite (embedded).

    python -m bench.kafka_log                                  # defaults below, Kafka + SQLite baseline
    python -m bench.kafka_log --comments 200000 --batch 256 --inflight 1 --out /tmp/log.json
    python -m bench.kafka_log --dedupe none --skip-sqlite      # Kafka without the Redis dedupe index

Throughput: ``--comments`` records of ``--payload`` bytes over ``--streams`` streams, each with a
client_msg_id (so the dedupe window is on the path), appended through ``append_many`` in batches of
``--batch`` with ``--inflight`` calls waiting at once: the edge's group commit keeps one batch in
flight and takes everything that queued meanwhile, so ``--inflight 1`` with a batch the size of one
round trip's arrivals is the edge's shape. Reports records/s and the CPU seconds of this Python
process per record (user + system, from getrusage: the producer, the dedupe index client and the
event loop).

Latency: a follower (same process, as on an edge) follows every stream while records (with
client_msg_ids) are appended at ``--rate`` records/s in batches every ``--tick-ms``; per
record, the time from the append_many call to the follower's handler (the author's ack wait
is inside it). p50/p99/max over ``--latency-s`` seconds.

Kafka runs on a topic of its own (``bench-<uuid>``, ``--partitions``), deleted at the end; the
dedupe index on the shared Redis (``--dedupe``). Prints one JSON object (also to ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import uvloop
from livechat.backends import open_comment_log, open_log_follower
from livechat.ports import CommentLog, LogEntry, LogRecord

DEFAULT_KAFKA = "127.0.0.1:19092"
DEFAULT_REDIS = "redis://127.0.0.1:19600"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def entries(count: int, streams: int, payload: int, tag: str) -> list[LogEntry]:
    body = os.urandom(payload)
    return [
        LogEntry(f"stream-{random.randrange(streams)}", body, f"{tag}-{i}", "bench-edge")
        for i in range(count)
    ]


async def throughput(log: CommentLog, args: argparse.Namespace) -> dict[str, Any]:
    todo = entries(args.comments, args.streams, args.payload, uuid.uuid4().hex[:8])
    batches = [todo[i : i + args.batch] for i in range(0, len(todo), args.batch)]
    warm = batches[: max(1, len(batches) // 20)]
    for batch in warm:  # connections, metadata, first batches
        await log.append_many(batch)
    measured = batches[len(warm) :]
    count = sum(len(b) for b in measured)
    queue = list(reversed(measured))
    latencies: list[float] = []

    async def writer() -> None:
        while queue:
            batch = queue.pop()
            start = time.perf_counter()
            results = await log.append_many(batch)
            latencies.append(time.perf_counter() - start)
            assert not any(r.duplicate for r in results)

    cpu0, t0 = cpu_s(), time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(args.inflight)))
    wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    latencies.sort()
    return {
        "records": count,
        "records_per_s": round(count / wall),
        "cpu_us_per_record": round(cpu / count * 1e6, 2),
        "cpu_share_of_one_core": round(cpu / wall, 2),
        "append_many_p50_ms": round(percentile(latencies, 0.5) * 1e3, 2),
        "append_many_p99_ms": round(percentile(latencies, 0.99) * 1e3, 2),
    }


async def latency(log: CommentLog, url: str, args: argparse.Namespace) -> dict[str, Any]:
    follower = await open_log_follower(url)
    sent_at: dict[bytes, float] = {}
    samples: list[float] = []

    def handler(records: Sequence[LogRecord]) -> None:
        now = time.perf_counter()
        for record in records:
            start = sent_at.pop(record.payload, None)
            if start is not None:
                samples.append(now - start)

    follower.set_handler(handler)
    streams = [f"lat-{i}" for i in range(args.streams)]
    for stream in streams:
        await follower.follow(stream, await log.end_offset(stream))
    per_tick = max(1, round(args.rate * args.tick_ms / 1000))
    run = uuid.uuid4().hex[:8]
    pending: set[asyncio.Future[Any]] = set()
    sequence = 0
    cpu0, t0 = cpu_s(), time.perf_counter()
    next_tick = t0
    while time.perf_counter() - t0 < args.latency_s:
        batch = []
        now = time.perf_counter()
        for _ in range(per_tick):
            payload = sequence.to_bytes(8, "big") + bytes(args.payload - 8)
            sequence += 1
            sent_at[payload] = now
            batch.append(LogEntry(random.choice(streams), payload, f"{run}-{sequence}", "bench-edge"))
        task = asyncio.ensure_future(log.append_many(batch))
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_tick += args.tick_ms / 1000
        await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
    await asyncio.gather(*pending)
    deadline = time.perf_counter() + 10
    while sent_at and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    stats = follower.stats()
    await follower.aclose()
    samples.sort()
    return {
        "offered_per_s": args.rate,
        "delivered": len(samples),
        "missing": len(sent_at),
        "p50_ms": round(percentile(samples, 0.5) * 1e3, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1e3, 2),
        "max_ms": round(samples[-1] * 1e3, 2),
        "cpu_share_of_one_core": round(cpu / wall, 2),
        "follower": {"delivered": stats.delivered, "retries": stats.retries, "behind": stats.behind},
    }


async def run_backend(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    log = await open_comment_log(url)
    try:
        result: dict[str, Any] = {"url": url, "throughput": await throughput(log, args)}
        if not args.skip_latency:
            result["latency"] = await latency(log, url, args)
        return result
    finally:
        await log.aclose()


async def delete_topic(servers: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "command": "python -m bench.kafka_log " + " ".join(sys.argv[1:]),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            k: getattr(args, k)
            for k in ("comments", "batch", "inflight", "streams", "payload", "partitions", "rate", "tick_ms")
        },
    }
    topic = f"bench-{uuid.uuid4().hex[:12]}"
    url = f"kafka://{args.kafka}/{topic}?partitions={args.partitions}"
    if args.dedupe != "none":
        url += f"&dedupe={args.dedupe}&dedupe_prefix=bench-{topic}:"
    try:
        report["kafka"] = await run_backend("kafka", url, args)
    finally:
        await delete_topic(args.kafka, topic)
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            report["sqlite"] = await run_backend("sqlite", f"sqlite://{folder}/log.db", args)
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kafka", default=DEFAULT_KAFKA, help="broker host:port")
    parser.add_argument("--dedupe", default=DEFAULT_REDIS, help="redis:// or redis+cluster:// URL, or none")
    parser.add_argument("--comments", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--inflight", type=int, default=1)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--payload", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--rate", type=int, default=5000, help="records/s offered in the latency phase")
    parser.add_argument("--tick-ms", type=float, default=5.0)
    parser.add_argument("--latency-s", type=float, default=10.0)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    result = uvloop.run(main(arguments))
    text = json.dumps(result, indent=2)
    print(text)
    if arguments.out:
        with open(arguments.out, "w") as out:
            out.write(text + "\n")
