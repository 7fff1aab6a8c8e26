"""A scripted chat run against `livechat serve --config FILE`, then /metrics checked number by number
against what the script did.

The config file (``CONFIG``) makes every outcome reachable in seconds: a viewer may post 3
comments a minute, texts are at most 40 characters, "spamword" is blocked, the classifier is a
real HTTP endpoint in this process (``tests/unit/classifier_server.py``) whose breaker opens after
2 failures, and a stream is sampled from 8 comments/s on. Tokens come from `livechat token`.

The script, and what each step must add:

- 6 connections: alice (moderator) on s1, alice2 (same user) on s2, bob, carol and anon on s1, one
  forged token -> accepted 6, auth_invalid 1, sessions 5, joins 5 (a repeated join adds none).
- bob: hello, spamword, 41 characters, second, third, hello again -> accepted 2; rejected,
  text_too_long, rate_limited; 1 duplicate. anon posts -> read_only; carol posts to a stream she
  has not joined -> not_joined.
- carol: "iffy remark", "toxic stuff" -> accepted 2; classifier verdicts flag 1, reject 1 (a
  tombstone to every s1 viewer).
- alice: 4 comments on s1. alice2: 40 comments on s2 in one second -> tier 1, some sampled out.
- the classifier breaks: alice posts 2 (errors 2, breaker opens), then 1 more (skipped).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets

from tests.ops.ops_helpers import Metrics, OpsServe, scrape
from tests.service.serve_process import Client
from tests.unit.classifier_server import ClassifierServer

CONFIG = """
[chat.limits]
comments_per_minute_viewer = 3
max_text_chars = 40

[chat.moderation]
blocked_terms = ["spamword"]
classifier_url = "{classifier}"
breaker_failures = 2
breaker_open_s = 120.0

[chat.sampling]
tiers = [[8.0, 0.5]]

