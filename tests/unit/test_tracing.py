"""OpenTelemetry spans of a comment (``livechat.tracing``): off by default, and when on a post is
one ``comment.post`` span with its ``comment.append`` child, whose context a log record carries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chat_harness import Harness
from livechat import tracing
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("console", "test", exporter=exporter)
    yield exporter
    tracing.configure("off", "test")


def test_off_by_default_costs_nothing() -> None:
    assert not tracing.enabled()
    assert tracing.now_ns() == 0 and tracing.start_post("s", 1, 0) is None
    assert tracing.traceparent(None) is None


async def test_a_post_is_traced_from_admission_to_ack(make_harness: Any, spans: InMemorySpanExporter) -> None:
    h: Harness = await make_harness()
    conn = h.connect("u1")
    await h.join(conn)
    ack = await h.post(conn, "traced")
    finished = {s.name: s for s in spans.get_finished_spans()}
    post, append = finished["comment.post"], finished["comment.append"]
    assert post.attributes is not None and post.attributes["livechat.comment_id"] == ack["id"]
    assert append.parent is not None and append.parent.span_id == post.context.span_id
    assert post.start_time is not None and append.start_time is not None
    assert post.start_time <= append.start_time


def test_a_record_carries_the_post_to_its_delivery(spans: InMemorySpanExporter) -> None:
    post = tracing.start_post("s", 7, tracing.now_ns())
    header = tracing.traceparent(post)
    assert header is not None and header.startswith(b"00-")
    tracing.end(post)
    tracing.record_spans("comment.deliver", [header, None], tracing.now_ns())
    deliver = [s for s in spans.get_finished_spans() if s.name == "comment.deliver"]
    assert len(deliver) == 1
    assert deliver[0].context.trace_id == post.get_span_context().trace_id
    assert deliver[0].parent is not None and deliver[0].parent.span_id == post.get_span_context().span_id
