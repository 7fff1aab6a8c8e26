"""Helpers for the chat-domain unit tests (imported by conftest.py and the tests).

Storage is real: the embedded backends (SQLite in a temp dir, in-process broker and registry), opened
exactly as ``livechat serve`` opens them. The edge is the one thing replaced: ``RecordingOutbox``
implements the services' ``Outbox`` port and records what would have gone on the wire, decoded, so
tests assert on frames and tick events instead of sockets.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
import msgpack
from cryptography.hazmat.primitives.asymmetric import ed25519
from livechat.backends import Backends
from livechat.config import AuthConfig, ChatConfig
from livechat.services.chat import ChatService
from livechat.services.clock import ManualClock

HMAC_SECRET = "unit-test-secret-0123456789abcdef0123456789"


def frame(op: str, **fields: Any) -> bytes:
    """One client frame."""
    return msgpack.packb({"op": op, **fields}, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class RecordingOutbox:
    """The services' Outbox, recording instead of writing to sockets."""

    def __init__(self) -> None:
        self.sent: dict[int, list[bytes]] = defaultdict(list)
        self.published: list[tuple[str, bytes, bool]] = []
        self.state: dict[tuple[str, str], bytes] = {}
        self.subscribers: dict[str, set[int]] = defaultdict(set)
        self.closed: dict[int, tuple[int, str]] = {}

    def send(self, conn_id: int, data: bytes, binary: bool = True) -> bool:
        if conn_id in self.closed:
            return False
        self.sent[conn_id].append(data)
        return True

    def send_many(self, conn_ids: Sequence[int], data: bytes, binary: bool = True) -> int:
        return sum(self.send(conn, data) for conn in conn_ids)

    def send_batch(self, items: Sequence[tuple[int, bytes]], binary: bool = True) -> int:
        return sum(self.send(conn, data) for conn, data in items)

    def publish(self, stream: str, event: bytes, priority: bool = False) -> None:
        self.published.append((stream, event, priority))

    def set_state(self, stream: str, key: str, value: bytes) -> None:
        self.state[(stream, key)] = value

    def subscribe(self, conn_id: int, stream: str) -> bool:
        self.subscribers[stream].add(conn_id)
        return True

    def unsubscribe(self, conn_id: int, stream: str) -> bool:
        self.subscribers[stream].discard(conn_id)
        return True

    def close(self, conn_id: int, code: int = 1000, reason: str = "") -> bool:
        self.closed.setdefault(conn_id, (code, reason))
        return True

    # -- assertions helpers ---------------------------------------------------------------------

    def messages(self, conn_id: int) -> list[Any]:
        return [unpack(data) for data in self.sent[conn_id]]

    def take(self, conn_id: int) -> list[Any]:
        """Messages sent to ``conn_id`` since the last take."""
        out = self.messages(conn_id)
        self.sent[conn_id] = []
        return out

    def last(self, conn_id: int) -> Any:
        return unpack(self.sent[conn_id][-1])

    def events(self, stream: str, priority: bool | None = None) -> list[Any]:
        return [
            unpack(event)
            for s, event, prio in self.published
            if s == stream and (priority is None or prio == priority)
        ]

    def state_value(self, stream: str, key: str) -> Any:
        return unpack(self.state[(stream, key)])


def make_token(sub: str, *, secret: str = HMAC_SECRET, ttl: float = 3600, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": sub, "aud": "livechat", "iat": now, "exp": now + int(ttl), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass
class Ed25519Keys:
    private: ed25519.Ed25519PrivateKey
    public_pem: str


def chat_config(**overrides: Any) -> ChatConfig:
    """ChatConfig with an HS256 secret and node 0 (what ``livechat serve`` resolves -1 to when
    embedded); keyword overrides replace whole sections."""
    base: dict[str, Any] = {"auth": AuthConfig(hmac_secret=HMAC_SECRET), "node_id": 0}
    base.update(overrides)
    return ChatConfig(**base)


@dataclass
class Harness:
    """One edge's ChatService on real embedded storage, driven like the edge drives it."""

    chat: ChatService
    outbox: RecordingOutbox
    clock: ManualClock
    backends: Backends
    next_conn: int = 1
    names: dict[int, str] = field(default_factory=dict)

    def connect(self, user: str | None = None, **claims: Any) -> int:
        conn = self.next_conn
        self.next_conn += 1
        query = f"/live?token={make_token(user, **claims)}" if user is not None else "/live"
        assert self.chat.on_open(conn, query, None), self.outbox.messages(conn)
        return conn

    async def send(self, conn: int, op: str, **fields: Any) -> None:
        await self.chat.on_messages([(conn, frame(op, **fields))])
        await self.chat.flush()

    async def join(self, conn: int, stream: str = "s1", **fields: Any) -> Any:
        await self.send(conn, "join", stream=stream, **fields)
        return self.outbox.take(conn)[-1]

    async def post(
        self, conn: int, text: str, stream: str = "s1", cmid: str | None = None, **fields: Any
    ) -> Any:
        """The ack or error of the post (direct ``ev`` messages stay recorded in ``outbox.sent``)."""
        before = len(self.outbox.sent[conn])
        await self.send(conn, "post", stream=stream, text=text, cmid=cmid or uuid.uuid4().hex, **fields)
        replies = [m for m in self.outbox.messages(conn)[before:] if m["t"] in ("ack", "err")]
        assert len(replies) == 1, replies
        return replies[0]
