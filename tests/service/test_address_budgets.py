"""Anonymous clients' request budgets are per source address, through a real `livechat serve`
and real WebSocket clients: many anonymous connections from one address share one budget, and
``X-Forwarded-For`` / ``Forwarded`` move a client to another address only when the connection
comes from a configured trusted proxy (``edge.trusted_proxies``).

The budget under test: history pages, 1 000 per connection and ``PER_ADDRESS`` per address per
minute (a refill of one page every 12 s, so a test's few seconds see at most one more). Each test
uses its own source addresses (127.0.0.0/8 is all loopback on Linux), as budgets outlive a test
within the module's server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.service.serve_process import Client, ServeProcess

PER_ADDRESS = 5
LIMITS = (
    "--set",
    "chat.limits.history_pages_per_minute=1000",
    "--set",
    f"chat.limits.history_pages_per_minute_per_user={PER_ADDRESS}",
)
PROXY = "127.0.0.1"


def _serve(tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str) -> Iterator[ServeProcess]:
    proc = ServeProcess(tmp_path_factory.mktemp(name) / "data", *LIMITS, *extra).start()
    yield proc
    proc.stop()
    proc.assert_no_tracebacks()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """No trusted proxy (the default)."""
    yield from _serve(tmp_path_factory, "direct")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Behind a trusted proxy at 127.0.0.1."""
    yield from _serve(tmp_path_factory, "proxied", "--set", f'edge.trusted_proxies=["{PROXY}/32"]')


async def anonymous(
    serve: ServeProcess, source: str, stream: str, headers: dict[str, str] | None = None
) -> Client:
    """An anonymous client connected from ``source`` (a loopback address), joined to ``stream``."""
    client = await Client.connect(
        serve.url(), additional_headers=list((headers or {}).items()), local_addr=(source, 0)
    )
    await client.join(stream)
    return client


async def pages(clients: list[Client], stream: str, rounds: int) -> list[dict[str, Any]]:
    """``rounds`` history requests from each client in turn; the replies."""
    return [await c.call("history", stream=stream, limit=5) for _ in range(rounds) for c in clients]


def served(replies: list[dict[str, Any]]) -> int:
    refused = [r for r in replies if r["t"] != "history"]
    for r in refused:
        assert r["t"] == "err" and r["code"] == "rate_limited" and r["retry_ms"] > 0, r
    return len(replies) - len(refused)


async def test_anonymous_connections_from_one_address_share_one_budget(direct: ServeProcess) -> None:
    crowd = [await anonymous(direct, "127.0.0.11", "crowd") for _ in range(4)]
    # 12 requests: each connection is far below its own 1 000, the address has 5.
    assert PER_ADDRESS <= served(await pages(crowd, "crowd", 3)) <= PER_ADDRESS + 1
    # Another address, and a signed-in user on the same one, have budgets of their own.
    neighbour = await anonymous(direct, "127.0.0.12", "crowd")
    assert served(await pages([neighbour], "crowd", 3)) == 3
    signed_in = await Client.connect(direct.url(direct.token("ann")), local_addr=("127.0.0.11", 0))
    await signed_in.join("crowd")
    assert served(await pages([signed_in], "crowd", 3)) == 3


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored(direct: ServeProcess) -> None:
    spoofers = [
        await anonymous(direct, "127.0.0.21", "spoof", {"X-Forwarded-For": f"198.51.100.{i}"})
        for i in range(3)
    ]
    spoofers.append(await anonymous(direct, "127.0.0.21", "spoof", {"Forwarded": "for=198.51.100.9"}))
    assert PER_ADDRESS <= served(await pages(spoofers, "spoof", 3)) <= PER_ADDRESS + 1


async def test_a_trusted_proxy_names_the_client(proxied: ServeProcess) -> None:
    # Through the proxy (127.0.0.1): each forwarded client address has its own budget ...
    one = [await anonymous(proxied, PROXY, "via", {"X-Forwarded-For": "198.51.100.31"}) for _ in range(3)]
    other = await anonymous(proxied, PROXY, "via", {"Forwarded": 'for="198.51.100.32:4711"'})
    assert PER_ADDRESS <= served(await pages(one, "via", 4)) <= PER_ADDRESS + 1
    assert served(await pages([other], "via", 3)) == 3
    # ... and what a client wrote left of the proxy's own entry is not believed: still .31.
    padded = await anonymous(proxied, PROXY, "via", {"X-Forwarded-For": "203.0.113.1, 198.51.100.31"})
    assert served(await pages([padded], "via", 2)) <= 1


async def test_a_peer_outside_the_trusted_proxies_is_not_believed(proxied: ServeProcess) -> None:
    # 127.0.0.41 is not a trusted proxy: its clients share 127.0.0.41's budget whatever they claim.
    claims = [
        await anonymous(proxied, "127.0.0.41", "direct", {"X-Forwarded-For": f"198.51.100.{40 + i}"})
        for i in range(4)
    ]
    assert PER_ADDRESS <= served(await pages(claims, "direct", 3)) <= PER_ADDRESS + 1


def test_client_ip_and_budget_owner() -> None:
    from livechat.auth import Principal
    from livechat.services.limits import budget_owner, client_ip
    from livechat.services.sessions import Session

    assert client_ip("127.0.0.1:5000") == "127.0.0.1"
    assert client_ip("[2001:db8::1]:5000") == "2001:db8::1"
    assert client_ip("2001:db8::1") == "2001:db8::1"
    assert client_ip("[::ffff:192.0.2.1]:80") == "192.0.2.1"
    assert client_ip("") is None and client_ip(None) is None and client_ip("unknown") is None
    anonymous = Principal(None, "anonymous")
    assert budget_owner(Session(1, anonymous, address="192.0.2.1")) == "a:192.0.2.1"
    # One IPv6 /64 is one budget; another /64 another.
    a = budget_owner(Session(1, anonymous, address="2001:db8:0:1::5"))
    assert a == budget_owner(Session(2, anonymous, address="2001:db8:0:1:ffff::9")) == "a:2001:db8:0:1::/64"
    assert a != budget_owner(Session(3, anonymous, address="2001:db8:0:2::5"))
    assert budget_owner(Session(1, anonymous)) is None
