"""Locust users that speak livechat through ``livechat.client`` on picows.

Every WebSocket lives on one asyncio thread per locust process (``aio_bridge``); a user's greenlet
only decides what to do next and waits for the outcome. Times are measured on the asyncio thread,
so gevent scheduling does not inflate them.

Requests reported to locust (type ``WS``):
- ``connect+join``: WebSocket open, token accepted, join snapshot received;
- ``post (ack)``: post until its ack (the comment is stored);
- ``react (ok)``: reaction until its ok;
- ``deliver (post->viewer)``: from a comment's server timestamp to its arrival at a viewer, for
  the first ``--livechat-latency-viewers`` viewers of each process (same-host clocks).
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gevent
import jwt
from aio_bridge import bridge
from livechat.client import Comment, Disconnected, Event, LiveChatClient, Reconnected
from livechat.config import LoadTestConfig
from livechat.protocol import REACTIONS
from locust import User, between, constant, task
from locust.env import Environment
from locust.exception import StopUser

SETTINGS = LoadTestConfig()
CONNECT = "connect+join"
POST = "post (ack)"
REACT = "react (ok)"
DELIVER = "deliver (post->viewer)"
REQUEST_TYPE = "WS"
# Seconds a greenlet waits for one operation before reporting it failed.
CALL_TIMEOUT_S = 60.0
WORDS = ("chat", "live", "stream", "goal", "wow", "nice", "play", "team", "again", "fast", "hello", "yes")

T = TypeVar("T")


@dataclass
class Totals:
    """Process-wide counts, written on the asyncio thread (int += under the GIL; deque appends are
    thread-safe) and read by greenlets."""

    users_connected: int = 0
    deliveries: int = 0
    # Connections lost without the user closing them (each is then reconnected).
    drops: int = 0
    reconnects: int = 0
    latencies_ms: deque[float] = field(default_factory=deque)
    # CPU seconds reported by worker processes (distributed runs).
    cpu_s: float = 0.0

    def shareable(self) -> dict[str, float]:
        """The running totals with this process's CPU, as a worker sends them to the master."""
        return {
            "users_connected": self.users_connected,
            "deliveries": self.deliveries,
            "drops": self.drops,
            "reconnects": self.reconnects,
            "cpu_s": own_cpu_seconds(),
        }

    def add(self, other: dict[str, float]) -> None:
        self.users_connected += int(other["users_connected"])
        self.deliveries += int(other["deliveries"])
        self.drops += int(other["drops"])
        self.reconnects += int(other["reconnects"])
        self.cpu_s += float(other["cpu_s"])


def own_cpu_seconds() -> float:
    """User + system CPU of this process, every thread (the asyncio one included)."""
    times = os.times()
    return times.user + times.system


TOTALS = Totals()
_viewers = itertools.count()
_reporter: gevent.Greenlet | None = None


