"""The ``livechat`` command: ``serve``, ``echo``, ``fanout``, ``token``, ``check-config``, ``migrate``,
``follow`` and ``mod queue`` (``livechat.cli_audience``).

Every option's default is read from ``livechat.config``; the configuration a command runs with is
defaults < ``--config`` TOML file < ``LIVECHAT_*`` environment < flags and ``--set`` (see
``livechat.config.resolve``). Options left out of the command line do not override the file.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from livechat.cli_options import (
    EDGE_FLAGS,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    LOG_FLAGS,
    MIGRATE_FLAGS,
    ROLES,
    SERVE_FLAGS,
    Flag,
    add_config_options,
    add_flags,
    configure_logs,
    fail,
    flag_values,
)
from livechat.config import ConfigError, LiveChatConfig, Resolved, config_fields, resolve, to_toml


def _resolve(args: argparse.Namespace, flags: Sequence[Flag], mode: str) -> Resolved:
    from livechat.config.check import problems

    resolved = resolve(args.config, None, flag_values(args, flags), args.set, fixed={"edge.mode": mode})
    found = problems(resolved.config)
    if found:
        raise ConfigError(found)
    return resolved


# --- commands -----------------------------------------------------------------------------------


def _run_bare_edge(args: argparse.Namespace, mode: str) -> int:
    """Serve a bench/conformance mode until SIGINT or SIGTERM, then drain."""
    try:
        config = _resolve(args, EDGE_FLAGS + LOG_FLAGS, mode).config
    except ConfigError as exc:
        return fail(mode, exc)
    configure_logs(config)
    from livechat._edge import Edge

    edge = Edge(config.edge.to_core())
    port = edge.start()
    print(f"livechat {mode}: listening on ws://{config.edge.host}:{port}/", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    edge.stop(config.ops.drain_timeout_ms)
    return EXIT_OK


#: `livechat serve` only: edge processes behind the one port (livechat.server.workers).
WORKER_FLAGS: Final = (Flag("--workers", "server.workers", "edge processes sharing the port", "N"),)


def _serve(args: argparse.Namespace) -> int:
    from livechat.devsecret import with_dev_secret
    from livechat.server.workers import serve_in_process, serve_workers

    try:
        config = _resolve(args, EDGE_FLAGS + SERVE_FLAGS + WORKER_FLAGS + LOG_FLAGS, "app").config
    except ConfigError as exc:
        return fail("serve", exc)
    configure_logs(config)
    # Read (or created) once, before any worker starts: every worker verifies the same tokens.
    config = with_dev_secret(config)
    if config.server.workers > 1:
        return serve_workers(config)
    return serve_in_process(config)


def _token(args: argparse.Namespace) -> int:
    from livechat.auth import AuthError, TokenVerifier
    from livechat.devsecret import with_dev_secret

    try:
        config = _resolve(args, SERVE_FLAGS[:1], "app").config
    except ConfigError as exc:
        return fail("token", exc)
    auth = config.chat.auth
    if "HS256" not in auth.algorithms:
        print(
            "livechat token: mints HS256 development tokens, but chat.auth.algorithms is "
            f"{list(auth.algorithms)}: get tokens from your identity provider",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    streams: dict[str, str] = {}
    for item in args.stream:
        stream, sep, role = item.partition("=")
        if not sep or not stream or role not in ROLES:
            print(
                f"livechat token: --stream takes STREAM=ROLE (ROLE: {', '.join(ROLES)}), got {item!r}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        streams[stream] = role
    config = with_dev_secret(config)
    secret = config.chat.auth.hmac_secret
    assert secret is not None
    import jwt

    now = int(time.time())
    ttl = args.ttl if args.ttl is not None else config.ops.dev_token_ttl_s
    claims: dict[str, Any] = {"sub": args.user, "iat": now, "exp": now + ttl, auth.role_claim: args.role}
    if auth.audience is not None:
        claims["aud"] = auth.audience
    if auth.issuer is not None:
        claims["iss"] = auth.issuer
    if streams:
        claims[auth.stream_roles_claim] = streams
    if args.name:
        claims[auth.name_claim] = args.name
    token = jwt.encode(claims, secret, algorithm="HS256")
    try:
        TokenVerifier(config.chat.auth).verify(token)
    except (AuthError, ValueError) as exc:
        print(f"livechat token: the server would refuse this token: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(token)
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    from livechat.config.check import problems

    flags = EDGE_FLAGS + SERVE_FLAGS + LOG_FLAGS
    mode = {"serve": "app", "echo": "echo", "fanout": "fanout"}[args.command_for]
    try:
        resolved = resolve(args.config, None, flag_values(args, flags), args.set, fixed={"edge.mode": mode})
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_PROBLEMS
    found = problems(resolved.config)
    if not args.quiet:
        origin = f"config file {resolved.file}" if resolved.file is not None else "no config file"
        print(f"# livechat {args.command_for}: resolved configuration ({origin})")
        print(to_toml(resolved.config, resolved.sources), end="")
    if not found and args.connect:
        found = asyncio.run(_connect(resolved.config))
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_PROBLEMS if found else EXIT_OK


async def _connect(config: LiveChatConfig) -> list[str]:
    """Open every backend and close it again (creates the SQLite file when missing)."""
    from livechat.backends import open_backends
    from livechat.ports.errors import BackendError, ConfigurationError

    try:
        backends = await open_backends(config.backends, "check-config")
    except (BackendError, ConfigurationError, OSError) as exc:
        return [f"backends: {exc}"]
    await backends.aclose()
    return []


def _migrate(args: argparse.Namespace) -> int:
    """Apply the meta store's pending schema migrations (livechat.migrate); safe to run concurrently."""
    from livechat.migrate import migrate
    from livechat.ports.errors import BackendError, ConfigurationError

    try:
        config = resolve(args.config, None, flag_values(args, MIGRATE_FLAGS), args.set).config
    except ConfigError as exc:
        return fail("migrate", exc)
    url = config.backends.meta or config.backends.sqlite_url()
    try:
        applied = asyncio.run(migrate(url))
    except (BackendError, ConfigurationError) as exc:
        print(f"livechat migrate: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    for version in applied:
        print(f"applied {version}")
    print(f"livechat migrate: {len(applied)} migration(s) applied; the schema is up to date", flush=True)
    return EXIT_OK


# --- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livechat",
        description="Live-stream comments edge. Configuration: defaults < --config FILE < LIVECHAT_* "
        "environment < flags and --set (docs/configuration.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve live comments (embedded by default: no services needed)",
        description="Serve live comments: the WebSocket edge, the chat services, the admin server "
        "(/metrics, /healthz, /readyz). SIGTERM drains: /readyz 503, then close 1001 after flushing.",
    )
    add_config_options(serve)
    add_flags(serve, EDGE_FLAGS + SERVE_FLAGS + WORKER_FLAGS + LOG_FLAGS)

    echo = sub.add_parser(
        "echo",
        help="echo every message (the Autobahn testee)",
        description="Echo every message back (RFC 6455 conformance testing). Reads [edge] of --config.",
    )
    add_config_options(echo)
    add_flags(echo, EDGE_FLAGS + LOG_FLAGS)

    fanout = sub.add_parser(
        "fanout",
        help="every connection joins one stream; every message is published to it (benchmarks)",
        description="Benchmark mode: every connection joins edge.fanout_stream and every message is "
        "published to it. Reads [edge] of --config.",
    )
    add_config_options(fanout)
    add_flags(fanout, EDGE_FLAGS + LOG_FLAGS)

    token = sub.add_parser(
        "token",
        help="mint a development JWT (HS256) that `livechat serve` accepts",
        description="Mint an HS256 token with the configured secret (chat.auth.hmac_secret, else the "
        "development secret in backends.data_dir, created if missing), checked against the "
        "configured audience and issuer before it is printed.",
    )
    token.add_argument("user", help="the user id (the token's sub claim)")
    token.add_argument("--role", choices=ROLES, default="viewer", help="global role (default: viewer)")
    token.add_argument(
        "--stream",
        action="append",
        default=[],
        metavar="STREAM=ROLE",
        help="a per-stream role, e.g. --stream s1=moderator (repeatable)",
    )
    token.add_argument("--name", default=None, help="display name (default: the user id)")
    ttl_default = config_fields()["ops.dev_token_ttl_s"].default
    token.add_argument(
        "--ttl",
        type=int,
        default=None,
        metavar="SECONDS",
        help=f"lifetime [ops.dev_token_ttl_s; default: {ttl_default}]",
    )
    add_config_options(token)
    add_flags(token, SERVE_FLAGS[:1])

    check = sub.add_parser(
        "check-config",
        help="print the resolved configuration; exit 1 when it has errors",
        description="Resolve the configuration exactly as the command would (file, environment, flags), "
        "print it as TOML with where each value came from, check it, and exit 1 on any error.",
    )
    check.add_argument(
        "--for",
        dest="command_for",
        choices=("serve", "echo", "fanout"),
        default="serve",
        help="the command whose configuration to check (default: serve)",
    )
    check.add_argument("--quiet", action="store_true", help="print only errors")
    check.add_argument(
        "--connect", action="store_true", help="also open every backend (Redis, SQLite…) and close it again"
    )
    add_config_options(check)
    add_flags(check, EDGE_FLAGS + SERVE_FLAGS + LOG_FLAGS)

    migrate = sub.add_parser(
        "migrate",
        help="apply the meta store's pending schema migrations (PostgreSQL); prints what it applied",
        description="Bring the meta store (backends.meta) up to date: applies every pending versioned "
        "SQL migration in one transaction under an advisory lock, so concurrent runs are safe; a "
        "second run applies nothing. SQLite stores need no step (their schema is made on open).",
    )
    add_config_options(migrate)
    add_flags(migrate, MIGRATE_FLAGS)

    from livechat.cli_audience import add_parsers
    from livechat.workers.cli import add_worker_parser

    add_parsers(sub)
    add_worker_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command in ("echo", "fanout"):
        return _run_bare_edge(args, args.command)
    if args.command == "token":
        return _token(args)
    if args.command == "check-config":
        return _check_config(args)
    if args.command == "migrate":
        return _migrate(args)
    if args.command in ("follow", "mod"):
        from livechat.cli_audience import run

        return run(args)
    if args.command == "worker":
        from livechat.workers.cli import run_worker

        return run_worker(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
