"""A comment's trace context crosses Kafka with its record (header ``traceparent``), so the edges
that deliver it and the persist worker that stores it add their spans to the post's trace."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from livechat.backends import open_comment_log, open_log_follower
from livechat.ports import LogEntry

from tests.cluster_services import service_url

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_a_records_trace_context_reaches_readers_and_followers() -> None:
    topic = f"trace-{uuid.uuid4().hex[:10]}"
    url = f"{service_url('kafka')}/{topic}?partitions=2"
    log = await open_comment_log(url)
    follower = await open_log_follower(url)
    got: list[bytes | None] = []
    follower.set_handler(lambda records: got.extend(r.trace for r in records))
    try:
        await follower.follow("s", -1)
        await log.append_many(
            [LogEntry("s", b"\x81\xa1k\xa1c", "c1", "edge-a", TRACEPARENT), LogEntry("s", b"x")]
        )
        records = await log.read("s", -1, 10)
        assert [r.trace for r in records] == [TRACEPARENT, None]
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.05)
        assert got == [TRACEPARENT, None]
    finally:
        await follower.aclose()
        await log.aclose()
        admin = AIOKafkaAdminClient(bootstrap_servers=url.removeprefix("kafka://").split("/")[0])
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
