"""OpenTelemetry traces of a comment's path, optional and off by default.

With ``ops.tracing = "otlp"`` (``pip install 'livechat[otel]'``; the exporter reads the standard
``OTEL_EXPORTER_OTLP_*`` variables) or ``"console"``, each comment gets a trace:

- ``comment.post``: from admission to the author's ack, with a child ``comment.append`` around the
  comment log write. Its context travels with the record (Kafka header ``traceparent``, W3C);
- ``comment.deliver``: on every edge that delivers the record from the log, a child of the post;
- ``comment.persist``: in ``livechat worker persist``, a child of the post, around the history write.

Off (the default) every function here is a check of one module flag: nothing is allocated per
comment and opentelemetry is never imported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Final, Literal

TracingMode = Literal["off", "console", "otlp"]

#: The W3C trace-context header carried with each log record.
TRACEPARENT: Final = "traceparent"

_tracer: Any = None
_propagator: Any = None


def enabled() -> bool:
    return _tracer is not None


def configure(mode: TracingMode, service: str, exporter: Any = None) -> None:
    """Start tracing (``mode`` "console" or "otlp"; ``exporter`` overrides, e.g. an in-memory one in
    tests); "off" stops it. Raises ImportError naming the extra when opentelemetry is missing."""
    global _tracer, _propagator
    if mode == "off" and exporter is None:
        _tracer = _propagator = None
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as exc:
        raise ImportError("tracing needs opentelemetry: pip install 'livechat[otel]'") from exc
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif mode == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = provider.get_tracer("livechat")
    _propagator = TraceContextTextMapPropagator()


def now_ns() -> int:
    """A span start time taken where the work began (admission), only when tracing."""
    return time.time_ns() if _tracer is not None else 0


def _context(traceparent: bytes | None) -> Any:
    if traceparent is None or _propagator is None:
        return None
    return _propagator.extract({TRACEPARENT: traceparent.decode()})


def start_post(stream: str, comment_id: int, start_ns: int) -> Any:
    """The ``comment.post`` span of one comment (None when off); end it with ``end``."""
    if _tracer is None:
        return None
    return _tracer.start_span(
        "comment.post",
        start_time=start_ns or None,
        attributes={"livechat.stream": stream, "livechat.comment_id": comment_id},
    )


def traceparent(span: Any) -> bytes | None:
    """The W3C ``traceparent`` of ``span``, to carry with its log record."""
    if span is None or _propagator is None:
        return None
    from opentelemetry import trace

    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    value = carrier.get(TRACEPARENT)
    return value.encode() if value else None


def child(name: str, parent: Any, start_ns: int = 0, end_ns: int = 0) -> None:
    """A finished child span of ``parent`` (a span) covering [start_ns, end_ns]."""
    if _tracer is None or parent is None:
        return
    from opentelemetry import trace

    span = _tracer.start_span(name, context=trace.set_span_in_context(parent), start_time=start_ns or None)
    span.end(end_time=end_ns or None)


def record_spans(name: str, traceparents: list[bytes | None], start_ns: int) -> None:
    """One finished span per traced record (a child of its post), from ``start_ns`` to now."""
    if _tracer is None:
        return
    end_ns = time.time_ns()
    for value in traceparents:
        if value is not None:
            span = _tracer.start_span(name, context=_context(value), start_time=start_ns)
            span.end(end_time=end_ns)


def end(span: Any) -> None:
    if span is not None:
        span.end()


@contextlib.contextmanager
def from_record(name: str, traceparent_value: bytes | None, **attributes: Any) -> Iterator[None]:
    """A span around work done for a log record, a child of the post that wrote it."""
    if _tracer is None or traceparent_value is None:
        yield
        return
    with _tracer.start_as_current_span(name, context=_context(traceparent_value), attributes=attributes):
        yield
