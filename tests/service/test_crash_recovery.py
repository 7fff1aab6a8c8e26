"""An ack means it is there after a crash: kill -9 right after the last ack, restart, and history
holds every acked comment (the log is replayed into history from its watermark before the edge
accepts connections), and a retry of an acked `cmid` answers `dup` with a comment that reads back.

Before the replay existed, a burst of 500 posts killed after the last ack left history with 0 of
the log's 500 records (issue 13)."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from tests.service.serve_process import Client, ServeProcess

STREAM = "crash"
#: Trials in CI; `LIVECHAT_CRASH_TRIALS=20` (or more) for the long form.
TRIALS = int(os.environ.get("LIVECHAT_CRASH_TRIALS", "4"))


def owner_token(edge: ServeProcess) -> str:
    return edge.token("owner", "viewer", streams={STREAM: "broadcaster"})


async def post_burst(client: Client, start: int, count: int) -> list[int]:
    """Pipelined posts (no wait between them), then every ack: the acked ids."""
    for i in range(start, start + count):
        await client.send(op="post", stream=STREAM, text=f"c{i}", cmid=f"c{i}", rid=i + 1)
    ids = []
    for _ in range(count):
        ack = await client.reply("ack", timeout=20)
        ids.append(ack["id"])
    return ids


async def all_history(client: Client) -> list[int]:
    ids: list[int] = []
    before = None
    while True:
        fields = {"stream": STREAM, "limit": 100, **({"before": before} if before else {})}
        page = await client.call("history", **fields)
        ids += [c["id"] for c in page["items"]]
        if not page["more"]:
            return ids
        before = ids[-1]


@pytest.mark.parametrize("trial", range(TRIALS))
async def test_every_acked_comment_is_in_history_after_kill_9(tmp_path: Path, trial: int) -> None:
    data = tmp_path / "data"
    rng = random.Random(trial)
    extra = ("--set", "chat.limits.comments_per_minute_broadcaster=0")
    edge = ServeProcess(data, *extra).start()
    try:
        poster = await Client.connect(
            edge.url(edge.token("owner", "viewer", streams={STREAM: "broadcaster"}))
        )
        await poster.join(STREAM)
        acked: list[int] = []
        # Bursts of random size, the kill right after the last ack of the last one.
        for burst in range(rng.randint(1, 3)):
            acked += await post_burst(poster, burst * 1000, rng.choice((50, 200, 500)))
    finally:
        edge.stop(signal.SIGKILL)
        await Client.close_all()
    again = ServeProcess(data, *extra, port=edge.port).start()
    try:
        reader = await Client.connect(
            again.url(again.token("owner", "viewer", streams={STREAM: "broadcaster"}))
        )
        await reader.join(STREAM)
        stored = set(await all_history(reader))
        assert not set(acked) - stored, f"{len(set(acked) - stored)} of {len(acked)} acked comments lost"
        # A retry of an acked cmid is a duplicate of a comment that can be read back.
        dup = await reader.call("post", stream=STREAM, text="c0", cmid="c0")
        assert dup["t"] == "ack" and dup["dup"] is True and dup["id"] in stored
    finally:
        again.stop()
        await Client.close_all()
