"""Fixtures for the chat-domain unit tests (helpers live in chat_harness.py).

Storage is real: the embedded backends (SQLite in a temp dir, in-process broker and registry), opened
exactly as ``livechat serve`` opens them. The edge is the one thing replaced: ``RecordingOutbox``
implements the services' ``Outbox`` port and records what would have gone on the wire.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop
from chat_harness import Ed25519Keys, Harness, RecordingOutbox, chat_config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from livechat.backends import Backends, open_backends
from livechat.config import BackendConfig, ChatConfig
from livechat.services.chat import ChatService
from livechat.services.clock import ManualClock


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Run on uvloop, the loop livechat serves on."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall=time.time())


@pytest.fixture
def outbox() -> RecordingOutbox:
    return RecordingOutbox()


@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[Backends]:
    name = uuid.uuid4().hex[:12]
    config = BackendConfig(data_dir=str(tmp_path), broker=f"memory://{name}", registry=f"memory://{name}")
    opened = await open_backends(config, edge_id=f"edge-{name}")
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture(scope="session")
def ed_keys() -> Ed25519Keys:
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Ed25519Keys(private, pem.decode())


@pytest.fixture
async def make_harness(backends: Backends, clock: ManualClock) -> AsyncIterator[Callable[..., Any]]:
    made: list[Harness] = []

    async def build(config: ChatConfig | None = None, **kwargs: Any) -> Harness:
        outbox = RecordingOutbox()
        chat = ChatService(
            config or chat_config(),
            outbox,
            log=backends.log,
            history=backends.history,
            meta=backends.meta,
            clock=clock,
            **kwargs,
        )
        await chat.start(periodic=False)
        harness = Harness(chat, outbox, clock, backends)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        await harness.chat.aclose()
