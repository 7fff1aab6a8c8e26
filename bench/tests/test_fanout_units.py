"""The harness's pure parts: bench messages, tick-frame decoding, latency histograms, the ledger."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest

from bench.fanout import latency, payload
from bench.fanout.ledger import Ledger
from bench.fanout.report import render
from bench.fanout.scenario import Plan, split


def test_bench_message_is_100_bytes_of_valid_msgpack_and_round_trips() -> None:
    message = payload.encode(123456789, 987654321012345)
    assert len(message) == payload.PAYLOAD_BYTES == 100
    assert isinstance(msgpack.unpackb(message), bytes)
    assert payload.decode(message) == (123456789, 987654321012345)


@pytest.mark.parametrize("bad", [b"", b"\xc4\x62" + b"XXXX" + bytes(94), payload.encode(1, 2)[:-1]])
def test_decode_rejects_what_is_not_a_bench_message(bad: bytes) -> None:
    with pytest.raises(payload.NotBenchMessage):
        payload.decode(bad)


def test_decode_tick_returns_every_carried_message_in_order() -> None:
    events = [payload.encode(seq, 1000 + seq) for seq in (7, 8, 9)]
    frame = msgpack.packb({"t": "tick", "s": "fanout", "q": 3, "e": events})
    assert payload.decode_tick(frame) == ([7, 8, 9], [1007, 1008, 1009])
    assert payload.decode_tick(msgpack.packb({"t": "tick", "s": "fanout", "q": 4, "e": []})) == ([], [])


@pytest.mark.parametrize(
    "frame",
    [
        msgpack.packb({"t": "ack"}),
        msgpack.packb([1, 2]),
        msgpack.packb({"t": "tick", "e": "nope"}),
        msgpack.packb({"t": "tick", "e": [5]}),
        b"\xc1",
    ],
)
def test_decode_tick_rejects_other_frames(frame: bytes) -> None:
    with pytest.raises(payload.NotBenchMessage):
        payload.decode_tick(frame)


def test_percentiles_are_within_one_percent() -> None:
    histogram = latency.empty()
    values = np.arange(1, 100_001, dtype=np.float64)  # 1 µs .. 100 ms, uniform
    latency.add(histogram, values)
    merged = latency.merge([latency.to_sparse(histogram)])
    for fraction in (0.5, 0.99):
        got = latency.percentile_us(merged, fraction)
        assert got is not None
        assert fraction * 100_000 <= got <= fraction * 100_000 * 1.0101
    assert latency.percentile_us({}, 0.99) is None


def test_merge_adds_histograms_of_several_processes() -> None:
    assert latency.merge([{"3": 1, "5": 2}, {"5": 3}]) == {3: 1, 5: 5}


def test_ledger_counts_each_viewer_once_and_keeps_windows_apart() -> None:
    ledger = Ledger(payload.decode_single)
    messages = [payload.encode(seq, 1_000_000 * seq) for seq in range(4)]
    for viewer_recv_ns in (5_000_000, 6_000_000):
        for message in messages:
            entry = ledger.entries.get(message) or ledger.admit(message)
            assert entry is not None
            entry.recv_ns.append(viewer_recv_ns)
    assert ledger.delivered(0, 2) == 4
    first = ledger.summarize(0, 2)
    assert first["delivered"] == 4
    # seq 0 and 1 were sent at 0 and 1 ms and received at 5 and 6 ms: worst is 6 ms.
    assert first["max_us"] == pytest.approx(6000)
    assert len(ledger.entries) == 2, "entries wholly before the window's end are forgotten"
    assert ledger.summarize(2, 4)["delivered"] == 4


def test_ledger_counts_malformed_messages_without_failing() -> None:
    ledger = Ledger(payload.decode_tick)
    assert ledger.admit(b"garbage") is None
    assert ledger.malformed == 1 and "not msgpack" in ledger.malformed_example


def test_split_spreads_connections_evenly() -> None:
    assert split(10, 4) == [3, 3, 2, 2]
    assert sum(split(15_000, 4)) == 15_000


def test_plan_refuses_more_connections_than_one_server_process_may_hold() -> None:
    with pytest.raises(ValueError, match="15 000"):
        Plan(conns=15_001, workers=4, steady_s=1, ladder=(), step_s=1, settle_s=0, drain_timeout_s=1)


def test_report_renders_ratios_against_livechat() -> None:
    def result(name: str, rss: float) -> dict[str, object]:
        step = {
            "rate": 2.0, "delivered_ratio": 1.0, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0,
            "server_cores": 0.1, "server_cpu_per_delivered_us": 1.0, "loadgen_cores": 0.1,
            "loadgen_max_process_cores": 0.05, "client_saturated": False, "other_cores": 0.0,
            "machine_busy_cores": 0.2, "machine_saturated": False, "disconnects": 0, "ok": True,
        }  # fmt: skip
        return {
            "target": name, "server_command": name, "rss_per_idle_conn_bytes": rss, "cpu_per_accept_us": 10.0,
            "steady": step, "ladder": [], "max_ok_rate": 2.0,
        }  # fmt: skip

    run = {
        "started": "now", "command": "python -m bench.fanout", "plan": {"conns": 10, "workers": 1},
        "machine": {"cpus": 2, "loadavg_start": [0, 0, 0]},
        "results": [result("livechat", 1024), result("picows", 29 * 1024)],
    }  # fmt: skip
    text = render(run)
    assert "| RSS per idle connection (KB) | ≤ 1 | 1.00 | 29.0 | 29.0x |" in text
