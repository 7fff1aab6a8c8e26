"""The `livechat` command as an operator runs it: --help everywhere, check-config, token, and
serve refusing a bad configuration or a taken port with a clear message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import jwt
import pytest
from livechat.auth import TokenVerifier
from livechat.config import AuthConfig
from livechat.ports.meta import Role

from tests.ops.ops_helpers import ops_port

COMMANDS = ("serve", "echo", "fanout", "token", "check-config")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVECHAT_")}
    return subprocess.run(
        [sys.executable, "-m", "livechat.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_help_on_every_command(command: str) -> None:
    done = run(*([command] if command else []), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: livechat")
    if not command:
        for name in COMMANDS:
            assert name in done.stdout
        return
    assert "--config PATH" in done.stdout and "--set PATH=VALUE" in done.stdout
    if command in ("serve", "check-config"):
        assert "[edge.port; default: 8765]" in done.stdout
        assert "--admin-port" in done.stdout and "--log-format {json,plain}" in done.stdout


def test_check_config_prints_what_serve_would_run(tmp_path: Path) -> None:
    config = tmp_path / "livechat.toml"
    config.write_text("[edge]\nport = 9000\nio_threads = 4\n[ops]\nadmin_port = 9001\n")
    done = run(
        "check-config",
        "--config",
        str(config),
        "--io-threads",
        "3",
        "--set",
        "chat.limits.max_text_chars=300",
        env={"LIVECHAT_EDGE_TICK_MAX_MS": "200", "LIVECHAT_CHAT_AUTH_HMAC_SECRET": "k" * 40},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    printed = tomllib.loads(done.stdout)
    assert printed["edge"]["port"] == 9000 and printed["edge"]["io_threads"] == 3
    assert printed["edge"]["tick_max_ms"] == 200 and printed["chat"]["limits"]["max_text_chars"] == 300
    assert "hmac_secret" not in printed["chat"]["auth"] and "k" * 40 not in done.stdout
    assert f"port = 9000  # config file {config}" in done.stdout
    assert "io_threads = 3  # flag --io-threads" in done.stdout
    assert "tick_max_ms = 200  # environment LIVECHAT_EDGE_TICK_MAX_MS" in done.stdout
    assert "max_text_chars = 300  # --set" in done.stdout
    # The printed configuration is itself a valid config file.
    again = tmp_path / "printed.toml"
    again.write_text(done.stdout)
    assert run("check-config", "--config", str(again), "--quiet").returncode == 0


def test_check_config_exits_1_listing_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[edge]\nprot = 1\ntick_min_ms = 'fast'\n[ops]\nlog_levle = 'debug'\n")
    done = run("check-config", "--config", str(config))
    assert done.returncode == 1
    assert "unknown key 'edge.prot' (did you mean edge.port?)" in done.stderr
    assert "edge.tick_min_ms: expected an integer, got 'fast'" in done.stderr
    assert "unknown key 'ops.log_levle' (did you mean ops.log_level?)" in done.stderr
    assert done.stdout == ""

    config.write_text("[edge]\ntick_min_ms = 500\ntick_max_ms = 100\n[chat]\nnode_id = 2000\n")
    done = run("check-config", "--config", str(config), "--quiet")
    assert done.returncode == 1 and done.stdout == ""
    assert "need 0 < tick_min_ms <= tick_max_ms" in done.stderr
    assert "chat.node_id = 2000: must be 0..1023" in done.stderr
    done = run("check-config", "--set", "backends.broker=kafka://k:9092", "--quiet")
    assert done.returncode == 1 and "backends.broker = 'kafka://k:9092': supported schemes" in done.stderr
    done = run("check-config", "--quiet", env={"LIVECHAT_EDGE_PORTT": "1"})
    assert done.returncode == 1 and "LIVECHAT_EDGE_PORTT: names no configuration field" in done.stderr


def test_check_config_connect_opens_the_backends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("check-config", "--quiet", "--connect", "--data-dir", str(data)).returncode == 0
    assert (data / "livechat.db").exists()
    closed = ops_port()  # nothing listens there
    done = run(
        "check-config",
        "--quiet",
        "--connect",
        "--data-dir",
        str(data),
        "--broker",
        f"redis://127.0.0.1:{closed}",
    )
    assert done.returncode == 1 and done.stderr.startswith("error: backends:"), done.stderr


def test_serve_refuses_a_bad_configuration_before_starting(tmp_path: Path) -> None:
    config = tmp_path / "livechat.toml"
    config.write_text("[edge]\nmode = 'echo'\n[chat.sampling]\nbuckets = 1\n")
    done = run("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"), timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert any("edge.mode = 'echo', but this command runs with edge.mode = 'app'" in line for line in lines)
    assert all(line.startswith("livechat serve: ") for line in lines), done.stderr
    assert not (tmp_path / "data").exists()  # nothing was opened


def test_serve_reports_a_taken_admin_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin_port = taken.getsockname()[1]
        done = run(
            "serve",
            "--port",
            str(ops_port()),
            "--admin-port",
            str(admin_port),
            "--data-dir",
            str(tmp_path / "data"),
            timeout=30,
        )
    assert done.returncode == 1
    last = json.loads(done.stderr.strip().splitlines()[-1])
    assert last["event"] == "start_failed" and last["level"] == "error"
    assert "address already in use" in last["msg"].lower()


def test_echo_reads_the_edge_section_and_refuses_another_mode(tmp_path: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text("[edge]\nmode = 'fanout'\n")
    done = run("echo", "--config", str(config), timeout=30)
    assert done.returncode == 2 and "this command runs with edge.mode = 'echo'" in done.stderr


def test_token_mints_what_the_server_accepts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run(
        "token",
        "mia",
        "--role",
        "moderator",
        "--stream",
        "s1=broadcaster",
        "--name",
        "Mia",
        "--ttl",
        "600",
        "--data-dir",
        str(data),
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    secret = (data / "hmac-secret").read_text().strip()  # created, and what `serve` will use
    principal = TokenVerifier(AuthConfig(hmac_secret=secret)).verify(token)
    assert principal.user_id == "mia" and principal.name == "Mia"
    assert principal.role is Role.MODERATOR and principal.role_in("s1") is Role.BROADCASTER
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience="livechat")
    assert claims["exp"] - claims["iat"] == 600
    # The same secret again: a second token verifies with the first one's key.
    second = run("token", "bob", "--data-dir", str(data)).stdout.strip()
    assert TokenVerifier(AuthConfig(hmac_secret=secret)).verify(second).role is Role.VIEWER

    config = tmp_path / "issuer.toml"
    config.write_text("[chat.auth]\nissuer = 'https://id.example/'\naudience = 'chat'\n")
    issued = run("token", "ann", "--config", str(config), "--data-dir", str(data)).stdout.strip()
    claims = jwt.decode(issued, secret, algorithms=["HS256"], audience="chat", issuer="https://id.example/")
    assert claims["sub"] == "ann"


def test_token_refuses_what_it_cannot_mint(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    done = run("token", "x", "--data-dir", data, "--set", 'chat.auth.algorithms=["EdDSA"]')
    assert done.returncode == 1 and "get tokens from your identity provider" in done.stderr
    done = run("token", "x", "--data-dir", data, "--stream", "s1=owner")
    assert done.returncode == 2 and "--stream takes STREAM=ROLE" in done.stderr
    done = run("token", "x", "--role", "admin")
    assert done.returncode == 2 and "invalid choice" in done.stderr
