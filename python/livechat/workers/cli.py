"""``livechat worker persist|notify``: the workers' command line (wired into ``livechat.cli``).

Store URLs come from the configuration like ``livechat serve``'s (``--log`` is ``backends.log``,
``--history`` ``backends.history``, ``--meta`` ``backends.meta``; ``--config FILE``, ``LIVECHAT_*``
and ``--set`` work as for every command); the worker's own options have their defaults in
``livechat.workers.settings``. SIGTERM or SIGINT: the batch in hand is finished and committed (or,
if a store is down, left for the next start), then the worker leaves its group and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any, Final

from livechat.workers.settings import NOTIFICATIONS_TOPIC, NOTIFY_GROUP, PERSIST_GROUP

log = logging.getLogger("livechat.workers")

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_USAGE: Final = 2


def _flags() -> dict[str, Any]:
    from livechat.cli_options import Flag

    return {
        "log": Flag("--log", "backends.log", "the comment log, kafka://host:port/topic?partitions=N", "URL"),
        "history": Flag(
            "--history", "backends.history", "the history store (cassandra://, sqlite://)", "URL"
        ),
        "meta": Flag("--meta", "backends.meta", "the meta store resolving @handles", "URL"),
    }


def _common(parser: argparse.ArgumentParser, group: str) -> None:
    from livechat.cli_options import LOG_FLAGS, SERVE_FLAGS, add_config_options, add_flags

    add_config_options(parser)
    add_flags(parser, (SERVE_FLAGS[0], *LOG_FLAGS))
    parser.add_argument("--group", default=group, metavar="NAME", help=f"consumer group (default: {group})")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics on this port (0: any free port, logged; default: off)",
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="ADDR", help="metrics address (default: 127.0.0.1)"
    )


def add_worker_parser(sub: Any) -> None:
    """Add ``worker persist`` and ``worker notify`` to the ``livechat`` subcommands."""
    from livechat.cli_options import add_flags

    flags = _flags()
    worker = sub.add_parser(
        "worker",
        help="consumer-group workers on the Kafka comment log (persist, notify)",
        description="Workers that consume the comment log in a Kafka consumer group and commit "
        "their offsets only after their work for a batch is done.",
    )
    kinds = worker.add_subparsers(dest="worker", required=True, metavar="WORKER")
    persist = kinds.add_parser(
        "persist",
        help="copy the log into the history store (comments, deletes, purges) and its watermarks",
        description="Copy every comment, delete and purge of the comment log into the history store, "
        "then advance history's per-stream watermarks, then commit. A store that is down is "
        "retried with backoff: the worker lags and catches up, nothing is skipped.",
    )
    add_flags(persist, (flags["log"], flags["history"]))
    _common(persist, PERSIST_GROUP)
    notify = kinds.add_parser(
        "notify",
        help="@mentions of real users and replies -> a notifications topic and a webhook",
        description="Resolve the @mentions of every comment to users (meta store) and replies to the "
        "replied-to author (history), produce a notification per user to the notifications topic "
        "and POST it to the webhook (retried with backoff), then commit.",
    )
    add_flags(notify, (flags["log"], flags["meta"], flags["history"]))
    _common(notify, NOTIFY_GROUP)
    notify.add_argument(
        "--topic",
        default=NOTIFICATIONS_TOPIC,
        metavar="NAME",
        help=f"topic the notifications go to, created if missing (default: {NOTIFICATIONS_TOPIC})",
    )
    notify.add_argument("--webhook", default=None, metavar="URL", help="POST each notification here (JSON)")


def run_worker(args: argparse.Namespace) -> int:
    """Run the worker ``args.worker`` until SIGTERM/SIGINT."""
    import uvloop

    from livechat.cli_options import LOG_FLAGS, SERVE_FLAGS, configure_logs, fail, flag_values
    from livechat.config import ConfigError, resolve

    flags = _flags()
    own = [flags["log"], flags["history"]] + ([flags["meta"]] if args.worker == "notify" else [])
    try:
        config = resolve(
            args.config, None, flag_values(args, [*own, SERVE_FLAGS[0], *LOG_FLAGS]), args.set
        ).config
    except ConfigError as exc:
        return fail(f"worker {args.worker}", exc)
    configure_logs(config)
    if config.ops.tracing != "off":
        from livechat import tracing

        tracing.configure(config.ops.tracing, f"livechat-worker-{args.worker}")
    backends = config.backends
    log_url = backends.log
    if not log_url or not log_url.lower().startswith("kafka://"):
        print(
            f"livechat worker {args.worker}: needs a kafka:// comment log (--log or backends.log), "
            f"got {log_url!r}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.worker == "persist":
        main = _persist(args, log_url, backends)
    else:
        if not backends.meta:
            print("livechat worker notify: needs a meta store (--meta or backends.meta)", file=sys.stderr)
            return EXIT_USAGE
        main = _notify(args, log_url, backends)
    try:
        return uvloop.run(main)
    except Exception as exc:  # a store that cannot be opened, a bad URL
        from livechat.ports.errors import BackendError, ConfigurationError

        if not isinstance(exc, (BackendError, ConfigurationError, OSError)):
            raise
        print(f"livechat worker {args.worker}: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name, extra={"event": "signal", "signal": sig.name})
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return stop


def _metrics(args: argparse.Namespace, worker: str) -> Any:
    from livechat.workers.metrics import WorkerMetrics

    metrics = WorkerMetrics(worker)
    if args.metrics_port is not None:
        metrics.serve(args.metrics_host, args.metrics_port)
    return metrics


async def _persist(args: argparse.Namespace, log_url: str, backends: Any) -> int:
    from livechat.backends import open_history
    from livechat.workers.persist import run_persist

    stop = _stop_on_signals()
    history = await open_history(
        backends.history or backends.sqlite_url(),
        tombstone_ttl_s=backends.tombstone_ttl_s,
        retention_s=backends.history_retention_s,
    )
    try:
        await run_persist(
            log_url,
            history,
            stop,
            group=args.group,
            retention_s=backends.log_retention_s,
            metrics=_metrics(args, "persist"),
        )
    finally:
        await history.aclose()
    return EXIT_OK


async def _notify(args: argparse.Namespace, log_url: str, backends: Any) -> int:
    from livechat.backends import open_history, open_meta
    from livechat.workers.notify import run_notify

    stop = _stop_on_signals()
    meta = await open_meta(backends.meta)
    history = None
    try:
        if backends.history:
            history = await open_history(
                backends.history,
                tombstone_ttl_s=backends.tombstone_ttl_s,
                retention_s=backends.history_retention_s,
            )
        await run_notify(
            log_url,
            meta,
            history,
            stop,
            topic=args.topic,
            webhook=args.webhook,
            group=args.group,
            retention_s=backends.log_retention_s,
            metrics=_metrics(args, "notify"),
        )
    finally:
        if history is not None:
            await history.aclose()
        await meta.aclose()
    return EXIT_OK
