"""The TOML file, environment overrides and flags: precedence, errors that name the key, printing
that reads back, and the docs/example file covering every key with its real default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from livechat.config import (
    ConfigError,
    LiveChatConfig,
    config_fields,
    env_names,
    read_file,
    resolve,
    to_toml,
    toml_value,
)
from livechat.config.check import problems

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "livechat.toml"
    path.write_text(text)
    return path


def test_defaults_come_from_the_model_alone() -> None:
    resolved = resolve(None, env={})
    assert resolved.config == LiveChatConfig()
    assert resolved.sources == {} and resolved.file is None
    assert problems(resolved.config) == []


def test_precedence_defaults_file_env_flags_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
edge_id = "edge-a"
[edge]
port = 9000
io_threads = 4
tick_max_ms = 200
[chat.limits]
max_text_chars = 300
[backends]
broker = "redis://10.0.0.1:6379"
""",
    )
    env = {
        "LIVECHAT_EDGE_PORT": "9001",
        "LIVECHAT_EDGE_IO_THREADS": "3",
        "LIVECHAT_CHAT_MODERATION_BLOCKED_TERMS": '["spam", "scam"]',
        "LIVECHAT_PURE": "1",  # not a configuration variable: ignored
    }
    flags = {"edge.port": (9002, "--port")}
    resolved = resolve(path, env=env, flags=flags, assignments=["edge.tick_max_ms=150", "edge.port=9003"])
    c = resolved.config
    assert c.edge_id == "edge-a"  # file
    assert c.edge.io_threads == 3  # env over file
    assert c.edge.port == 9003  # --set over flag over env over file
    assert c.edge.tick_max_ms == 150
    assert c.chat.limits.max_text_chars == 300
    assert c.chat.moderation.blocked_terms == ("spam", "scam")
    assert c.backends.broker == "redis://10.0.0.1:6379"
    assert c.edge.host == LiveChatConfig().edge.host  # untouched: default
    assert resolved.sources["edge.port"] == "--set"
    assert resolved.sources["edge.io_threads"] == "environment LIVECHAT_EDGE_IO_THREADS"
    assert resolved.sources["edge_id"] == f"config file {path}"
    assert "edge.host" not in resolved.sources


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[edge]\nport = 9100\n")
    assert resolve(None, env={"LIVECHAT_CONFIG": str(path)}).config.edge.port == 9100


def test_every_problem_is_reported_naming_its_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[edge]
prot = 9000
io_threads = "four"
[chat.limit]
max_text_chars = 3
[backends]
data_dir = 5
tick_min_ms = 3
""",
    )
    with pytest.raises(ConfigError) as caught:
        read_file(path)
    found = caught.value.problems
    assert len(found) == 5, found
    text = "\n".join(found)
    assert "unknown key 'edge.prot' (did you mean edge.port?)" in text
    assert "edge.io_threads: expected an integer, got 'four'" in text
    assert "unknown key 'chat.limit' (did you mean chat.limits?)" in text
    assert "backends.data_dir: expected a string, got 5" in text
    assert "unknown key 'backends.tick_min_ms' (did you mean edge.tick_min_ms?)" in text
    assert all(p.startswith(f"config file {path}: ") for p in found)


def test_type_rules(tmp_path: Path) -> None:
    c = resolve(
        write(
            tmp_path,
            """
