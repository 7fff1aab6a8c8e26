"""Budgets of the requests that cost the server (issue 13): history pages, joins, reports, likes.

Each takes a token per connection and per user (anonymous: per source address); past either the
request is answered ``rate_limited`` with ``retry_ms``, and a client that keeps going is closed
once its error replies pass ``max_errors_per_minute``. Before the budgets, 4 anonymous clients
paged history at 1 595 pages/s, one viewer filed 5 000 reports in 1.1 s and one anonymous client
opened 50 000 rooms: each test below fails on that code.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from chat_harness import Harness, chat_config
from livechat.auth import Principal
from livechat.config import LimitsConfig
from livechat.protocol import CloseCode
from livechat.services.limits import Budget, RequestBudgets, budget_owner

SMALL = LimitsConfig(
    history_pages_per_minute=5,
    history_pages_per_minute_per_user=8,
    joins_per_minute=4,
    joins_per_minute_per_user=6,
    reports_per_minute=3,
    reports_per_minute_per_user=4,
    likes_per_minute=6,
    likes_per_minute_per_user=10,
)


def errors(h: Harness, conn: int) -> list[Any]:
    return [m for m in h.outbox.take(conn) if m["t"] == "err"]


async def test_history_pages_per_connection_then_per_user(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(limits=SMALL))
    first, second = h.connect("reader"), h.connect("reader")
    for conn in (first, second):
        await h.join(conn)
    for _ in range(5):
        await h.send(first, "history", stream="s1", rid=1)
    assert [m["t"] for m in h.outbox.take(first)] == ["history"] * 5
    await h.send(first, "history", stream="s1", rid=2)
    [refused] = errors(h, first)
    # 5 per minute: the next token in 12 s.
    assert refused["code"] == "rate_limited" and refused["rid"] == 2
    assert 11_900 <= refused["retry_ms"] <= 12_000
    # The user's other connection has its own connection budget, but shares the user's 8.
    for _ in range(4):
        await h.send(second, "history", stream="s1")
    assert [m["t"] for m in h.outbox.take(second)] == ["history", "history", "history", "err"]
    h.clock.advance(refused["retry_ms"] / 1000)
    await h.send(first, "history", stream="s1")
    assert h.outbox.take(first)[-1]["t"] == "history"


async def test_a_history_flood_is_refused_then_closed(make_harness: Any) -> None:
    h: Harness = await make_harness()
    anon = h.connect()
    await h.join(anon)
    for _ in range(60 + 61):  # the default budget, then past max_errors_per_minute (60)
        await h.send(anon, "history", stream="s1", limit=100)
    replies = h.outbox.take(anon)
    assert [m["t"] for m in replies[:60]] == ["history"] * 60
    assert {m["code"] for m in replies[60:]} == {"rate_limited"}
    assert h.outbox.closed[anon][0] == CloseCode.TOO_MANY_ERRORS


async def test_joins_per_connection(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(limits=SMALL))
    anon = h.connect()
    for i in range(10):
        await h.send(anon, "join", stream=f"name-{i}", rid=i)
        await h.send(anon, "leave", stream=f"name-{i}")
    replies = h.outbox.take(anon)
    assert [m["t"] for m in replies if m.get("rid") is not None] == ["snapshot"] * 4 + ["err"] * 6
    assert {m["code"] for m in replies if m["t"] == "err"} == {"rate_limited", "not_joined"}
    # Refused joins open no room: one anonymous client cannot fill memory with rooms.
    assert len(h.chat.context.rooms.rooms()) == 4


async def test_reports_per_user(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(limits=SMALL))
    viewer, other_tab = h.connect("viewer"), h.connect("viewer")
    for conn in (viewer, other_tab):
        await h.join(conn)
    for _ in range(50):
        await h.send(viewer, "report", stream="s1", user="target", reason="spam")
    for _ in range(5):
        await h.send(other_tab, "report", stream="s1", user="target", reason="spam")
    assert len(await h.backends.meta.list_reports("s1", 1000)) == 4  # the user's budget
    [first, *rest] = errors(h, viewer)[:1] + errors(h, other_tab)
    assert first["code"] == "rate_limited" and first["retry_ms"] > 0
    assert all(m["code"] == "rate_limited" for m in rest)


async def test_likes_have_their_own_budget(make_harness: Any) -> None:
    h: Harness = await make_harness(chat_config(limits=SMALL))
    author, fan = h.connect("author"), h.connect("fan")
    for conn in (author, fan):
        await h.join(conn)
    ack = await h.post(author, "like me")
    h.outbox.take(fan)
    for i in range(8):
        await h.send(fan, "like" if i % 2 == 0 else "unlike", stream="s1", id=ack["id"], rid=i)
    replies = [m for m in h.outbox.take(fan) if m.get("rid") is not None]
    assert [m["t"] for m in replies] == ["ok"] * 6 + ["err"] * 2
    assert replies[-1]["code"] == "rate_limited" and 9_900 <= replies[-1]["retry_ms"] <= 10_000
    # Reactions keep their own bucket.
    await h.send(fan, "react", stream="s1", emoji="heart", rid=99)
    assert h.outbox.take(fan)[-1] == {"t": "ok", "op": "react", "rid": 99}


def test_anonymous_connections_share_their_address_budget() -> None:
    budgets = RequestBudgets(SMALL)
    anon = SimpleNamespace(principal=Principal(None, "anonymous"), address="203.0.113.7")
    assert budget_owner(anon) == "a:203.0.113.7"  # type: ignore[arg-type]
    owner = budget_owner(anon)  # type: ignore[arg-type]
    # Each connection may take 5; together one address takes the per-user 8.
    taken = [budgets.take(Budget.HISTORY, conn, owner, 0.0) == 0.0 for conn in (1, 1, 1, 2, 2, 2, 3, 3, 3)]
    assert taken == [True] * 8 + [False]
    assert budgets.take(Budget.HISTORY, 4, None, 0.0) == 0.0  # no address known: the connection's only
    assert budgets.prune(3600.0) == 5  # connections 1-4 and the address


def test_budgets_read_their_keys_and_zero_is_unlimited() -> None:
    for budget in Budget:
        assert hasattr(LimitsConfig, f"{budget.value}_per_minute")
    budgets = RequestBudgets(LimitsConfig(likes_per_minute=0, likes_per_minute_per_user=0))
    assert all(budgets.take(Budget.LIKE, 1, "u:x", 0.0) == 0.0 for _ in range(10_000))
