"""Command-line options shared by every ``livechat`` command (``livechat.cli``) and the workers'
commands (``livechat.workers.cli``): flags that set one configuration field each, ``--config`` and
``--set``, and the exits and errors every command reports the same way.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from livechat.config import ConfigError, LiveChatConfig, config_fields

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_USAGE: Final = 2
ROLES: Final = ("viewer", "moderator", "broadcaster")


@dataclass(frozen=True, slots=True)
class Flag:
    """A command-line option that sets one configuration field."""

    flag: str
    path: str
    help: str = ""
    metavar: str = "N"


EDGE_FLAGS: Final = (
    Flag("--host", "edge.host", metavar="ADDR"),
    Flag("--port", "edge.port", metavar="PORT"),
    *(
        Flag("--" + name.replace("_", "-"), "edge." + name)
        for name in (
            "io_threads",
            "max_connections",
            "max_message_bytes",
            "send_queue_soft_bytes",
            "send_queue_hard_bytes",
            "tick_min_ms",
            "tick_max_ms",
            "deflate",
            "deflate_min_bytes",
        )
    ),
)
SERVE_FLAGS: Final = (
    Flag("--data-dir", "backends.data_dir", "SQLite files and the development secret live here", "DIR"),
    Flag("--broker", "backends.broker", "memory:// or redis://host:port", "URL"),
    Flag("--registry", "backends.registry", "memory:// or redis://host:port", "URL"),
    Flag("--edge-id", "edge_id", "this edge's name among others (default: random per start)", "ID"),
    Flag("--admin", "ops.admin_enabled", "serve /metrics, /healthz, /readyz"),
    Flag("--admin-host", "ops.admin_host", "admin server address (keep it private: no auth)", "ADDR"),
    Flag("--admin-port", "ops.admin_port", "admin server port (0: any free port, logged)", "PORT"),
)
LOG_FLAGS: Final = (
    Flag("--log-format", "ops.log_format", "json: one JSON object per line; plain: readable lines"),
    Flag("--log-level", "ops.log_level"),
)
MIGRATE_FLAGS: Final = (
    Flag("--meta", "backends.meta", "the meta store to migrate (default: SQLite under data_dir)", "URL"),
    SERVE_FLAGS[0],
)


def add_flags(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    fields = config_fields()
    for spec in flags:
        info = fields[spec.path]
        default = info.default
        text = f"{spec.help} " if spec.help else ""
        help_text = f"{text}[{spec.path}; default: {default}]"
        kwargs: dict[str, Any] = {"dest": spec.path, "default": argparse.SUPPRESS, "help": help_text}
        hint = info.hint
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is typing.Literal:
            kwargs["choices"] = typing.get_args(hint)
        else:
            kwargs["metavar"] = spec.metavar
            if hint in (int, float):
                kwargs["type"] = hint
        parser.add_argument(spec.flag, **kwargs)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="TOML configuration file (default: $LIVECHAT_CONFIG, else none); keys in docs/configuration.md",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="set any field, e.g. chat.node_id=2 or chat.moderation.blocked_terms='[\"spam\"]' "
        "(repeatable; wins over the file, the environment and the other flags)",
    )


def flag_values(args: argparse.Namespace, flags: Sequence[Flag]) -> dict[str, tuple[Any, str]]:
    given = vars(args)
    return {spec.path: (given[spec.path], spec.flag) for spec in flags if spec.path in given}


def fail(command: str, error: ConfigError) -> int:
    for problem in error.problems:
        print(f"livechat {command}: {problem}", file=sys.stderr)
    return EXIT_USAGE


def configure_logs(config: LiveChatConfig) -> None:
    from livechat.logs import configure

    configure(config.ops.log_format, config.ops.log_level)