[ops]
broker_probe_interval_s = 0.2
log_format = "json"
"""
S2_POSTS = 40


async def connect(serve: OpsServe, token: str | None) -> Client:
    # No client pings: they would not change the counters checked, but keep the run exact.
    return await Client.connect(serve.url(token), ping_interval=None)


async def post(client: Client, stream: str, text: str, cmid: str) -> dict[str, object]:
    reply = await client.call("post", stream=stream, text=text, cmid=cmid)
    assert reply["t"] in ("ack", "err"), reply
    return reply


async def settle(serve: OpsServe, done: object, timeout: float = 10.0) -> Metrics:
    """Scrape until ``done(metrics)`` holds (the classifier works after the broadcast)."""
    assert callable(done)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        metrics = await asyncio.to_thread(scrape, serve.admin_port)
        if done(metrics):
            return metrics
        if loop.time() > deadline:
            raise AssertionError("metrics did not settle")
        await asyncio.sleep(0.05)


def classifier_calls(m: Metrics) -> float:
    return m.total("livechat_moderation_classifier_calls_total") + m.value(
        "livechat_moderation_skipped_total", reason="backlog"
    )


@pytest.fixture
async def classifier() -> ClassifierServer:
    server = ClassifierServer()
    await server.start()
    yield server
    await server.stop()


async def test_metrics_count_what_the_script_did(tmp_path: Path, classifier: ClassifierServer) -> None:
    config = tmp_path / "livechat.toml"
    config.write_text(CONFIG.format(classifier=classifier.url))
    serve = OpsServe(tmp_path / "data", config).start()
    try:
        await run_script(serve, classifier)
    finally:
        code = serve.stop()
    assert code == 0, serve.log_text()
    # Structured logs: every line the process wrote is one JSON object; the lifecycle is there.
    lines = [json.loads(line) for line in serve.log_text().splitlines() if line.strip()]
    events = [line.get("event") for line in lines]
    for event in ("serving", "signal", "draining", "stopped"):
        assert event in events, events
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)


async def run_script(serve: OpsServe, classifier: ClassifierServer) -> None:
    alice_token = serve.mint("alice", "--role", "moderator")
    alice = await connect(serve, alice_token)
    alice2 = await connect(serve, alice_token)
    bob = await connect(serve, serve.mint("bob"))
    carol = await connect(serve, serve.mint("carol", "--name", "Carol"))
    anon = await connect(serve, None)
    forged = await connect(serve, "not.a.token")
    assert (await forged.reply("err"))["code"] == "auth_invalid"
    with pytest.raises(websockets.ConnectionClosed):
        await forged.recv()
    assert forged.ws.close_code == 4002

    s1 = [alice, bob, carol, anon]
    for client in s1:
        await client.join("s1")
    await alice2.join("s2")
    await carol.join("s1")  # a repeated join resends the snapshot; it subscribes nothing new

    async def bob_posts(text: str, cmid: str) -> str:
        reply = await post(bob, "s1", text, cmid)
        return "ack" if reply["t"] == "ack" else str(reply["code"])

    assert await bob_posts("hello", "b1") == "ack"
    assert await bob_posts("buy spamword now", "b2") == "rejected"
    assert await bob_posts("x" * 41, "b3") == "text_too_long"
    assert await bob_posts("second", "b4") == "ack"
    assert await bob_posts("third", "b5") == "rate_limited"
    repost = await post(bob, "s1", "hello", "b1")
    assert repost["t"] == "ack" and repost.get("dup") is True
    assert (await post(anon, "s1", "hi", "n1"))["code"] == "read_only"
    assert (await post(carol, "s9", "hi", "c0"))["code"] == "not_joined"
    assert (await post(carol, "s1", "iffy remark", "c1"))["t"] == "ack"
    toxic = await post(carol, "s1", "toxic stuff", "c2")
    assert toxic["t"] == "ack"
    for i in range(4):
        assert (await post(alice, "s1", f"a{i}", f"a{i}"))["t"] == "ack"

    # s2: 40 comments/s for a second -> tier 1 (50 % broadcast) once two 0.25 s slices are in.
    for i in range(S2_POSTS):
        await alice2.send(op="post", stream="s2", text=f"fast {i}", cmid=f"f{i}", rid=1000 + i)
        await asyncio.sleep(1.0 / S2_POSTS)
    acks = [await alice2.reply("ack") for _ in range(S2_POSTS)]
    assert len({a["id"] for a in acks}) == S2_POSTS
    hot = await asyncio.to_thread(scrape, serve.admin_port)
    assert hot.value("livechat_sampling_tier", stream="s2") == 1
    assert hot.value("livechat_stream_comment_rate", stream="s2") >= 8.0
    assert hot.value("livechat_sampling_tier", stream="s1") == 0

    # Every s1 comment so far reviewed (flag + reject among them) before the classifier breaks.
    ok_calls = 8 + S2_POSTS
    await settle(serve, lambda m: classifier_calls(m) == ok_calls)
    classifier.fail = True
    for i in range(2):
        assert (await post(alice, "s1", f"b{i}", f"bf{i}"))["t"] == "ack"
    await settle(serve, lambda m: m.value("livechat_moderation_breaker_state", state="open") == 1)
    assert (await post(alice, "s1", "b2", "bf2"))["t"] == "ack"

    # Wait until every viewer of s1 holds the 11 comments and the tombstone, alice2 her 40.
    s1_comments = 4 + 2 + 2 + 3
    for client in s1:
        await client.wait(
            lambda c=client: (
                len(c.comment_events()) >= s1_comments and any(e.get("k") == "del" for e in c.events)
            ),
            what="every s1 event",
        )
    await alice2.wait(
        lambda: (
            len(alice2.comment_events()) + len([e for e in alice2.direct if e.get("k") == "c"]) >= S2_POSTS
        ),
        what="every s2 comment",
    )
    m = await settle(
        serve, lambda m: m.value("livechat_moderation_skipped_total", reason="breaker_open") == 1
    )
    sampled_out = m.value("livechat_comments_sampled_out_total")
    assert 0 < sampled_out < S2_POSTS
    assert len(alice2.comment_events()) == S2_POSTS - sampled_out  # the rest reached her directly

    # Connections (edge counters summed over I/O threads) and sessions.
    assert m.total("livechat_connections_accepted_total") == 6
    assert m.total("livechat_connections") == 5
    assert m.value("livechat_sessions") == 5
    assert m.value("livechat_auth_refused_total", code="auth_invalid") == 1
    assert m.value("livechat_joins_total") == 5
    assert m.value("livechat_rooms") == 2
    # Client messages: 6 joins, 7 + 40 alice posts, 6 bob, 1 anon, 3 carol.
    assert m.total("livechat_messages_in_total") == 6 + 47 + 6 + 1 + 3

    # Comments.
    accepted = s1_comments + S2_POSTS
    assert m.value("livechat_comments_accepted_total") == accepted
    assert m.value("livechat_comments_duplicate_total") == 1
    assert m.value("livechat_comments_shadowed_total") == 0
    refused = {k: v for k, v in m.labelled("livechat_comments_rejected_total", "reason").items() if v}
    assert refused == {"rejected": 1, "text_too_long": 1, "rate_limited": 1, "read_only": 1, "not_joined": 1}
    errors = m.labelled("livechat_error_replies_total", "code")
    assert errors == refused

    # Deliveries: events written inside tick frames, one per event per subscriber. s1: 4 viewers x
    # (11 comments + 1 tombstone); s2: alice2 x the comments left in the tick.
    assert m.total("livechat_deliveries_total") == 4 * (s1_comments + 1) + (S2_POSTS - sampled_out)
    assert m.value("livechat_events_published_total") == accepted - sampled_out + 1
    assert m.value("livechat_tick_frames_built_total") >= 1
    assert m.value("livechat_tick_build_seconds_total") > 0
    assert m.total("livechat_slow_consumer_skipped_ticks_total") == 0
    assert m.total("livechat_slow_consumer_closes_total") == 0
    assert m.total("livechat_send_queue_bytes") == 0

    # Moderation: 48 calls answered (or, on a slow machine, skipped as too late), 2 errors, breaker
    # open, 1 skip; carol's two comments are the flag and the reject.
    ok = m.value("livechat_moderation_classifier_calls_total", outcome="ok")
    assert (
        classifier_calls(m) - m.value("livechat_moderation_classifier_calls_total", outcome="error")
        == ok_calls
    )
    assert m.value("livechat_moderation_classifier_calls_total", outcome="error") == 2
    assert m.value("livechat_moderation_classifier_calls_total", outcome="timeout") == 0
    assert m.value("livechat_moderation_verdicts_total", decision="flag") == 1
    assert m.value("livechat_moderation_verdicts_total", decision="reject") == 1
    assert m.value("livechat_moderation_verdicts_total", decision="accept") == ok - 2
    assert m.value("livechat_moderation_classifier_seconds_count") == ok + 2
    assert m.value("livechat_moderation_classifier_seconds_sum") > 0
    assert m.value("livechat_moderation_breaker_state", state="open") == 1
    assert m.value("livechat_moderation_breaker_state", state="closed") == 0
    deleted = [e for e in bob.events if e.get("k") == "del"]
    assert [e["id"] for e in deleted] == [toxic["id"]]

    # Broker: every accepted comment and the tombstone went to the broker; the probe runs.
    assert m.value("livechat_broker_published_events_total") == accepted + 1
    # Events published together share one round trip.
    assert 1 <= m.value("livechat_broker_publish_seconds_count") <= accepted + 1
    assert m.value("livechat_broker_publish_errors_total") == 0
    assert m.value("livechat_broker_probe_seconds_count") >= 1
    assert m.value("livechat_broker_up") == 1

    # The process.
    assert m.value("livechat_ready") == 1 and m.value("livechat_draining") == 0
    assert m.value("process_resident_memory_bytes") > 10_000_000
    assert m.value("process_max_fds") >= 1024
    assert m.types["livechat_deliveries"] == "counter"  # the parser strips _total
    for client in (alice, alice2, bob, carol, anon):
        await client.close()
