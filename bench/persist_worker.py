"""Persist-worker throughput: how fast ``livechat worker persist`` drains a backlog of the Kafka log
into history (SQLite, Cassandra), and its CPU per record.

    python -m bench.persist_worker                                   # 100 000 records, both stores
    python -m bench.persist_worker --records 200000 --streams 500 --stores cassandra --out /tmp/p.json

Per store: a fresh topic (``--partitions``) is filled with ``--records`` log records (comments of
~``--text`` characters from 1 000 users over ``--streams`` streams, one delete every
``--delete-every`` records), then the worker's own code (``run_persist``: the consumer group, the
batch plan, the store writes, the watermarks, the commits) runs in this process until it has
handled every record. Reported:

- ``records_per_s``: records handled / seconds from the first batch to the last (group join
  excluded: ``startup_s``);
- ``cpu_us_per_record``: CPU time of this process (every thread: aiokafka, SQLite's worker,
  cassandra-driver's I/O) over the same span, per record; Cassandra's own CPU is not in it;
- ``plan_us_per_record``: the worker's per-record work alone (decode + plan), without I/O.

The watermark of every stream is checked against the log afterwards. Cassandra runs on the shared
server in keyspace ``lc_bench_persist`` (created if missing; streams unique per run); SQLite on a
file in a temporary folder. Prints one JSON object (also to ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import uvloop
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from livechat.backends import open_history
from livechat.backends.kafka_log import KafkaCommentLog
from livechat.ids import CommentIdGenerator
from livechat.ports.comment_log import LogEntry
from livechat.protocol.encode import encode_comment, encode_delete
from livechat.workers.metrics import WorkerMetrics
from livechat.workers.persist import plan_records, run_persist

DEFAULT_KAFKA = "127.0.0.1:19092"
DEFAULT_CASSANDRA = "cassandra://127.0.0.1:19042"
APPEND_CHUNK = 5000


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_events(records: int, streams: list[str], text: int, delete_every: int) -> list[LogEntry]:
    ids = CommentIdGenerator(node=9)
    now_ms = int(time.time() * 1000)
    body = ("lorem ipsum dolor sit amet " * (text // 27 + 1))[:text]
    events: list[LogEntry] = []
    last: dict[str, int] = {}
    for i in range(records):
        stream = streams[i % len(streams)]
        if delete_every and i % delete_every == delete_every - 1 and stream in last:
            events.append(LogEntry(stream, encode_delete(last[stream])))
            continue
        cid = ids.next_id()
        last[stream] = cid
        user = f"user{i % 1000}"
        events.append(LogEntry(stream, encode_comment(cid, user, user, body, now_ms, None, [], None)))
    return events


async def fill(log_url: str, events: list[LogEntry]) -> dict[str, int]:
    """Append the events; the last offset of each stream."""
    log = await KafkaCommentLog.open(log_url)
    last: dict[str, int] = {}
    try:
        for start in range(0, len(events), APPEND_CHUNK):
            chunk = events[start : start + APPEND_CHUNK]
            for entry, result in zip(chunk, await log.append_many(chunk), strict=True):
                last[entry.stream] = result.offset
    finally:
        await log.aclose()
    return last


@dataclass(frozen=True, slots=True)
class _Record:
    key: bytes
    offset: int
    value: bytes


def plan_cost_us(events: list[LogEntry], rounds: int = 3) -> float:
    records = [_Record(e.stream.encode(), i, e.payload) for i, e in enumerate(events)]
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for start in range(0, len(records), APPEND_CHUNK):
            plan_records(records[start : start + APPEND_CHUNK])
        best = min(best, time.perf_counter() - started)
    return best / len(records) * 1e6


async def drain(log_url: str, history_url: str, records: int, last: dict[str, int]) -> dict[str, Any]:
    history = await open_history(history_url)
    stop = asyncio.Event()
    metrics = WorkerMetrics("persist")
    started, cpu_started = time.monotonic(), cpu_s()
    task = asyncio.get_running_loop().create_task(
        run_persist(
            log_url,
            history,
            stop,
            group=f"bench-{uuid.uuid4().hex[:8]}",
            retention_s=86400.0,
            metrics=metrics,
        )
    )
    try:
        while metrics.records == 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        first, cpu_first = time.monotonic(), cpu_s()
        first_records = metrics.records
        while metrics.records < records:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        end, cpu_end = time.monotonic(), cpu_s()
        stop.set()
        await task
        marks = {s: await history.watermark(s) for s in last}
        assert marks == last, "a watermark differs from the log"
    finally:
        stop.set()
        await history.aclose()
    span = end - first
    handled = records - first_records  # the first batch ended before the clock started
    return {
        "records": records,
        "startup_s": round(first - started, 3),
        "drain_s": round(span, 3),
        "records_per_s": round(handled / span),
        "cpu_us_per_record": round((cpu_end - cpu_first) / handled * 1e6, 2),
        "cpu_total_s": round(cpu_end - cpu_started, 2),
        "batches": metrics.events,
    }


async def delete_topic(servers: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    streams = [f"bench-{tag}-{i}" for i in range(args.streams)]
    events = make_events(args.records, streams, args.text, args.delete_every)
    result: dict[str, Any] = {
        "bench": "persist_worker",
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "params": {
            k: getattr(args, k)
            for k in ("records", "streams", "partitions", "text", "delete_every", "stores")
        },
        "payload_bytes": sum(len(e.payload) for e in events) // len(events),
        "plan_us_per_record": round(plan_cost_us(events), 3),
        "stores": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite://{tmp}/history.db", "cassandra": f"{args.cassandra}/lc_bench_persist"}
        for store in args.stores.split(","):
            topic = f"bench-persist-{tag}-{store}"
            log_url = f"kafka://{args.kafka}/{topic}?partitions={args.partitions}"
            try:
                last = await fill(log_url, events)
                result["stores"][store] = await drain(log_url, urls[store], len(events), last)
            finally:
                await delete_topic(args.kafka, topic)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kafka", default=DEFAULT_KAFKA, help="host:port of a broker")
    parser.add_argument("--cassandra", default=DEFAULT_CASSANDRA, help="cassandra://host:port (no keyspace)")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--text", type=int, default=80, help="characters per comment")
    parser.add_argument("--delete-every", type=int, default=100, help="one delete per N records (0: none)")
    parser.add_argument("--stores", default="sqlite,cassandra", help="comma-separated: sqlite, cassandra")
    parser.add_argument("--out")
    args = parser.parse_args()
    result = uvloop.run(main_async(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
