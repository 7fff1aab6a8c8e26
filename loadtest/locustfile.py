"""livechat load test: viewers, posters and reactors on picows (see loadtest/README.md).

    locust -f loadtest/locustfile.py --headless --host ws://127.0.0.1:8765 \\
        -u 2000 -r 100 -t 3m --livechat-secret-file livechat-data/hmac-secret

``-r`` is the ramp (users started per second); for stages, add ``loadtest/ramp.py``:
``-f loadtest/locustfile.py,loadtest/ramp.py --livechat-ramp 60:500:25,180:2000:50,240:2000:50``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import gevent
from livechat_users import CONNECT, DELIVER, POST, REACT, REQUEST_TYPE, SETTINGS, TOTALS, Totals
from livechat_users import PosterUser as PosterUser
from livechat_users import ReactorUser as ReactorUser
from livechat_users import ViewerUser as ViewerUser
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

log = logging.getLogger("livechat.loadtest")
TOTALS_MESSAGE = "livechat_totals"
TOTALS_EVERY_S = 2.0
# Latest running totals of each worker process (master only).
WORKER_TOTALS: dict[str, dict[str, float]] = {}
# picows logs every disconnect at INFO: thousands of lines when the run ends.
logging.getLogger("picows").setLevel(logging.WARNING)

# Exit code when posts were acknowledged but no viewer received a comment: fan-out is broken.
EXIT_NO_DELIVERIES = 3


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("livechat")
    group.add_argument(
        "--livechat-secret-file",
        default=SETTINGS.secret_file,
        help="the server's HS256 secret (livechat serve writes it to DATA_DIR/hmac-secret)",
    )
    group.add_argument("--livechat-streams", type=int, default=SETTINGS.streams, help="streams to use")
    group.add_argument("--livechat-stream-prefix", default=SETTINGS.stream_prefix)
    group.add_argument(
        "--livechat-latency-viewers",
        type=int,
        default=SETTINGS.latency_viewers,
        help="viewers per process that report delivery latency (the rest only count)",
    )
    group.add_argument(
        "--livechat-ramp", default="", help="stages END_S:USERS:RATE,... (with -f ...,loadtest/ramp.py)"
    )
    group.add_argument("--livechat-summary", default="", help="write the run's totals here as JSON")


def summary(environment: Environment) -> dict[str, Any]:
    stats = environment.stats
    totals = Totals()
    totals.add(TOTALS.shareable())
    for worker in WORKER_TOTALS.values():
        totals.add(worker)
    out: dict[str, Any] = {
        "users_connected": totals.users_connected,
        "comments_delivered": totals.deliveries,
        "connections_dropped": totals.drops,
        "reconnects": totals.reconnects,
        # CPU of every load-generating process: this one's and what the workers reported.
        "load_generator_cpu_s": round(totals.cpu_s, 1),
        "duration_s": round(stats.total.last_request_timestamp - stats.total.start_time, 1)
        if stats.total.last_request_timestamp
        else 0.0,
    }
    for name in (CONNECT, POST, REACT, DELIVER):
        entry = stats.entries.get((name, REQUEST_TYPE))
        if entry is None or entry.num_requests == 0:
            continue
        out[name] = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "rps": round(entry.total_rps, 1),
            "p50_ms": entry.get_response_time_percentile(0.5),
            "p95_ms": entry.get_response_time_percentile(0.95),
            "p99_ms": entry.get_response_time_percentile(0.99),
            "max_ms": round(entry.max_response_time, 1),
        }
    return out


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    # With --processes / distributed runs the counts live in the workers: each sends its running
    # totals every TOTALS_EVERY_S and at the end; the master keeps the latest per worker.
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(TOTALS_MESSAGE, _worker_totals)
    elif isinstance(runner, WorkerRunner):

        def send_totals() -> None:
            while True:
                gevent.sleep(TOTALS_EVERY_S)
                runner.send_message(TOTALS_MESSAGE, TOTALS.shareable())

        gevent.spawn(send_totals)


def _worker_totals(environment: Environment, msg: Any, **_: Any) -> None:
    WORKER_TOTALS[str(msg.node_id)] = msg.data


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.send_message(TOTALS_MESSAGE, TOTALS.shareable())


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # its totals went to the master
    totals = summary(environment)
    log.info("livechat totals: %s", json.dumps(totals))
    path = environment.parsed_options.livechat_summary if environment.parsed_options else ""
    if path:
        with open(path, "w") as f:
            json.dump(totals, f, indent=2)
    posted = totals.get(POST, {}).get("requests", 0) - totals.get(POST, {}).get("failures", 0)
    if posted and not totals["comments_delivered"]:
        log.error("%d posts were acknowledged but no viewer received a comment", posted)
        environment.process_exit_code = EXIT_NO_DELIVERIES
