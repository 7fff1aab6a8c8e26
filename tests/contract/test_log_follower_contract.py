"""LogFollower contract (livechat.ports.log_follower), run against every log backend.

Each test appends through ``CommentLog`` clients (often two, standing for two edges) and checks
what one follower hands its handler: per-stream order, every record once, nothing before the
position followed from, resumption, streams sharing a partition, latency, and (Kafka) a broker
outage through a Toxiproxy proxy with no gap after recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from livechat.backends import open_comment_log, open_log_follower
from livechat.ports import ClosedError, CommentLog, LogEntry, LogFollower, LogRecord

WAIT_S = 20.0


class Collected:
    """What a follower delivered, in delivery order."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []
        self.calls = 0
        self.arrived: dict[bytes, float] = {}

    def __call__(self, records: Sequence[LogRecord]) -> None:
        self.calls += 1
        now = time.perf_counter()
        for record in records:
            self.arrived[record.payload] = now
        self.records.extend(records)

    def of(self, stream: str) -> list[LogRecord]:
        return [r for r in self.records if r.stream == stream]

    def payloads(self, stream: str) -> list[bytes]:
        return [r.payload for r in self.of(stream)]

    async def wait(self, count: int, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"delivered {len(self.records)} of {count} records within {timeout} s")
            await asyncio.sleep(0.005)


@pytest.fixture
async def log(log_url: str) -> AsyncIterator[CommentLog]:
    opened = await open_comment_log(log_url)
    yield opened
    await opened.aclose()


@pytest.fixture
async def follower(log_url: str, log: CommentLog) -> AsyncIterator[tuple[LogFollower, Collected]]:
    opened = await open_log_follower(log_url)
    collected = Collected()
    opened.set_handler(collected)
    yield opened, collected
    await opened.aclose()


def same_partition_streams(log_url: str, count: int) -> list[str]:
    """``count`` stream ids that share one partition (Kafka); any ids elsewhere."""
    if not log_url.startswith("kafka://"):
        return [f"p{i}" for i in range(count)]
    from livechat.backends.kafka_connect import KafkaUrl, partition_of

    partitions = KafkaUrl.parse(log_url).partitions
    streams = [f"p{i}" for i in range(400) if partition_of(f"p{i}", partitions) == 0]
    assert len(streams) >= count
    return streams[:count]


async def test_records_come_in_stream_order_exactly_once_from_two_writers(
    log_url: str, log: CommentLog, follower: tuple[LogFollower, Collected]
) -> None:
    other = await open_comment_log(log_url)
    try:
        reader, got = follower
        streams = ["a", "b", "c"]
        for stream in streams:
            await reader.follow(stream, -1)
        sent: dict[str, list[tuple[int, bytes]]] = {s: [] for s in streams}
        appends = []
        for round_ in range(20):
            for writer, tag in ((log, "x"), (other, "y")):
                entries = [
                    LogEntry(streams[i % 3], f"{tag}{round_}-{i}".encode(), origin=tag) for i in range(15)
                ]
                appends.append((entries, writer.append_many(entries)))
        for entries, pending in appends:
            results = await pending
            for entry, result in zip(entries, results, strict=True):
                sent[entry.stream].append((result.offset, entry.payload))
        await got.wait(600)
        await asyncio.sleep(0.2)  # nothing more may come
        assert len(got.records) == 600
        for stream in streams:
            expected = [payload for _, payload in sorted(sent[stream])]
            assert got.payloads(stream) == expected
            offsets = [r.offset for r in got.of(stream)]
            assert offsets == sorted(set(offsets))
        assert {r.origin for r in got.records} == {"x", "y"}
        stats = reader.stats()
        assert (stats.streams, stats.delivered, stats.paused) == (3, 600, False)
    finally:
        await other.aclose()


async def test_follow_starts_after_the_given_offset(
    log: CommentLog, follower: tuple[LogFollower, Collected]
) -> None:
    reader, got = follower
    results = await log.append_many([LogEntry("s", str(i).encode()) for i in range(10)])
    await reader.follow("s", results[4].offset)
    await got.wait(5)
    await log.append("s", b"10")
    await got.wait(6)
    assert got.payloads("s") == [str(i).encode() for i in range(5, 11)]
    assert reader.position("s") == (await log.last_offset("s"))
    assert reader.position("never") is None


async def test_follow_from_end_offset_sees_only_later_records(
    log: CommentLog, follower: tuple[LogFollower, Collected]
) -> None:
    reader, got = follower
    await log.append_many([LogEntry("s", b"old") for _ in range(5)])
    await reader.follow("s", await log.end_offset("s"))
    await log.append("s", b"new")
    await got.wait(1)
    await asyncio.sleep(0.1)
    assert got.payloads("s") == [b"new"]


