"""A load-generator process for `livechat serve`: picows clients on uvloop speaking the msgpack
protocol, steered by JSON lines on stdin (one JSON reply line each; ``{"error": ...}`` on failure).

``python -m bench.service.loadgen --role posters|viewers``. Ops:

- ``connect`` (url, tokens | count, streams, source_ip, concurrency): open the connections (a
  token each, or ``count`` anonymous ones), join a stream each (round robin over ``streams``) and
  return once every snapshot arrived.
- posters: ``flood_start`` (window): every connection keeps ``window`` posts in flight, sending the
  next one as each ack returns; ``flood_stop`` stops and waits for what is in flight;
  ``schedule`` (rate, seconds, first_seq): posts at fixed times, round robin over connections, each
  text carrying its sequence number and CLOCK_MONOTONIC send time (``lc <seq> <ns>``).
- viewers: ``summarize`` (lo, hi): deliveries and the latency histogram of the seq window.
- both: ``status``: counters (acks, errors by code, comments received, disconnects...).

Post acks are told apart from tick frames by their first bytes, so a poster never decodes the
(large) ticks of the stream it is in. Viewers decode each distinct frame once per process (every
viewer of one edge gets the same tick bytes) and only append receive times per viewer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any, Protocol

import msgpack  # type: ignore[import-untyped]
import numpy as np
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.fanout import latency
from bench.fanout.ledger import Ledger
from bench.fanout.payload import Carried, NotBenchMessage

_monotonic_ns = time.monotonic_ns
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE
_CONTINUATION = WSMsgType.CONTINUATION
_READ_BUFFER_BYTES = 4096
# Every server message is a msgpack map whose first key is "t" (docs/protocol.md §3): the type
# name sits at byte 3 ("\xa1t" then a fixstr), so acks and ticks are told apart without decoding.
_ACK = b"\xa1t\xa3ack"
_TICK = b"\xa1t\xa4tick"
_SNAPSHOT = b"\xa1t\xa8snapshot"
_ACK_END = 1 + len(_ACK)
_TICK_END = 1 + len(_TICK)
_SNAPSHOT_END = 1 + len(_SNAPSHOT)
TEXT_TAG = "lc"


def tagged_text(seq: int, sent_ns: int) -> str:
    return f"{TEXT_TAG} {seq} {sent_ns}"


def decode_comments(message: bytes) -> Carried:
    """(seqs, send times) of the tagged comments a tick frame carries; ([], []) for other messages."""
    if message[1:_TICK_END] != _TICK:
        return [], []
    try:
        frame = msgpack.unpackb(message, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData) as exc:
        raise NotBenchMessage(f"tick frame is not msgpack: {exc}") from exc
    seqs: list[int] = []
    sent: list[int] = []
    for event in frame.get("e", ()):
        if event.get("k") != "c":
            continue
        parts = str(event.get("x", "")).split(" ")
        if len(parts) == 3 and parts[0] == TEXT_TAG:
            seqs.append(int(parts[1]))
            sent.append(int(parts[2]))
        else:
            seqs.append(-1)  # a comment that is not ours to time (counted, not timed)
            sent.append(0)
    return seqs, sent


class CommentLedger(Ledger):
    """``bench.fanout.ledger.Ledger`` over tick frames of comments, plus per frame: how many
    comments it carries and the range of tagged seqs in it (for the in-order check)."""

    def __init__(self) -> None:
        super().__init__(decode_comments)
        self.frames: dict[bytes, tuple[int, int, int]] = {}

    def admit(self, message: bytes) -> Any:
        entry = super().admit(message)
        if entry is not None:
            tagged = [s for s in entry.seqs if s >= 0]
            self.frames[message] = (
                len(entry.seqs),
                tagged[0] if tagged else -1,
                tagged[-1] if tagged else -1,
            )
        return entry

    def summarize(self, lo: int, hi: int) -> dict[str, Any]:
        result = super().summarize(lo, hi)
        self.frames = {m: f for m, f in self.frames.items() if m in self.entries}
        return result


def _join_frame(stream: str) -> bytes:
    return msgpack.packb({"op": "join", "stream": stream, "rid": 0})


class Connection(WSListener):
    """Joins its stream once connected; ``joined`` resolves with the snapshot."""

    def __init__(self, gen: LoadGenerator, stream: str) -> None:
        self.gen = gen
        self.stream = stream
        self.transport: WSTransport | None = None
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fragments: list[bytes] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(_BINARY, _join_frame(self.stream))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        gen = self.gen
        gen.open.discard(self)
        if not gen.closing:
            gen.disconnects += 1
            received = transport.close_handshake.recv if transport.close_handshake else None
            gen.close_codes[str(received.code.value) if received else "no close frame"] += 1
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("closed before the snapshot"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == _BINARY:
            if frame.fin:
                self.message(frame.get_payload_as_bytes())
            else:
                self.fragments = [frame.get_payload_as_bytes()]
        elif msg_type == _CONTINUATION and self.fragments:
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                message = b"".join(self.fragments)
                self.fragments = []
                self.message(message)
        elif msg_type == _CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def message(self, data: bytes) -> None:
        if not self.joined.done() and data[1:_SNAPSHOT_END] == _SNAPSHOT:
            self.joined.set_result(None)


class Viewer(Connection):
    def __init__(self, gen: LoadGenerator, stream: str) -> None:
        super().__init__(gen, stream)
        self.expect = -1  # next tagged seq due; -1 until the first one arrives

    def message(self, data: bytes) -> None:
        now = _monotonic_ns()
        gen = self.gen
        ledger = gen.ledger
        entry = ledger.entries.get(data)
        if entry is None:
            if data[1:_TICK_END] != _TICK:
                super().message(data)
                return
            entry = ledger.admit(data)
            if entry is None:
                return
        entry.recv_ns.append(now)
        comments, first, last = ledger.frames[data]
        gen.comment_events += comments
        if first >= 0:
            if self.expect >= 0 and first != self.expect:
                ledger.gaps += 1  # a tagged comment lost, repeated or out of order
            self.expect = last + 1


class Poster(Connection):
    """Posts and counts acks; in flood mode sends the next post as each ack arrives."""

    def __init__(self, gen: LoadGenerator, stream: str, index: int) -> None:
        super().__init__(gen, stream)
        self.index = index
        self.next_rid = 1
        self.in_flight: dict[int, int] = {}  # rid -> send time (ns)

    def post(self, text: str) -> None:
        assert self.transport is not None
        rid = self.next_rid
        self.next_rid += 1
        frame = msgpack.packb(
            {
                "op": "post",
                "stream": self.stream,
                "text": text,
                "cmid": f"{self.gen.cmid_prefix}{self.index}-{rid}",
                "rid": rid,
            }
        )
        self.in_flight[rid] = _monotonic_ns()
        self.transport.send(_BINARY, frame)
        self.gen.sent += 1

    def message(self, data: bytes) -> None:
        if data[1:_TICK_END] == _TICK:
            return
        if data[1:_ACK_END] == _ACK:
            now = _monotonic_ns()
            gen = self.gen
            rid = msgpack.unpackb(data)["rid"]
            sent = self.in_flight.pop(rid, None)
            gen.acks += 1
            if sent is not None:
                gen.ack_latency_ns.append(now - sent)
            if gen.flooding:
                self.post(gen.flood_text())
            return
        reply = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if reply.get("t") == "err":
            self.gen.errors[str(reply.get("code"))] += 1
            rid = reply.get("rid")
            if rid is not None:
                self.in_flight.pop(rid, None)
            if self.gen.flooding:
                self.post(self.gen.flood_text())
            return
        super().message(data)


class LoadGenerator:
    def __init__(self, role: str) -> None:
        self.role = role
        self.ledger = CommentLedger()
        self.open: set[Connection] = set()
        self.posters: list[Poster] = []
        self.closing = False
        self.disconnects = 0
        self.close_codes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.acks = 0
        self.sent = 0
        self.flooding = False
        self.flood_seq = 0
        self.comment_events = 0
        self.ack_latency_ns: list[int] = []
        # A poster process's cmids are its own: a second process posting as the same users (after
        # a restart of the server) must not be answered with the first one's acks (`dup`).
        self.cmid_prefix = f"{os.getpid()}-"

    def flood_text(self) -> str:
        self.flood_seq += 1
        return f"flood comment number {self.flood_seq} from the benchmark"

    async def connect(
        self,
        url: str,
        streams: list[str],
        source_ip: str,
        concurrency: int,
        tokens: list[str] | None = None,
        count: int = 0,
    ) -> dict[str, Any]:
        errors: Counter[str] = Counter()
        gate = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        plan = (
            [(f"{url}?token={t}", i) for i, t in enumerate(tokens)]
            if tokens
            else [(url, i) for i in range(count)]
        )

        async def one(target: str, index: int) -> None:
            stream = streams[index % len(streams)]
            async with gate:
                holder: list[Connection] = []

                def factory() -> WSListener:
                    conn: Connection
                    if self.role == "posters":
                        conn = Poster(self, stream, index)
                    else:
                        conn = Viewer(self, stream)
                    holder.append(conn)
                    return conn

                try:
                    await ws_connect(
                        factory,
                        target,
                        local_addr=(source_ip, 0),
                        read_buffer_init_size=_READ_BUFFER_BYTES,
                        websocket_handshake_timeout=60,
                    )
                    conn = holder[0]
                    await asyncio.wait_for(conn.joined, 60)
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                    return
                self.open.add(conn)
                if isinstance(conn, Poster):
                    self.posters.append(conn)

        await asyncio.gather(*(one(target, i) for target, i in plan))
        return {
            "connected": len(plan) - sum(errors.values()),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(5)),
            "seconds": time.monotonic() - started,
        }

    def flood_start(self, window: int) -> dict[str, Any]:
        self.flooding = True
        for poster in self.posters:
            for _ in range(window):
                poster.post(self.flood_text())
        return self.status()

    async def flood_stop(self, timeout_s: float = 10.0) -> dict[str, Any]:
        self.flooding = False
        deadline = time.monotonic() + timeout_s
        while any(p.in_flight for p in self.posters) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.status()

    async def schedule(self, rate: float, seconds: float, first_seq: int) -> dict[str, Any]:
        """Post ``rate * seconds`` tagged comments at fixed times; late ones go out at once."""
        if not self.posters:
            raise RuntimeError("no poster connection")
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
            while sent < total and started + sent * interval <= now:
                poster = self.posters[sent % len(self.posters)]
                poster.post(tagged_text(first_seq + sent, _monotonic_ns()))
                sent += 1
        return {
            "sent": sent,
            "next_seq": first_seq + sent,
            "seconds": time.monotonic() - started,
            "max_lag_ms": max_lag * 1e3,
        }

    def ack_summary(self) -> dict[str, Any]:
        histogram = latency.empty()
        values = np.asarray(self.ack_latency_ns, dtype=np.float64) / 1000.0
        latency.add(histogram, values)
        self.ack_latency_ns = []
        return {"ack_histogram": latency.to_sparse(histogram), "ack_count": int(values.size)}

    def status(self) -> dict[str, Any]:
        return {
            "t_ns": _monotonic_ns(),
            "open": len(self.open),
            "sent": self.sent,
            "acks": self.acks,
            "errors": dict(self.errors),
            "disconnects": self.disconnects,
            "close_codes": dict(self.close_codes),
            "comment_events": self.comment_events,
            "gaps": self.ledger.gaps,
            "malformed": self.ledger.malformed,
            "malformed_example": self.ledger.malformed_example,
        }

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.pop("op")
        if op == "connect":
            return await self.connect(**request)
        if op == "flood_start":
            return self.flood_start(**request)
        if op == "flood_stop":
            return await self.flood_stop(**request)
        if op == "schedule":
            return await self.schedule(**request)
        if op == "acks":
            return self.ack_summary()
        if op == "summarize":
            return self.ledger.summarize(**request)
        if op == "status":
            return self.status()
        raise ValueError(f"unknown op {op!r}")

    def shutdown(self) -> None:
        self.closing = True
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.disconnect(graceful=False)


class Steerable(Protocol):
    async def handle(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def shutdown(self) -> None: ...


async def serve_requests(generator: Steerable) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        if request.get("op") == "exit":
            break
        try:
            reply = await generator.handle(request)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    generator.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description="bench.service load-generator process")
    parser.add_argument("--role", choices=("posters", "viewers"), required=True)
    args = parser.parse_args()
    uvloop.run(serve_requests(LoadGenerator(args.role)))


if __name__ == "__main__":
    main()
