"""The harness end to end against real servers on loopback (small: 200 viewers, ~10 s per server).

These start real server processes and real load-generator processes; a server that cannot start
fails the test.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bench.fanout.scenario import Plan, run_target
from bench.fanout.targets import TARGETS, Target
from tests.ports import free_port

SMALL = Plan(conns=200, workers=2, steady_s=1.5, ladder=(20,), step_s=1.0, settle_s=0.5, drain_timeout_s=2.0)


def fanout_port() -> int:
    """A free port of this suite's range (19900-19999)."""
    return free_port(range(19900, 20000))


def fixture_target(name: str, tick_frames: bool, *options: str) -> Target:
    def command(host: str, port: int) -> list[str]:
        module = "bench.tests.fixture_server"
        return [sys.executable, "-m", module, "--host", host, "--port", str(port), *options]

    return Target(name, tick_frames, command)


async def measure(target: Target, tmp_path: Path) -> dict[str, Any]:
    return await run_target(target, SMALL, fanout_port(), 5, tmp_path)


def assert_clean(result: dict[str, Any]) -> None:
    assert "error" not in result, result.get("error")
    assert result["connections"] == 201 and result["connect_failures"] == 0
    assert result["server_exit_code"] == 0
    for step in [result["steady"], *result["ladder"]]:
        assert step["delivered"] == step["expected"] > 0
        assert step["gaps"] == 0 and step["malformed"] == 0 and step["disconnects"] == 0
        assert step["p99_ms"] is not None and 0 < step["p50_ms"] <= step["p99_ms"] <= step["max_ms"]
        # 10 ms CPU ticks: a short step of 200 viewers may cost either side less than one tick.
        assert step["server_cpu_seconds"] >= 0 and step["loadgen_cpu_seconds"] >= 0


@pytest.mark.parametrize("name", ["picows", "websockets"])
async def test_peer_delivers_everything_and_is_measured(name: str, tmp_path: Path) -> None:
    result = await measure(TARGETS[name], tmp_path)
    assert_clean(result)
    # Both peers keep per-connection buffers of kilobytes; 200 connections cannot round to nothing.
    assert result["rss_per_idle_conn_bytes"] > 1024
    assert result["cpu_per_accept_us"] > 0
    assert result["max_ok_rate"] == 20


async def test_tick_frames_are_decoded_and_counted(tmp_path: Path) -> None:
    result = await measure(fixture_target("ticks", True, "--tick-ms", "20"), tmp_path)
    assert_clean(result)
    # Ticks every 20 ms delay each message by up to one tick.
    assert result["steady"]["p99_ms"] >= 1


async def test_loss_is_detected_and_fails_the_step(tmp_path: Path) -> None:
    result = await measure(fixture_target("lossy", False, "--drop-every", "2"), tmp_path)
    steady = result["steady"]
    assert steady["delivered"] < steady["expected"]
    assert steady["gaps"] > 0
    assert not steady["ok"]
    assert result["ladder"] and not any(step["ok"] for step in result["ladder"])
    assert result["max_ok_rate"] == 0


async def test_a_server_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    def command(host: str, port: int) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.exit('cannot bind')"]

    result = await measure(Target("broken", False, command), tmp_path)
    assert "server exited with code 1" in result["error"]
    assert "cannot bind" in result["error"]
