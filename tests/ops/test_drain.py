"""Graceful drain: on SIGTERM /readyz turns 503 at once while the edge keeps serving for
``ops.drain_grace_s``; then every client is closed with 1001 and the process exits 0.

(The SIGTERM-during-posts test, acked == stored, is tests/service/test_serve_embedded.py.)
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tests.ops.ops_helpers import OpsServe, http_get, scrape
from tests.service.serve_process import Client

GRACE_S = 1.5


async def test_readyz_fails_first_then_clients_get_1001(tmp_path: Path) -> None:
    config = tmp_path / "livechat.toml"
    config.write_text(f"[ops]\ndrain_grace_s = {GRACE_S}\nlog_format = 'json'\n")
    serve = OpsServe(tmp_path / "data", config).start()
    try:
        status, body = http_get(serve.admin_port, "/readyz")
        assert status == 200 and json.loads(body) == {"status": "ready", "draining": False, "problems": []}
        alice = await Client.connect(serve.url(serve.mint("alice", "--role", "moderator")))
        await alice.join("s1")

        signalled = time.monotonic()
        serve.signal()
        while http_get(serve.admin_port, "/readyz")[0] == 200:
            assert time.monotonic() - signalled < 1.0, "/readyz still 200 a second after SIGTERM"
            await asyncio.sleep(0.02)
        status, body = http_get(serve.admin_port, "/readyz")
        assert status == 503
        answer = json.loads(body)
        assert answer["draining"] is True and any("draining" in p for p in answer["problems"])
        assert http_get(serve.admin_port, "/healthz")[0] == 200  # alive: do not restart it
        metrics = scrape(serve.admin_port)
        assert metrics.value("livechat_draining") == 1 and metrics.value("livechat_ready") == 0

        # Still serving during the grace period: a post is stored and acknowledged.
        ack = await alice.call("post", stream="s1", text="still here", cmid="late")
        assert ack["t"] == "ack"
        late_viewer = await Client.connect(serve.url())  # the edge still accepts too
        await late_viewer.join("s1")

        assert await alice.closed(GRACE_S + 5) == 1001
        assert await late_viewer.closed(5) == 1001
        assert time.monotonic() - signalled >= GRACE_S
        assert serve.wait() == 0
    finally:
        serve.stop()
    events = [json.loads(line).get("event") for line in serve.log_text().splitlines() if line.strip()]
    assert events.index("draining") < events.index("stopped")
