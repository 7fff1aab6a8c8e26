"""Issue 12's moderator features across two `livechat serve` edges on one real Redis (broker and
registry): a kick decided on edge B closes the target's connections on edge A; `livechat follow`
against the cluster's PostgreSQL meta store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

from livechat.backends import open_meta

from tests.cluster_services import service_url
from tests.service.conftest import StartServe
from tests.service.serve_process import Client, ServeProcess

STREAM = "audience-s1"


async def joined(edge: ServeProcess, user: str, role: str = "viewer", **claims: object) -> Client:
    client = await Client.connect(edge.url(edge.token(user, role, **claims)))
    await client.join(STREAM)
    return client


async def test_a_kick_on_one_edge_closes_the_target_on_another(start_edge: StartServe) -> None:
    a, b = start_edge("a", 1), start_edge("b", 2)
    target = await joined(a, "kevin")
    watcher = await joined(a, "wanda")
    mod = await joined(b, "mia", streams={STREAM: "moderator"})
    ok = await mod.call("kick", stream=STREAM, user="kevin")
    assert ok == {"t": "ok", "rid": ok["rid"], "op": "kick"}
    assert (await target.reply("notice"))["code"] == "kicked"
    assert await target.closed() == 4010
    await watcher.event("kick", u="kevin")
    back = await joined(a, "kevin")  # no ban anywhere
    ack = await back.call("post", stream=STREAM, text="hello again", cmid="k1")
    assert ack["t"] == "ack"


def test_cli_follow_on_postgresql() -> None:
    """`livechat follow` records a follow in the cluster's meta store (PostgreSQL)."""
    url = service_url("postgres")
    fan = f"pg-fan-{uuid.uuid4().hex[:8]}"  # the shared database keeps earlier runs' follows
    for args in (
        ("migrate", "--meta", url),
        ("follow", "pg-channel", fan, "--since", "1000", "--meta", url),
    ):
        done = subprocess.run([sys.executable, "-m", "livechat.cli", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    async def read() -> float | None:
        meta = await open_meta(url)
        try:
            return await meta.followed_since("pg-channel", fan)
        finally:
            await meta.aclose()

    assert asyncio.run(read()) == 1000.0
