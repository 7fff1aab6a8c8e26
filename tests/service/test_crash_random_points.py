"""kill -9 at a random moment while comments are being posted and acked, restart, and every comment
the authors saw acked is in history (issue 13). Unlike ``test_crash_recovery`` (killed right after
the last ack), the kill lands mid-batch: posts admitted but not stored, batches stored but not yet
in history, acks on the wire.

Two ways of posting: ``burst`` (authors pipeline hundreds of posts at once) and ``steady`` (each
author posts at a fixed rate with a few in flight). CI runs 3 trials of each;
``LIVECHAT_CRASH_TRIALS=20`` (or more) is the long form.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.service.serve_process import Client, ServeProcess

STREAM = "crash-mid"
AUTHORS = 3
TRIALS = int(os.environ.get("LIVECHAT_CRASH_TRIALS", "3"))
# No comment limit for the authors, no page budget for the reader (thousands of comments).
EXTRA = (
    "--set",
    "chat.limits.comments_per_minute_broadcaster=0",
    "--set",
    "chat.limits.history_pages_per_minute=0",
    "--set",
    "chat.limits.history_pages_per_minute_per_user=0",
)


class Acks:
    """Every id acked so far; ``reached`` is set once there are ``kill_after`` of them."""

    def __init__(self, kill_after: int) -> None:
        self.ids: set[int] = set()
        self.kill_after = kill_after
        self.reached = asyncio.Event()

    def add(self, comment_id: int) -> None:
        self.ids.add(comment_id)
        if len(self.ids) >= self.kill_after:
            self.reached.set()


async def author(client: Client, name: str, mode: str, acked: Acks) -> None:
    """Post until the connection dies; every ack received goes into ``acked``."""
    sent = 0

    async def read_acks() -> None:
        while True:
            message = await client.recv(30)
            if message.get("t") == "ack":
                acked.add(message["id"])

    reader = asyncio.create_task(read_acks())
    try:
        while not reader.done():
            if mode == "burst":
                for _ in range(250):
                    await client.send(op="post", stream=STREAM, text=f"{name} {sent}", cmid=f"{name}-{sent}")
                    sent += 1
                await asyncio.sleep(0.05)
            else:
                await client.send(op="post", stream=STREAM, text=f"{name} {sent}", cmid=f"{name}-{sent}")
                sent += 1
                await asyncio.sleep(0.002)
    except Exception:
        pass  # the server was killed
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def history_ids(client: Client) -> set[int]:
    ids: set[int] = set()
    before = None
    while True:
        fields = {"stream": STREAM, "limit": 100, **({"before": before} if before else {})}
        page = await client.call("history", **fields)
        ids.update(c["id"] for c in page["items"])
        if not page["more"]:
            return ids
        before = page["items"][-1]["id"]


@pytest.mark.parametrize("mode", ["burst", "steady"])
@pytest.mark.parametrize("trial", range(TRIALS))
async def test_acked_comments_survive_a_kill_at_a_random_moment(
    tmp_path: Path, mode: str, trial: int
) -> None:
    rng = random.Random(f"{mode}-{trial}")
    data = tmp_path / "data"
    edge = ServeProcess(data, *EXTRA).start()
    # Bursts: the kill follows a random ack at once (most likely while its batch is still on its
    # way into history); steady posting: at a random time.
    acked = Acks(rng.randint(1, 3000) if mode == "burst" else 1 << 60)
    started = time.monotonic()
    try:
        authors = []
        for i in range(AUTHORS):
            client = await edge.client(f"author-{i}", streams={STREAM: "broadcaster"})
            await client.join(STREAM)
            authors.append(asyncio.create_task(author(client, f"a{i}", mode, acked)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(acked.reached.wait(), rng.uniform(0.3, 2.0) if mode == "steady" else 20)
    finally:
        edge.stop(signal.SIGKILL)
    await asyncio.gather(*authors, return_exceptions=True)
    await Client.close_all()
    assert acked.ids, f"nothing was acked in {time.monotonic() - started:.1f} s"
    again = ServeProcess(data, *EXTRA, port=edge.port).start()
    try:
        reader = await again.client("reader", streams={STREAM: "broadcaster"})
        await reader.join(STREAM)
        stored = await history_ids(reader)
        lost = acked.ids - stored
        assert not lost, f"{len(lost)} of {len(acked.ids)} acked comments are not in history"
    finally:
        again.stop()
        await Client.close_all()
