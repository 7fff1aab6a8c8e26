"""The compiled viewer load generator (bench/loadgen_rs) driven by the unchanged harness, against real
servers on loopback, plus its control channel on its own. The binary is built first (cargo, release):
if it cannot be built these tests fail.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.fanout import rust_loadgen
from bench.fanout.scenario import run_target
from bench.fanout.targets import TARGETS, Target
from bench.tests.test_fanout_harness import SMALL, assert_clean, fanout_port, fixture_target

RUST = dataclasses.replace(SMALL, loadgen="rust")


@pytest.fixture(scope="session", autouse=True)
def built_binary() -> Path:
    build = subprocess.run(
        rust_loadgen.BUILD_COMMAND.split(), cwd=rust_loadgen.CRATE_DIR, capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return rust_loadgen.require_built()


async def measure(target: Target, tmp_path: Path) -> dict[str, Any]:
    return await run_target(target, RUST, fanout_port(), 6, tmp_path)


async def test_peer_messages_are_all_counted(tmp_path: Path) -> None:
    result = await measure(TARGETS["picows"], tmp_path)
    assert_clean(result)
    assert result["plan"]["loadgen"] == "rust"
    assert result["max_ok_rate"] == 20


async def test_livechat_tick_frames_are_decoded_and_counted(tmp_path: Path) -> None:
    result = await measure(TARGETS["livechat"], tmp_path)
    assert_clean(result)
    assert result["max_ok_rate"] == 20


async def test_fixture_tick_frames_delay_by_up_to_a_tick(tmp_path: Path) -> None:
    result = await measure(fixture_target("ticks", True, "--tick-ms", "20"), tmp_path)
    assert_clean(result)
    assert result["steady"]["p99_ms"] >= 1


async def test_loss_is_detected_and_fails_the_step(tmp_path: Path) -> None:
    result = await measure(fixture_target("lossy", False, "--drop-every", "2"), tmp_path)
    steady = result["steady"]
    # The server drops its 2nd, 4th, ... message for every viewer; each drop followed by a kept
    # message is one gap per viewer.
    sent = steady["sent"]
    assert steady["delivered"] == 200 * ((sent + 1) // 2) < steady["expected"]
    assert steady["gaps"] == 200 * ((sent - 1) // 2) > 0
    assert not steady["ok"]
    assert result["max_ok_rate"] == 0


@pytest.fixture
def viewers_process(built_binary: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(built_binary), "--role", "viewers", "--tick-frames"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        assert stream is not None
        stream.close()


def ask(process: subprocess.Popen[str], line: str) -> dict[str, Any]:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    reply: dict[str, Any] = json.loads(process.stdout.readline())
    return reply


def test_control_channel_answers_like_the_python_one(viewers_process: subprocess.Popen[str]) -> None:
    status = ask(viewers_process, '{"op": "status"}')
    assert status == {
        "open": 0,
        "gaps": 0,
        "malformed": 0,
        "malformed_example": "",
        "unexpected_text": 0,
        "disconnects": 0,
        "close_codes": {},
    }
    assert ask(viewers_process, '{"op": "delivered", "lo": 0, "hi": 10}') == {"delivered": 0}
    summary = ask(viewers_process, '{"op": "summarize", "lo": 0, "hi": 10}')
    assert (summary["delivered"], summary["histogram"], summary["max_us"]) == (0, {}, 0.0)
    # Nothing listens on port 1: every attempt fails and is reported, none hangs.
    connect = {"url": "ws://127.0.0.1:1/", "count": 3, "source_ip": "127.0.0.1", "concurrency": 2}
    refused = ask(viewers_process, json.dumps({"op": "connect", **connect}))
    assert (refused["connected"], refused["failed"]) == (0, 3)
    assert any("refused" in text.lower() for text in refused["errors"])


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("{not json", "JSONDecodeError"),
        ('{"op": "fly"}', "unknown op"),
        ('{"op": "delivered", "lo": 0}', '"hi"'),
        ('{"op": "publish", "rate": 2, "seconds": 1, "first_seq": 0}', "viewers only"),
        (
            '{"op": "connect", "url": "http://x/", "count": 1, "source_ip": "127.0.0.1", "concurrency": 1}',
            "ws://",
        ),
    ],
)
def test_bad_requests_get_an_error_reply_and_the_process_carries_on(
    viewers_process: subprocess.Popen[str], line: str, error: str
) -> None:
    reply = ask(viewers_process, line)
    assert error in reply["error"]
    assert ask(viewers_process, '{"op": "status"}')["open"] == 0


def test_exit_ends_the_process_without_a_reply(viewers_process: subprocess.Popen[str]) -> None:
    assert viewers_process.stdin is not None and viewers_process.stdout is not None
    viewers_process.stdin.write('{"op": "exit"}\n')
    viewers_process.stdin.flush()
    assert viewers_process.wait(10) == 0
    assert viewers_process.stdout.read() == ""


def test_harness_falls_back_to_python_only_when_not_asked_for_rust(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path))  # no binary there
    chosen, note = rust_loadgen.choose(None)
    assert chosen == "python" and rust_loadgen.BUILD_COMMAND in note
    with pytest.raises(FileNotFoundError, match="cargo build --release -p lc-loadgen"):
        rust_loadgen.choose("rust")
    assert rust_loadgen.choose("python")[0] == "python"