def mint_token(secret_file: str, user: str, role: str, ttl_s: int) -> str:
    with open(secret_file) as f:
        secret = f.read().strip()
    now = int(time.time())
    claims = {"sub": user, "aud": "livechat", "role": role, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


def ws_url(host: str) -> str:
    host = host.rstrip("/")
    return host if host.endswith("/live") else host + "/live"


def start_reporter(environment: Environment) -> None:
    """One greenlet per process turns the viewers' latency samples into locust requests."""
    global _reporter
    if _reporter is not None:
        return

    def report() -> None:
        fire = environment.events.request.fire
        while True:
            gevent.sleep(0.25)
            samples = TOTALS.latencies_ms
            while samples:
                latency = samples.popleft()
                fire(request_type=REQUEST_TYPE, name=DELIVER, response_time=latency, response_length=0)

    _reporter = gevent.spawn(report)


async def _timed(operation: Awaitable[T]) -> tuple[float, T | None, BaseException | None]:
    started = time.perf_counter()
    try:
        result = await operation
    except Exception as exc:
        return (time.perf_counter() - started) * 1000, None, exc
    return (time.perf_counter() - started) * 1000, result, None


class LiveChatUser(User):
    abstract = True
    role = "viewer"
    kind = "user"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        if not self.host:
            raise ValueError("the load test needs --host ws://HOST:PORT (the livechat edge)")
        self.bridge = bridge()
        start_reporter(self.environment)
        self.stream = f"{options.livechat_stream_prefix}-{random.randrange(options.livechat_streams)}"
        self.user_id = f"{self.kind}-{uuid.uuid4().hex[:12]}"
        token = mint_token(options.livechat_secret_file, self.user_id, self.role, SETTINGS.token_ttl_s)
        self.client: LiveChatClient | None = None
        ms, client, error = self.bridge.call(_timed(self._open(ws_url(self.host), token)), CALL_TIMEOUT_S)
        self.report(CONNECT, ms, error)
        if client is None:
            raise StopUser()
        self.client = client
        TOTALS.users_connected += 1

    async def _open(self, url: str, token: str) -> LiveChatClient:
        client = LiveChatClient(url, token, transport="picows", on_event=self.on_event)
        try:
            await client.connect()
            await client.join(self.stream)
        except BaseException:
            await client.close()
            raise
        return client

    def on_event(self, event: Event) -> None:
        # Runs on the asyncio thread for every event of this user's connection.
        kind = type(event)
        if kind is Disconnected:
            assert isinstance(event, Disconnected)
            if not event.final:
                TOTALS.drops += 1
        elif kind is Reconnected:
            TOTALS.reconnects += 1

    def on_stop(self) -> None:
        if self.client is not None:
            try:
                self.bridge.call(self.client.close(), 10)
            except Exception:
                pass  # the run is ending; an unclean close is not a result

    def timed(self, name: str, operation: Awaitable[Any]) -> None:
        ms, _, error = self.bridge.call(_timed(operation), CALL_TIMEOUT_S)
        self.report(name, ms, error)

    def report(self, name: str, ms: float, error: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_time=ms, response_length=0, exception=error
        )


class ViewerUser(LiveChatUser):
    """Joins a stream and reads it; the asyncio thread counts every comment it receives."""

    weight = SETTINGS.viewer_weight
    kind = "viewer"
    # A viewer has nothing to do on the greenlet side: its socket is served on the asyncio thread.
    wait_time = constant(60)

    def on_start(self) -> None:
        self.samples_latency = next(_viewers) < self.environment.parsed_options.livechat_latency_viewers
        super().on_start()

    def on_event(self, event: Event) -> None:
        if type(event) is Comment:
            TOTALS.deliveries += 1
            if self.samples_latency and event.source == "tick":
                assert isinstance(event, Comment)
                TOTALS.latencies_ms.append(time.time() * 1000 - event.ts_ms)
            return
        super().on_event(event)

    @task
    def watch(self) -> None:
        """Reading happens on the asyncio thread."""


class PosterUser(LiveChatUser):
    """Posts a comment every ``LoadTestConfig.post_interval_s`` seconds and times its ack."""

    weight = SETTINGS.poster_weight
    kind = "poster"
    role = SETTINGS.poster_role
    wait_time = between(*SETTINGS.post_interval_s)

    @task
    def post(self) -> None:
        assert self.client is not None
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < SETTINGS.comment_chars:
            words.append(random.choice(WORDS))
        self.timed(POST, self.client.post(self.stream, " ".join(words)))


class ReactorUser(LiveChatUser):
    """Sends a reaction every ``LoadTestConfig.react_interval_s`` seconds."""

    weight = SETTINGS.reactor_weight
    kind = "reactor"
    wait_time = between(*SETTINGS.react_interval_s)

    @task
    def react(self) -> None:
        assert self.client is not None
        self.timed(REACT, self.client.react(self.stream, random.choice(list(REACTIONS))))
