"""The steady load of a fault case: signed-in posters and viewers spread over the edges, each
keeping a ledger of what it was told and shown.

Posters post one comment at a time (``cmid`` = the text, so a copy stored twice shows as one text
under two ids) and retry it with the same ``cmid`` until it is acked: after ``retry_ms`` on an
``err``, or on another edge when the connection drops or no answer comes within
``ACK_WAIT_S`` (the Python client's request timeout). Every ack is written down with when it came.

Viewers join one stream each and write down every comment they are shown and how: live (per
connection, in arrival order), in a rejoin's ``missed``, or refetched from history after a
``gap: true``. When a connection drops they rejoin on the next edge with ``last_id`` = the newest
id they hold (as ``livechat.client`` does); a ``gap`` event makes them rejoin on the same
connection. Neither ever deduplicates: the ledger keeps everything, and the verdict
(``tests.faults.verdict``) decides what was a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
import msgpack

from tests.faults.wire import Wire

#: The Python client's request timeout (ClientConfig.request_timeout_s).
ACK_WAIT_S: Final = 10.0
JOIN_WAIT_S: Final = 5.0
HISTORY_WAIT_S: Final = 5.0
#: Reconnect backoff (full jitter, doubling) as the clients do it.
BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0
HISTORY_PAGE: Final = 100


def token(secret: str, user: str, role: str) -> str:
    body = {"sub": user, "aud": "livechat", "role": role, "exp": int(time.time()) + 7200}
    return jwt.encode(body, secret, algorithm="HS256")


class Edges:
    """The edges' WebSocket URLs; a client moves to the next one when its edge fails it."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    def url(self, index: int, tok: str) -> str:
        return f"{self.urls[index % len(self.urls)]}?token={tok}"


def comment_ids(events: list[Any]) -> list[tuple[int, str]]:
    out = []
    for e in events:
        if isinstance(e, (bytes, bytearray)):
            e = msgpack.unpackb(e, strict_map_key=False)
        if isinstance(e, dict) and e.get("k") == "c":
            out.append((int(e["id"]), str(e.get("x", ""))))
    return out


@dataclass
class Ack:
    cmid: str
    id: int
    sent: float  # first send of this cmid (monotonic)
    at: float  # the ack (monotonic)
    dup: bool


class Poster:
    def __init__(self, name: str, stream: str, edges: Edges, edge: int, secret: str) -> None:
        self.name = name
        self.stream = stream
        self.edges = edges
        self.edge = edge
        self.token = token(secret, name, "broadcaster")
        self.wire: Wire | None = None
        self.acks: list[Ack] = []
        self.errors: Counter[str] = Counter()
        self.abandoned: list[str] = []
        self.reconnects = 0

    async def _connected(self, deadline: float) -> Wire:
        backoff = BACKOFF_MIN_S
        while True:
            wire = self.wire
            if wire is not None and not wire.closed.is_set():
                return wire
            if wire is not None:
                await wire.close()
                self.wire = None
            if time.monotonic() > deadline:
                raise TimeoutError("no edge took the poster")
            try:
                wire = await Wire.open(self.edges.url(self.edge, self.token), lambda m: None)
                reply = await wire.call("join", JOIN_WAIT_S, stream=self.stream)
                if reply.get("t") == "snapshot":
                    self.wire = wire
                    return wire
                self.errors[f"join:{reply.get('code')}"] += 1
                await wire.close()
            except (OSError, TimeoutError, ConnectionError) as exc:
                self.errors[f"connect:{type(exc).__name__}"] += 1
            except Exception as exc:  # websockets' handshake errors (503 while an edge starts)
                self.errors[f"connect:{type(exc).__name__}"] += 1
            self.edge += 1
            self.reconnects += 1
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _drop(self) -> None:
        if self.wire is not None:
            await self.wire.close()
            self.wire = None
        self.edge += 1

    async def post(self, cmid: str, give_up_at: float) -> None:
        first = time.monotonic()
        while True:
            if time.monotonic() > give_up_at:
                self.abandoned.append(cmid)
                return
            try:
                wire = await self._connected(give_up_at)
                reply = await wire.call("post", ACK_WAIT_S, stream=self.stream, text=cmid, cmid=cmid)
            except TimeoutError:
                self.errors["no_answer"] += 1
                await self._drop()
                continue
            except ConnectionError:
                self.errors["disconnected"] += 1
                await self._drop()
                continue
            if reply.get("t") == "ack":
                self.acks.append(Ack(cmid, int(reply["id"]), first, time.monotonic(), bool(reply.get("dup"))))
                return
            code = str(reply.get("code"))
            self.errors[code] += 1
            await asyncio.sleep(max(0.05, min(float(reply.get("retry_ms", 1000)), 5000.0) / 1000))

    async def run(self, stop: asyncio.Event, interval: float, finish_by: list[float]) -> None:
        """Post until ``stop``; the post in progress then has until ``finish_by[0]``."""
        seq = 0
        while not stop.is_set():
            cmid = f"{self.name}#{seq}"
            seq += 1
            post = asyncio.ensure_future(self.post(cmid, float("inf")))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([post, stopped], return_when=asyncio.FIRST_COMPLETED)
            if not post.done():
                left = finish_by[0] - time.monotonic()
                done, _ = await asyncio.wait([post], timeout=max(0.0, left))
                if not done:
                    post.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await post
                    self.abandoned.append(cmid)
            stopped.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopped
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), random.uniform(0.5, 1.5) * interval)

    async def close(self) -> None:
        if self.wire is not None:
            await self.wire.close()