async def test_unfollow_stops_delivery_and_follow_resumes_without_gap_or_repeat(
    log: CommentLog, follower: tuple[LogFollower, Collected]
) -> None:
    reader, got = follower
    await reader.follow("s", -1)
    await log.append_many([LogEntry("s", f"a{i}".encode()) for i in range(10)])
    await got.wait(10)
    last = reader.position("s")
    assert last is not None
    await reader.unfollow("s")
    await reader.unfollow("s")  # a second unfollow does nothing
    assert reader.position("s") is None
    await log.append_many([LogEntry("s", f"b{i}".encode()) for i in range(10)])
    await asyncio.sleep(0.2)
    assert len(got.records) == 10  # nothing while unfollowed
    await reader.follow("s", last)
    await got.wait(20)
    await log.append("s", b"c")
    await got.wait(21)
    await asyncio.sleep(0.1)
    expected = [f"a{i}".encode() for i in range(10)] + [f"b{i}".encode() for i in range(10)] + [b"c"]
    assert got.payloads("s") == expected


async def test_streams_sharing_a_partition_are_filtered_and_rewound_without_repeats(
    log_url: str, log: CommentLog, follower: tuple[LogFollower, Collected]
) -> None:
    reader, got = follower
    streams = same_partition_streams(log_url, 6)
    followed, late, unfollowed = streams[:3], streams[3], streams[4:]
    for stream in followed:
        await reader.follow(stream, -1)
    entries = [LogEntry(streams[i % 6], f"{i}".encode()) for i in range(300)]
    await log.append_many(entries)
    await got.wait(150)
    # A stream of the same partition followed from the beginning: the scan goes back, the
    # streams already delivered see no repeat.
    await reader.follow(late, -1)
    await got.wait(200)
    await log.append_many([LogEntry(s, b"after") for s in streams])
    await got.wait(204)
    await asyncio.sleep(0.2)
    assert len(got.records) == 204
    for index, stream in enumerate(streams):
        sent = [e.payload for e in entries if e.stream == stream]
        if stream in unfollowed:
            assert got.payloads(stream) == []
        else:
            assert got.payloads(stream) == [*sent, b"after"], index


async def test_many_streams_each_in_order(log: CommentLog, follower: tuple[LogFollower, Collected]) -> None:
    reader, got = follower
    streams = [f"m{i}" for i in range(300)]
    for stream in streams:
        await reader.follow(stream, -1)
    entries = [LogEntry(streams[i % 300], f"{i}".encode()) for i in range(1500)]
    for start in range(0, 1500, 250):
        await log.append_many(entries[start : start + 250])
    await got.wait(1500)
    for stream in streams[::37]:
        assert got.payloads(stream) == [e.payload for e in entries if e.stream == stream]
    assert len({(r.stream, r.offset) for r in got.records}) == 1500


async def test_records_of_the_excluded_origin_are_skipped(log_url: str, log: CommentLog) -> None:
    reader = await open_log_follower(log_url, exclude_origin="me")
    got = Collected()
    reader.set_handler(got)
    try:
        await reader.follow("s", -1)
        await log.append_many([LogEntry("s", b"mine", origin="me"), LogEntry("s", b"theirs", origin="them")])
        await log.append("s", b"anon")
        await got.wait(2)
        await asyncio.sleep(0.1)
        assert got.payloads("s") == [b"theirs", b"anon"]
        assert reader.position("s") == await log.last_offset("s")
    finally:
        await reader.aclose()


async def test_a_failing_handler_does_not_stop_delivery(log_url: str, log: CommentLog) -> None:
    reader = await open_log_follower(log_url)
    seen: list[bytes] = []

    def handler(records: Sequence[LogRecord]) -> None:
        seen.extend(r.payload for r in records)
        if any(r.payload == b"bad" for r in records):
            raise ValueError("bad payload")

    reader.set_handler(handler)
    try:
        await reader.follow("s", -1)
        await log.append("s", b"bad")
        deadline = time.monotonic() + WAIT_S
        while b"bad" not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await log.append("s", b"good")
        while b"good" not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert seen == [b"bad", b"good"]
    finally:
        await reader.aclose()


async def test_pause_holds_delivery_and_resume_continues(
    log: CommentLog, follower: tuple[LogFollower, Collected]
) -> None:
    reader, got = follower
    await reader.follow("s", -1)
    await log.append("s", b"1")
    await got.wait(1)
    reader.pause()
    reader.pause()
    assert reader.stats().paused
    await log.append_many([LogEntry("s", f"{i}".encode()) for i in range(2, 50)])
    await asyncio.sleep(0.3)
    assert len(got.records) == 1
    reader.resume()
    await got.wait(49)
    await asyncio.sleep(0.1)
    assert got.payloads("s") == [f"{i}".encode() for i in range(1, 50)]
    assert not reader.stats().paused


