"""The service benchmarks' machinery (``bench.service``) on a tiny scale: what it counts is what
the servers did (every post acked and broadcast, every comment delivered to every viewer once)."""

from __future__ import annotations

from pathlib import Path

from bench.service.latency import LatencyPlan, run_latency
from bench.service.report import render
from bench.service.throughput import ThroughputPlan, run_throughput


async def test_throughput_counts_acks_and_fan_out(tmp_path: Path) -> None:
    plan = ThroughputPlan(poster_procs=1, conns_per_proc=2, window=8, warmup_s=0.5, seconds=1.0)
    result = await run_throughput(plan, tmp_path)
    assert result["errors"] == {} and result["disconnects"] == 0
    assert result["accepted"] > 100 and result["accepted_per_s"] > 100
    assert result["sent_total"] == result["acked_total"], "flood_stop waits for every ack"
    assert result["server_us_per_comment"] > 0
    assert result["viewer_comment_events_per_s"] > 0, "the viewers saw the broadcast"
    assert "Comments accepted per second" in render(
        {"command": "t", "started": "now", "machine": {"cpus": 2, "load": (0, 0, 0)}, "throughput": result}
    )


async def test_latency_run_delivers_every_comment_to_every_viewer(tmp_path: Path) -> None:
    plan = LatencyPlan(
        viewers_b=30, viewers_a=10, rate=20.0, warmup_s=0.5, seconds=1.5, drain_s=0.5, probe_share=0.5
    )
    result = await run_latency(plan, tmp_path)
    every = result["all"]
    assert result["sent"]["sent"] == 30
    assert result["probes"] == {"b": 15, "a": 5}
    assert every["expected"] == 30 * 20 and every["delivered"] == every["expected"]
    assert every["gaps"] == 0 and every["malformed"] == 0 and result["disconnects"] == 0
    assert result["edge_b_viewers"]["delivered"] == 30 * 15, "edge B got A's comments through Redis"
    assert 0 < every["p50_ms"] <= every["p99_ms"] <= every["max_ms"] * 1.01
    # The 20 sinks stayed connected and read every tick (30 comments, ~100 bytes each at least).
    assert result["sinks"]["viewers"] == 20 and result["sinks"]["disconnects"] == 0
    assert result["sinks"]["bytes_per_s"] * 1.5 >= 20 * 30 * 100
    assert "probe viewers" in render(
        {"command": "t", "started": "now", "machine": {"cpus": 2, "load": (0, 0, 0)}, "latency": result}
    )