[chat.auth]
audience = ""
[chat.sampling]
tiers = [[100, 0.5], [1000, 0.1]]
[chat.moderation]
classifier_timeout_s = 1
""",
        ),
        env={},
    ).config
    assert c.chat.auth.audience is None  # "" unsets an optional field
    assert c.chat.sampling.tiers == ((100.0, 0.5), (1000.0, 0.1))
    assert isinstance(c.chat.moderation.classifier_timeout_s, float)
    for bad, message in (
        ("[edge]\ndeflate = 1\n", "edge.deflate: expected a boolean"),
        ("[edge]\nport = 1.5\n", "edge.port: expected an integer"),
        ("[chat.sampling]\ntiers = [[1.0]]\n", "chat.sampling.tiers[0]: expected a list of 2 items"),
        ("[ops]\nlog_format = 'xml'\n", "ops.log_format: expected one of 'json', 'plain'"),
        ("edge = 3\n", "edge must be a table"),
        ("[edge\n", "not valid TOML"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            read_file(write(tmp_path, bad))
    with pytest.raises(ConfigError, match="cannot read it"):
        read_file(tmp_path / "missing.toml")


def test_environment_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(None, env={"LIVECHAT_EDGE_PORTT": "1", "LIVECHAT_OPS_ADMIN_PORT": "eighty"})
    text = "\n".join(caught.value.problems)
    assert (
        "environment LIVECHAT_EDGE_PORTT: names no configuration field (did you mean LIVECHAT_EDGE_PORT?)"
        in text
    )
    assert "LIVECHAT_OPS_ADMIN_PORT" in text and "'eighty'" in text
    c = resolve(None, env={"LIVECHAT_CHAT_AUTH_AUDIENCE": "", "LIVECHAT_EDGE_DEFLATE": "off"}).config
    assert c.chat.auth.audience is None and c.edge.deflate is False


def test_set_and_fixed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--set chat\.limits\.max_txt_chars: no such configuration field"):
        resolve(None, env={}, assignments=["chat.limits.max_txt_chars=3"])
    with pytest.raises(ConfigError, match="--set takes PATH=VALUE"):
        resolve(None, env={}, assignments=["edge.port"])
    path = write(tmp_path, "[edge]\nmode = 'echo'\n")
    with pytest.raises(
        ConfigError, match=r"edge\.mode = 'echo', but this command runs with edge\.mode = 'app'"
    ):
        resolve(path, env={}, fixed={"edge.mode": "app"})
    assert resolve(path, env={}, fixed={"edge.mode": "echo"}).config.edge.mode == "echo"


def test_printed_config_reads_back_and_hides_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
edge_id = "edge-\\"quoted\\" \\u00e9"
[edge]
port = 9000
deflate = false
[chat.auth]
hmac_secret = "s3cret-s3cret-s3cret-s3cret-s3cret"
[chat.moderation]
blocked_terms = ["a", "b\\\\c"]
classifier_timeout_s = 0.25
[backends]
broker = "redis://user:hunter2@10.0.0.1:6379"
""",
    )
    resolved = resolve(path, env={})
    printed = to_toml(resolved.config, resolved.sources)
    assert "hunter2" not in printed and "s3cret" not in printed
    assert f"port = 9000  # config file {path}" in printed
    again = tomllib.loads(printed)
    (tmp_path / "printed").mkdir()
    read_back = resolve(write(tmp_path / "printed", printed), env={}).config
    # Everything but the hidden values survives the round trip.
    assert read_back.edge == resolved.config.edge and read_back.edge_id == resolved.config.edge_id
    assert read_back.chat.moderation == resolved.config.chat.moderation
    assert read_back.chat.auth.hmac_secret is None and "broker" not in again["backends"]
    for value in (True, 3, 0.1, 1e-05, "tab\there", ("x", 2.5), "del\x7f"):
        assert tomllib.loads(f"v = {toml_value(value)}")["v"] == (
            list(value) if isinstance(value, tuple) else value
        )


def test_environment_names_are_unique_and_cover_every_field() -> None:
    names = env_names()
    assert len(names) == len(config_fields())
    assert names["LIVECHAT_EDGE_ID"] == "edge_id"
    assert names["LIVECHAT_CHAT_AUTH_HMAC_SECRET"] == "chat.auth.hmac_secret"


def test_docs_list_every_key_with_its_default() -> None:
    """docs/configuration.md has a row `| `key` | default | ...` per field; defaults must match."""
    text = (REPO / "docs" / "configuration.md").read_text()
    rows: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        heading = re.match(r"^### `\[([a-z.]+)\]`", line)
        if heading:
            section = heading.group(1) + "."
        elif line.startswith("### `(top level)`"):
            section = ""
        row = re.match(r"^\| `([a-z_]+)` \| (.*?) \| `(LIVECHAT_[A-Z_]+)` \|", line)
        if row:
            rows[section + row.group(1)] = row.group(2)
            assert env_names()[row.group(3)] == section + row.group(1), line
    fields = config_fields()
    assert set(rows) == set(fields), set(fields) ^ set(rows)
    for path, info in fields.items():
        shown = rows[path]
        expected = "unset" if info.default is None else f"`{toml_value(info.default)}`"
        assert shown == expected, f"{path}: docs say {shown}, config/model.py says {expected}"


def test_example_file_covers_every_key_and_loads() -> None:
    example = REPO / "livechat.example.toml"
    values = read_file(example)
    # Optional fields with no default, and edge.mode (the command sets it), appear commented out;
    # every other field is set, to its real default.
    commented = set(re.findall(r"^# ?([a-z_]+) = ", example.read_text(), re.MULTILINE))
    for path, info in config_fields().items():
        leaf = path.rpartition(".")[2]
        optional = info.default is None or path == "edge.mode"
        assert path in values or (optional and leaf in commented), path
    config = resolve(example, env={}).config
    assert config == LiveChatConfig()
    assert problems(config) == []


def test_hold_ms_outside_what_the_hold_op_accepts_is_a_problem(tmp_path: Path) -> None:
    for value, ok in ((49, False), (50, True), (2000, True), (2001, False)):
        path = write(tmp_path, f"[chat.moderation]\nhold_ms = {value}\n")
        found = problems(resolve(path, env={}).config)
        assert (found == []) is ok, (value, found)
        if not ok:
            assert found == [f"chat.moderation.hold_ms = {value}: 50..2000 (the range the hold op accepts)"]
