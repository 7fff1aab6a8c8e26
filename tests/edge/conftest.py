"""Fixtures for the edge-core tests: a real ``livechat._edge.Edge`` started in this process on an
ephemeral port (port 0) with an ``EdgeConfig``, stopped after the test; real clients against it.

Every test gets its own edge, so one test's bad input can never leak into another's counters.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvloop
from livechat._edge import Edge
from livechat.config import EdgeConfig

# The helpers sit beside the tests (no package: tests/ has none), importable by their names.
sys.path.insert(0, str(Path(__file__).parent))

from edge_clients import AppEvents, EchoProbe, StartEdge, open_peer

# Teardown: clients are closed or abandoned by then; the edge need not wait for their replies.
STOP_DRAIN_MS = 500


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Run on uvloop, the loop livechat serves on."""
    return {"uvloop": uvloop.new_event_loop}


def edge_config(**overrides: Any) -> EdgeConfig:
    """``EdgeConfig`` defaults on an ephemeral loopback port, with the test's overrides."""
    return dataclasses.replace(EdgeConfig(), host="127.0.0.1", port=0, **overrides)


@pytest.fixture
def start_edge() -> Iterator[StartEdge]:
    """``start_edge(mode="echo", max_message_bytes=...)``: a started edge, stopped at teardown."""
    started: list[Edge] = []

    def start(**overrides: Any) -> Edge:
        edge = Edge(edge_config(**overrides).to_core())
        port = edge.start()
        assert port > 0 and edge.port == port
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.stop(STOP_DRAIN_MS)


@pytest.fixture
def echo_edge(start_edge: StartEdge) -> Edge:
    return start_edge(mode="echo")


@pytest_asyncio.fixture
async def probe(echo_edge: Edge) -> AsyncIterator[EchoProbe]:
    """A healthy websockets client on ``echo_edge`` (the bad-input tests' bystander)."""
    peer = await open_peer("websockets", echo_edge.port)
    yield EchoProbe(peer)
    await peer.close()


@pytest_asyncio.fixture
async def start_app(start_edge: StartEdge) -> AsyncIterator[Callable[..., tuple[Edge, AppEvents]]]:
    """``start_app(**overrides)``: an app-mode edge and its event pump on this loop."""
    pumps: list[AppEvents] = []

    def start(**overrides: Any) -> tuple[Edge, AppEvents]:
        edge = start_edge(mode="app", **overrides)
        pump = AppEvents(edge)
        pumps.append(pump)
        return edge, pump

    yield start
    for pump in pumps:
        pump.detach()


@pytest.fixture(autouse=True)
def abort_raw_clients() -> Iterator[None]:
    """Close the raw connections a test left open (it may end on the server's close)."""
    yield
    from edge_wire import RawClient

    for client in list(RawClient.opened):
        client.abort()
