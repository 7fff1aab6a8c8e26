"""A short, bounded locust run (loadtest/locustfile.py) against a real `livechat serve`: proves the
load test connects, posts, reacts and sees comments delivered, with no failed request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import REPO
from tests.service.serve_process import ServeProcess

USERS = 40
SPAWN_RATE = 20
RUN_TIME = "15s"


def test_short_locust_run_posts_and_delivers(serve: ServeProcess, artifacts: Path) -> None:
    summary = artifacts / "locust-smoke-summary.json"
    summary.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "locustfile.py"),
        "--headless", "--only-summary", "--host", f"ws://127.0.0.1:{serve.port}",
        "-u", str(USERS), "-r", str(SPAWN_RATE), "-t", RUN_TIME, "--stop-timeout", "5",
        "--livechat-secret-file", str(serve.data_dir / "hmac-secret"),
        "--livechat-summary", str(summary),
        "--csv", str(artifacts / "locust-smoke"),
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    (artifacts / "locust-smoke.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stderr[-3000:]

    totals = json.loads(summary.read_text())
    assert totals["users_connected"] == USERS
    connect = totals["connect+join"]
    assert connect["requests"] == USERS and connect["failures"] == 0
    posts = totals["post (ack)"]
    assert posts["requests"] >= 1 and posts["failures"] == 0
    assert totals["react (ok)"]["failures"] == 0
    # Every acknowledged comment reaches the viewers of its stream (one stream here).
    assert totals["comments_delivered"] >= posts["requests"]
    deliver = totals["deliver (post->viewer)"]
    assert deliver["requests"] >= posts["requests"] and deliver["p95_ms"] < 1000
    assert totals["connections_dropped"] == 0 and totals["reconnects"] == 0