@dataclass
class Seen:
    how: str  # live | missed | recent | refetched
    conn: int


@dataclass
class Viewer:
    name: str
    stream: str
    edges: Edges
    edge: int
    secret: str
    token: str = ""
    wire: Wire | None = None
    # Every showing of a comment: id -> list of how it came.
    shown: dict[int, list[Seen]] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)
    # Per connection, the live comment ids in arrival order.
    live: list[list[int]] = field(default_factory=list)
    last_id: int = 0
    joined: bool = False
    gaps: int = 0  # snapshots that said gap: true
    gap_events: int = 0  # "gap" events in ticks
    refetch_failures: int = 0
    disconnects: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.token = token(self.secret, self.name, "viewer")

    def _show(self, items: list[tuple[int, str]], how: str) -> None:
        conn = len(self.live) - 1
        for cid, text in items:
            self.shown.setdefault(cid, []).append(Seen(how, conn))
            self.texts[cid] = text
            if cid > self.last_id:
                self.last_id = cid
            if how == "live":
                self.live[conn].append(cid)

    def _on_message(self, m: dict[str, Any]) -> None:
        if m.get("t") != "tick" or m.get("s") != self.stream:
            return
        events = m.get("e", [])
        self._show(comment_ids(events), "live")
        if any(isinstance(e, dict) and e.get("k") == "gap" for e in events):
            self.gap_events += 1
            wire = self.wire
            if wire is not None:
                self._spawn(self._rejoin(wire))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _rejoin(self, wire: Wire) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError):
            snap = await wire.call("join", JOIN_WAIT_S, stream=self.stream, last_id=max(self.last_id, 1))
            if snap.get("t") == "snapshot":
                await self._on_snapshot(wire, snap, rejoin=True)

    async def _on_snapshot(self, wire: Wire, snap: dict[str, Any], rejoin: bool) -> None:
        self._show(comment_ids(snap.get("recent", [])), "recent")
        if not rejoin:
            return
        if snap.get("gap"):
            self.gaps += 1
            await self.refetch(wire, self.last_id)
        else:
            self._show(comment_ids(snap.get("missed", [])), "missed")

    async def refetch(self, wire: Wire, down_to: int) -> bool:
        """Page history back to ``down_to`` (what a client does after ``gap: true``)."""
        before: int | None = None
        while True:
            fields: dict[str, Any] = {"stream": self.stream, "limit": HISTORY_PAGE}
            if before is not None:
                fields["before"] = before
            try:
                page = await wire.call("history", HISTORY_WAIT_S, **fields)
            except (TimeoutError, ConnectionError):
                self.refetch_failures += 1
                return False
            if page.get("t") != "history":
                self.errors[f"history:{page.get('code')}"] += 1
                self.refetch_failures += 1
                return False
            items = comment_ids(page.get("items", []))
            self._show(items, "refetched")
            if not items or not page.get("more") or min(cid for cid, _ in items) <= down_to:
                return True
            before = min(cid for cid, _ in items)

    async def run(self, stop: asyncio.Event, joined: asyncio.Event | None = None) -> None:
        backoff = BACKOFF_MIN_S
        while not stop.is_set():
            wire: Wire | None = None
            try:
                wire = await Wire.open(self.edges.url(self.edge, self.token), self._on_message)
                self.live.append([])
                fields: dict[str, Any] = {"stream": self.stream}
                if self.joined:
                    fields["last_id"] = max(self.last_id, 1)
                self.wire = wire
                snap = await wire.call("join", JOIN_WAIT_S, **fields)
                if snap.get("t") != "snapshot":
                    self.errors[f"join:{snap.get('code')}"] += 1
                    raise ConnectionError("join refused")
                await self._on_snapshot(wire, snap, rejoin=self.joined)
                self.joined = True
                if joined is not None:
                    joined.set()
                backoff = BACKOFF_MIN_S
                closed = asyncio.ensure_future(wire.closed.wait())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait([closed, stopped], return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                stopped.cancel()
                if stop.is_set():
                    break
                self.disconnects += 1
            except (OSError, TimeoutError, ConnectionError) as exc:
                self.errors[f"connect:{type(exc).__name__}"] += 1
            except Exception as exc:  # websockets' handshake errors (503 while an edge starts)
                self.errors[f"connect:{type(exc).__name__}"] += 1
            if wire is not None:
                self.wire = None
                await wire.close()
            self.edge += 1
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def final_refetch(self) -> None:
        """After the case: a viewer told of a gap refetches once more (history may have lagged)."""
        for attempt in range(len(self.edges.urls)):
            try:
                wire = await Wire.open(self.edges.url(self.edge + attempt, self.token), lambda m: None)
            except Exception:
                continue
            try:
                snap = await wire.call("join", JOIN_WAIT_S, stream=self.stream)
                if snap.get("t") == "snapshot" and await self.refetch(wire, 0):
                    return
            except (TimeoutError, ConnectionError):
                pass
            finally:
                await wire.close()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.wire is not None:
            await self.wire.close()
