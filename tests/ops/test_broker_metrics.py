"""Broker latency and the broker_up signal against a real Redis (started by scripts/redis.sh in
this suite's port range; a Redis that cannot start FAILS the test). When Redis goes away the edge
stays ready (every edge shares the broker: failing readiness everywhere would empty the load
balancer) and says so in /metrics; when Redis is back, so is the signal."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tests.contract.redis_service import RedisServer
from tests.ops.ops_helpers import Metrics, OpsServe, http_get, ops_port, scrape
from tests.service.serve_process import Client


def wait_metrics(serve: OpsServe, done: object, timeout: float = 10.0) -> Metrics:
    assert callable(done)
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(serve.admin_port)
        if done(metrics):
            return metrics
        assert time.monotonic() < deadline, "metrics did not reach the expected state"
        time.sleep(0.05)


async def test_redis_broker_latency_and_outage(tmp_path: Path) -> None:
    redis = RedisServer(ops_port(), tmp_path / "redis")
    redis.start()
    try:
        config = tmp_path / "livechat.toml"
        config.write_text(
            f'[backends]\nbroker = "{redis.url}"\nregistry = "{redis.url}"\nredis_prefix = "ops:"\n'
            "[ops]\nbroker_probe_interval_s = 0.1\n"
        )
        serve = OpsServe(tmp_path / "data", config).start()
        try:
            poster = await Client.connect(
                serve.url(serve.mint("alice", "--role", "moderator")), ping_interval=None
            )
            await poster.join("s1")
            for i in range(10):
                assert (await poster.call("post", stream="s1", text=f"c{i}", cmid=f"c{i}"))["t"] == "ack"
            m = wait_metrics(serve, lambda m: m.value("livechat_broker_publish_seconds_count") == 10)
            assert m.value("livechat_broker_up") == 1
            assert m.value("livechat_broker_probe_seconds_count") >= 1
            # A Redis round trip on loopback: more than nothing, well under 100 ms each.
            assert 0 < m.value("livechat_broker_publish_seconds_sum") < 10 * 0.1
            assert m.value("livechat_broker_publish_seconds_bucket", le="0.1") == 10

            redis.stop()
            m = await asyncio.to_thread(wait_metrics, serve, lambda m: m.value("livechat_broker_up") == 0)
            assert m.value("livechat_broker_probe_errors_total") >= 1
            status, body = http_get(serve.admin_port, "/readyz")
            assert status == 200 and json.loads(body)["status"] == "ready"

            redis.start()
            await asyncio.to_thread(wait_metrics, serve, lambda m: m.value("livechat_broker_up") == 1, 30.0)
            await poster.close()
        finally:
            assert serve.stop() == 0, serve.log_text()
        events = [json.loads(line).get("event") for line in serve.log_text().splitlines() if line.strip()]
        assert "broker_down" in events and "broker_up" in events
    finally:
        redis.stop()
