"""A load-generator process: picows clients on uvloop, steered by JSON lines on stdin.

``python -m bench.fanout.loadgen --role viewers|publisher [--tick-frames]``. Each request line is
``{"op": ..., ...}``; each gets exactly one JSON reply line on stdout (``{"error": ...}`` if it
failed). Ops: ``connect`` (url, count, source_ip, concurrency), ``publish`` (rate, seconds,
first_seq; publisher only), ``delivered`` / ``summarize`` (lo, hi; viewers), ``status``, ``exit``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.fanout.ledger import Ledger
from bench.fanout.payload import decoder_for, encode

_monotonic_ns = time.monotonic_ns
_BINARY = WSMsgType.BINARY
_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE
_CONTINUATION = WSMsgType.CONTINUATION
# Tick frames grow with the publish rate; the buffer grows on demand, so start small to keep
# 3 750 clients per process light.
_READ_BUFFER_BYTES = 4096


class Viewer(WSListener):
    """Counts and timestamps every bench message it receives; checks seqs arrive contiguously."""

    def __init__(self, ledger: Ledger, open_set: set[WSTransport]) -> None:
        self.ledger = ledger
        self.open_set = open_set
        self.expect = 0
        self.fragments: list[bytes] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.open_set.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.open_set.discard(transport)
        ledger = self.ledger
        if not ledger.closing:
            ledger.disconnects += 1
            received = transport.close_handshake.recv if transport.close_handshake else None
            ledger.close_codes[str(received.code.value) if received else "no close frame"] += 1

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == _BINARY and frame.fin:
            self.receive(frame.get_payload_as_bytes())
        elif msg_type == _CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif msg_type == _BINARY:
            self.fragments = [frame.get_payload_as_bytes()]
        elif msg_type == _CONTINUATION and self.fragments:
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                message = b"".join(self.fragments)
                self.fragments = []
                self.receive(message)
        elif msg_type == _TEXT:
            self.ledger.unexpected_text += 1

    def receive(self, message: bytes) -> None:
        now = _monotonic_ns()
        ledger = self.ledger
        entry = ledger.entries.get(message)
        if entry is None:
            entry = ledger.admit(message)
            if entry is None:
                return
        if entry.seqs:
            if entry.first != self.expect:
                ledger.gaps += 1
            self.expect = entry.last + 1
        entry.recv_ns.append(now)


class PublisherConnection(WSListener):
    """The publishing client: its copies of the broadcast are discarded unread."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


class LoadGenerator:
    def __init__(self, role: str, tick_frames: bool) -> None:
        self.role = role
        self.ledger = Ledger(decoder_for(tick_frames))
        self.open: set[WSTransport] = set()
        self.publisher: WSTransport | None = None

    async def connect(self, url: str, count: int, source_ip: str, concurrency: int) -> dict[str, Any]:
        errors: Counter[str] = Counter()
        gate = asyncio.Semaphore(concurrency)
        started = time.monotonic()

        async def one() -> None:
            async with gate:
                try:
                    transport, _ = await ws_connect(
                        self.make_listener,
                        url,
                        local_addr=(source_ip, 0),
                        read_buffer_init_size=_READ_BUFFER_BYTES,
                        websocket_handshake_timeout=60,
                    )
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                    return
                if self.role == "publisher":
                    self.publisher = transport

        await asyncio.gather(*(one() for _ in range(count)))
        return {
            "connected": count - sum(errors.values()),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(5)),
            "seconds": time.monotonic() - started,
        }

    def make_listener(self) -> WSListener:
        if self.role == "publisher":
            return PublisherConnection()
        return Viewer(self.ledger, self.open)

    async def publish(self, rate: float, seconds: float, first_seq: int) -> dict[str, Any]:
        """Send ``rate * seconds`` messages on a fixed schedule; late sends go out at once."""
        if self.publisher is None or self.publisher.is_disconnected:
            raise RuntimeError("publisher is not connected")
        transport = self.publisher
        total = max(1, round(rate * seconds))
        interval = 1.0 / rate
        started = time.monotonic()
        max_lag = 0.0
        sent = 0
        while sent < total:
            now = time.monotonic()
            due = started + sent * interval
            if due > now:
                await asyncio.sleep(due - now)
                continue
            max_lag = max(max_lag, now - due)
            # Everything already due goes out in this pass, so timer granularity cannot cap the rate.
            while sent < total and started + sent * interval <= now:
                transport.send(_BINARY, encode(first_seq + sent, _monotonic_ns()))
                sent += 1
        return {
            "sent": sent,
            "next_seq": first_seq + sent,
            "seconds": time.monotonic() - started,
            "max_lag_ms": max_lag * 1000.0,
        }

    def status(self) -> dict[str, Any]:
        open_count = len(self.open) if self.role == "viewers" else int(bool(self.publisher))
        return {"open": open_count, **self.ledger.counters()}

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.pop("op")
        if op == "connect":
            return await self.connect(**request)
        if op == "publish":
            return await self.publish(**request)
        if op == "delivered":
            return {"delivered": self.ledger.delivered(**request)}
        if op == "summarize":
            return self.ledger.summarize(**request)
        if op == "status":
            return self.status()
        raise ValueError(f"unknown op {op!r}")


async def serve_requests(generator: LoadGenerator) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        if request.get("op") == "exit":
            generator.ledger.closing = True
            break
        try:
            reply = await generator.handle(request)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    generator.ledger.closing = True
    for transport in list(generator.open):
        transport.disconnect(graceful=False)
    if generator.publisher is not None:
        generator.publisher.disconnect(graceful=False)


def main() -> None:
    parser = argparse.ArgumentParser(description="bench.fanout load-generator process")
    parser.add_argument("--role", choices=("viewers", "publisher"), required=True)
    parser.add_argument("--tick-frames", action="store_true", help="server delivers livechat tick frames")
    args = parser.parse_args()
    uvloop.run(serve_requests(LoadGenerator(args.role, args.tick_frames)))


if __name__ == "__main__":
    main()
