"""Pluggable ML classifier callout: the Protocol and an HTTP/JSON implementation.

The HTTP classifier POSTs ``{"text", "user", "stream"}`` as JSON to the configured URL and expects
``{"score": 0.0..1.0, "labels": [..]}`` back (HTTP/1.1, keep-alive, a small connection pool). Any
other answer is a failure: the pipeline counts it against the circuit breaker and lets the comment
stand (fail open).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class ClassifierVerdict:
    """``score`` in [0, 1]: how likely the comment breaks the rules."""

    score: float
    labels: tuple[str, ...] = ()


class ClassifierError(Exception):
    """The classifier answered with something other than a verdict."""


class Classifier(Protocol):
    """Scores one comment.

    Guarantees expected from an implementation: it is safe to call concurrently (the pipeline runs
    up to ``classifier_concurrency`` calls at once); it raises (any exception) instead of returning a
    made-up verdict when it cannot score; it may be slow, because the pipeline bounds every call with
    a timeout and cancels it, so cancellation must leave it usable.
    """

    async def classify(self, text: str, user_id: str, stream: str) -> ClassifierVerdict: ...

    async def aclose(self) -> None: ...


def parse_verdict(body: bytes) -> ClassifierVerdict:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ClassifierError(f"classifier answered non-JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ClassifierError("classifier answer is not a JSON object")
    score = data.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
        raise ClassifierError(f"classifier score {score!r} is not a number in [0, 1]")
    labels = data.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ClassifierError("classifier labels must be a list of strings")
    return ClassifierVerdict(float(score), tuple(labels))


class HttpClassifier:
    """JSON-over-HTTP/1.1 classifier client on asyncio streams (no third-party HTTP client)."""

    MAX_BODY = 64 * 1024

    def __init__(self, url: str, pool_size: int = 16) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"classifier URL must be http(s)://host[:port]/path, got {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._host_header = parts.netloc
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._pool_size = pool_size
        self._closed = False

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self._host, self._port, ssl=self._ssl)

    async def classify(self, text: str, user_id: str, stream: str) -> ClassifierVerdict:
        if self._closed:
            raise ClassifierError("classifier client is closed")
        body = json.dumps({"text": text, "user": user_id, "stream": stream}).encode()
        head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await self._connection()
        reusable = False
        try:
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise ClassifierError(f"bad status line {status_line[:80]!r}")
            status = int(parts[1])
            length = None
            keep_alive = parts[0] == b"HTTP/1.1"
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                key = name.strip().lower()
                if key == b"content-length":
                    length = int(value.strip())
                elif key == b"connection":
                    keep_alive = value.strip().lower() == b"keep-alive" or (
                        keep_alive and value.strip().lower() != b"close"
                    )
                elif key == b"transfer-encoding":
                    raise ClassifierError("chunked classifier answers are not supported")
            if length is None or length > self.MAX_BODY:
                raise ClassifierError("classifier answer needs a Content-Length under 64 KiB")
            payload = await reader.readexactly(length)
            if status != 200:
                raise ClassifierError(f"classifier answered HTTP {status}")
            reusable = keep_alive
            return parse_verdict(payload)
        finally:
            if reusable and len(self._idle) < self._pool_size and not self._closed:
                self._idle.append((reader, writer))
            else:
                writer.close()

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
