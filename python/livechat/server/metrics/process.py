"""``process_*`` families of ``/metrics``, read from ``/proc/self`` (Linux, a few µs)."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

from prometheus_client.core import Metric

from livechat.server.metrics.families import counter, gauge


def process_families() -> Iterator[Metric]:
    """process_* metrics from /proc/self (Linux, a few µs); none elsewhere.

    Not prometheus_client's ProcessCollector: it counts ``/proc/self/fd`` for process_open_fds,
    a walk over a million entries on a dense edge (open descriptors are livechat_connections plus
    a few dozen), and has no process_threads.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return
    ticks = os.sysconf("SC_CLK_TCK")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Fields after the command name, 0-based: 11 utime, 12 stime, 17 num_threads, 19 starttime,
    # 20 vsize, 21 rss (pages).
    yield counter(
        "process_cpu_seconds_total",
        "User and system CPU time of the process.",
        (int(fields[11]) + int(fields[12])) / ticks,
    )
    yield gauge("process_threads", "Threads of the process.", int(fields[17]))
    yield gauge(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch.",
        boot + int(fields[19]) / ticks,
    )
    yield gauge("process_virtual_memory_bytes", "Virtual memory size.", int(fields[20]))
    yield gauge(
        "process_resident_memory_bytes",
        "Resident set size (divide by livechat_connections for bytes per connection).",
        int(fields[21]) * os.sysconf("SC_PAGE_SIZE"),
    )
    yield gauge("process_max_fds", "Open file descriptor limit (ulimit -n).", soft)
