"""What a fault case did to users, from the ledgers of ``tests.faults.load`` and the log itself.

The truth is the stream's Kafka partition, read directly after the case (``read_log``): every
comment record in log order. Against it:

- ``lost``: acked comments that are not in the log (an ack must mean durable), or not in history
  once the persist worker has caught up (``history_missing``).
- ``log_duplicates``: one ``cmid`` stored under two ids (a retry that was not recognised).
- ``viewer_missing``: per viewer, acked comments of its stream it never saw by any way (live, in a
  rejoin's ``missed``, in the snapshot's recent window, or refetched from history after a
  ``gap: true``) — a silent gap.
- ``shown_twice``: a comment id delivered twice to one viewer as new (live, or in ``missed``);
  the snapshot's recent window and history pages are re-reads a client replaces, not repeats.
- ``out_of_order``: live deliveries on one connection (and each ``missed`` list) whose log
  positions do not increase.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from tests.faults.load import Poster, Viewer


async def read_log(servers: str, topic: str, partitions_n: int) -> dict[str, list[tuple[int, str]]]:
    """Every comment record of ``topic`` as ``stream -> [(id, text)]`` in log order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partitions_n)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        streams: dict[str, list[tuple[int, str]]] = {}
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp] - 1:
                        pending.discard(tp)
                    event = msgpack.unpackb(record.value, strict_map_key=False)
                    if isinstance(event, dict) and event.get("k") == "c":
                        streams.setdefault(record.key.decode(), []).append(
                            (int(event["id"]), str(event["x"]))
                        )
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return streams
    finally:
        await consumer.stop()


@dataclass
class ViewerResult:
    name: str
    missing: list[int]
    shown_twice: list[int]
    out_of_order: int
    gaps: int
    disconnects: int


@dataclass
class Verdict:
    acked: int
    lost: list[str]
    history_missing: list[str]
    log_duplicates: list[str]
    viewers: list[ViewerResult]
    errors: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0
    # The longest stretch with no ack to any poster, and the slowest single post (first send to ack).
    longest_ack_gap_s: float = 0.0
    slowest_post_s: float = 0.0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def viewers_with_gap(self) -> int:
        return sum(1 for v in self.viewers if v.missing)

    @property
    def shown_twice(self) -> int:
        return sum(len(v.shown_twice) for v in self.viewers)

    @property
    def out_of_order(self) -> int:
        return sum(v.out_of_order for v in self.viewers)

    def failures(self) -> list[str]:
        problems = []
        if self.lost:
            problems.append(f"{len(self.lost)} acked comments not in the log: {self.lost[:5]}")
        if self.history_missing:
            problems.append(
                f"{len(self.history_missing)} acked comments not in history: {self.history_missing[:5]}"
            )
        if self.log_duplicates:
            problems.append(f"{len(self.log_duplicates)} cmids stored twice: {self.log_duplicates[:5]}")
        for v in self.viewers:
            if v.missing:
                problems.append(f"viewer {v.name} never saw {len(v.missing)} acked comments: {v.missing[:5]}")
            if v.shown_twice:
                problems.append(
                    f"viewer {v.name} was shown {len(v.shown_twice)} comments twice: {v.shown_twice[:5]}"
                )
            if v.out_of_order:
                problems.append(f"viewer {v.name}: {v.out_of_order} deliveries out of log order")
        if self.acked == 0:
            problems.append("no comment was acked at all")
        return problems

    def row(self) -> dict[str, Any]:
        """One line of the results table."""
        return {
            "acked": self.acked,
            "lost": len(self.lost) + len(self.history_missing),
            "dups": self.shown_twice + len(self.log_duplicates),
            "gap_viewers": self.viewers_with_gap,
            "disorder": self.out_of_order,
            "client_errors": dict(self.errors),
            "abandoned": self.abandoned,
            "longest_ack_gap_s": round(self.longest_ack_gap_s, 2),
            "slowest_post_s": round(self.slowest_post_s, 2),
            "peak_rss_mb": self.peak_rss_mb,
            **self.notes,
        }


def _viewer_result(viewer: Viewer, log: list[tuple[int, str]], acked: set[int]) -> ViewerResult:
    position = {cid: i for i, (cid, _) in enumerate(log)}
    missing = sorted(acked - set(viewer.shown))
    twice = []
    for cid, seen in viewer.shown.items():
        if sum(1 for s in seen if s.how in ("live", "missed")) > 1:
            twice.append(cid)
    disorder = 0
    for ids in viewer.live:
        last = -1
        for cid in ids:
            pos = position.get(cid, -1)
            if pos < last:
                disorder += 1
            last = max(last, pos)
    return ViewerResult(viewer.name, missing, sorted(twice), disorder, viewer.gaps, viewer.disconnects)


def judge(
    posters: list[Poster],
    viewers: list[Viewer],
    log: dict[str, list[tuple[int, str]]],
    history: dict[str, set[int]],
) -> Verdict:
    acked_by_stream: dict[str, set[int]] = {}
    lost: list[str] = []
    history_missing: list[str] = []
    errors: Counter[str] = Counter()
    ack_times: list[float] = []
    slowest = 0.0
    for poster in posters:
        in_log = {text: cid for cid, text in log.get(poster.stream, [])}
        for ack in poster.acks:
            acked_by_stream.setdefault(poster.stream, set()).add(ack.id)
            ack_times.append(ack.at)
            slowest = max(slowest, ack.at - ack.sent)
            if in_log.get(ack.cmid) != ack.id:
                lost.append(f"{ack.cmid}={ack.id}")
            elif ack.id not in history.get(poster.stream, set()):
                history_missing.append(f"{ack.cmid}={ack.id}")
        errors.update({f"poster:{k}": n for k, n in poster.errors.items()})
    duplicates = []
    for records in log.values():
        texts = Counter(text for _, text in records)
        duplicates += [text for text, n in texts.items() if n > 1]
    results = []
    for viewer in viewers:
        results.append(
            _viewer_result(viewer, log.get(viewer.stream, []), acked_by_stream.get(viewer.stream, set()))
        )
        errors.update({f"viewer:{k}": n for k, n in viewer.errors.items()})
    ack_times.sort()
    gaps = [b - a for a, b in itertools.pairwise(ack_times)]
    return Verdict(
        acked=sum(len(p.acks) for p in posters),
        lost=lost,
        history_missing=history_missing,
        log_duplicates=duplicates,
        viewers=results,
        errors=errors,
        abandoned=sum(len(p.abandoned) for p in posters),
        longest_ack_gap_s=max(gaps, default=0.0),
        slowest_post_s=slowest,
    )