async def test_lag_counts_what_is_not_yet_scanned(
    log: CommentLog, follower: tuple[LogFollower, Collected]
) -> None:
    reader, got = follower
    await reader.follow("s", -1)
    await log.append_many([LogEntry("s", b"x") for _ in range(20)])
    await got.wait(20)
    await asyncio.sleep(0.05)
    stats = reader.stats()
    assert stats.behind == 0 and stats.delivered == 20 and stats.last_error is None


async def test_misuse_is_refused(log_url: str, log: CommentLog) -> None:
    reader = await open_log_follower(log_url)
    try:
        with pytest.raises(RuntimeError):
            await reader.follow("s", -1)  # no handler yet
        reader.set_handler(Collected())
        with pytest.raises(RuntimeError):
            reader.set_handler(Collected())
        await reader.follow("s", -1)
        with pytest.raises(RuntimeError):
            await reader.follow("s", 5)
    finally:
        await reader.aclose()
    await reader.aclose()
    with pytest.raises(ClosedError):
        await reader.follow("t", -1)


async def test_delivery_latency(
    log_url: str, log: CommentLog, follower: tuple[LogFollower, Collected], capsys: pytest.CaptureFixture[str]
) -> None:
    """Append -> handler latency of one record at a time (the appender's ack included)."""
    reader, got = follower
    await reader.follow("s", -1)
    await reader.follow("other", -1)
    samples = []
    for i in range(200):
        payload = f"lat{i}".encode()
        start = time.perf_counter()
        await log.append("s", payload)
        deadline = time.monotonic() + WAIT_S
        while payload not in got.arrived:
            assert time.monotonic() < deadline, "record not delivered"
            await asyncio.sleep(0.0005)
        samples.append((got.arrived[payload] - start) * 1000)
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]
    with capsys.disabled():
        backend = log_url.partition(":")[0]
        print(f"\n[{backend}] append->follower latency over 200: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert p99 < 200.0


# -- Kafka only: a broker outage between the follower and the broker ------------------------


@pytest.mark.parametrize("fault", ["down", "black-hole"])
async def test_kafka_follower_recovers_from_a_broker_outage_without_a_gap(
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    fault: str,
) -> None:
    """The follower reaches the broker through a Toxiproxy proxy; the writer does not. While the
    proxy is down (connections refused and cut) or black-holed (a timeout toxic: bytes go
    nowhere), records keep being appended; after the link is back every one is delivered, in
    order, once.

    The follower's connections reach the proxy through ``backend_kafka.kafka_proxy``."""
    from backend_kafka import broker, kafka_proxy, kafka_url

    url = kafka_url(request)
    writer = await open_comment_log(url)
    await writer.append("s", b"warm-up")  # the writer's connections exist before the re-route: direct
    toxiproxy, name, listen = kafka_proxy(request)
    follower = await open_log_follower(url.replace(broker(), listen, 1))
    got = Collected()
    follower.set_handler(got)
    sent: list[bytes] = [b"warm-up"]
    try:
        await follower.follow("s", -1)
        await follower.follow("t", -1)

        async def write(count: int, tag: str) -> None:
            for i in range(count):
                payload = f"{tag}{i}".encode()
                await writer.append_many([LogEntry("s", payload), LogEntry("t", payload)])
                sent.append(payload)
                await asyncio.sleep(0.01)

        await write(30, "before")
        await got.wait(61)
        if fault == "down":
            toxiproxy.set_enabled(name, False)
        else:
            toxiproxy.add_toxic(name, "timeout", stream="downstream", attributes={"timeout": 0}, name="hole")
        await write(100, "during")
        await asyncio.sleep(2.0)
        assert len(got.records) < 2 * len(sent) - 1, "the fault did not cut the follower off"
        assert follower.stats().last_error is not None, "the outage is not visible in the stats"
        if fault == "down":
            toxiproxy.set_enabled(name, True)
        else:
            toxiproxy.remove_toxic(name, "hole")
        restored = time.monotonic()
        await write(30, "after")
        await got.wait(2 * len(sent) - 1, timeout=60)
        with capsys.disabled():
            print(f"\n[kafka {fault}] caught up {time.monotonic() - restored:.2f} s after the link came back")
        await asyncio.sleep(0.3)
        assert got.payloads("s") == sent
        assert got.payloads("t") == sent[1:]
        for stream in ("s", "t"):
            offsets = [r.offset for r in got.of(stream)]
            assert offsets == sorted(set(offsets))
        stats = follower.stats()
        assert stats.last_error is None and stats.behind == 0 and stats.delivered == 2 * len(sent) - 1
    finally:
        await follower.aclose()
        await writer.aclose()
