"""The ``livechat`` command. Option defaults are read from ``livechat.config``."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from livechat.config import BackendConfig, EdgeConfig, EdgeMode, LiveChatConfig

_EDGE_FLAGS = (
    "host",
    "port",
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


def _add_edge_options(p: argparse.ArgumentParser) -> None:
    defaults = EdgeConfig()
    for name in _EDGE_FLAGS:
        value = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=value, help=f"(default: {value})"
            )
        else:
            p.add_argument(flag, type=type(value), default=value, help=f"(default: {value})")


def _edge_config(args: argparse.Namespace, mode: EdgeMode) -> EdgeConfig:
    chosen: dict[str, Any] = {name: getattr(args, name) for name in _EDGE_FLAGS}
    return dataclasses.replace(EdgeConfig(), mode=mode, **chosen)


def _run_bare_edge(config: EdgeConfig) -> int:
    """Serve a bench/conformance mode until SIGINT or SIGTERM, then drain."""
    from livechat._edge import Edge

    edge = Edge(config.to_core())
    port = edge.start()
    print(f"livechat {config.mode}: listening on ws://{config.host}:{port}/", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    edge.stop(5000)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    import uvloop

    from livechat.devsecret import with_dev_secret
    from livechat.server import LiveChatServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    base = LiveChatConfig()
    backends = dataclasses.replace(
        base.backends, data_dir=args.data_dir, broker=args.broker, registry=args.registry
    )
    config = with_dev_secret(
        dataclasses.replace(base, edge_id=args.edge_id, edge=_edge_config(args, "app"), backends=backends)
    )

    async def run() -> None:
        server = LiveChatServer(config)
        port = await server.start()
        print(
            f"livechat serve: ws://{config.edge.host}:{port}/ (data in {config.backends.data_dir})",
            flush=True,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.stop()))
        await server.wait_stopped()

    uvloop.run(run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livechat", description="Live-stream comments edge.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve live comments (embedded by default: no services needed)")
    _add_edge_options(serve)
    backend_defaults = BackendConfig()
    serve.add_argument(
        "--data-dir", default=backend_defaults.data_dir, help="SQLite and the dev secret live here"
    )
    serve.add_argument("--broker", default=backend_defaults.broker, help="memory:// or redis://host:port")
    serve.add_argument("--registry", default=backend_defaults.registry, help="memory:// or redis://host:port")
    serve.add_argument("--edge-id", default=None, help="this edge's name among others (default: random)")
    echo = sub.add_parser("echo", help="echo every message (the Autobahn testee)")
    _add_edge_options(echo)
    fanout = sub.add_parser(
        "fanout", help="every connection joins one stream; every message is published to it (benchmarks)"
    )
    _add_edge_options(fanout)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "echo":
        return _run_bare_edge(_edge_config(args, "echo"))
    if args.command == "fanout":
        return _run_bare_edge(_edge_config(args, "fanout"))
    return 2


if __name__ == "__main__":
    sys.exit(main())
