"""One fault case on a running cluster: steady load, the fault, healing, and the verdict.

A ``FaultCluster`` is three edges and a persist worker on Kafka, Cassandra, PostgreSQL and Redis,
every link to a service through its Toxiproxy proxy (``tests.faults.links``); it is made once per
run and serves every case (each case has its own streams, posters and viewers).

``run_case`` timeline: viewers join (all before the first post, so every acked comment is owed to
every viewer), posters post steadily for ``warm_s``, the fault is applied for ``fault_s`` and then
healed, the load goes on for ``after_s``, posters stop (the post in flight gets ``finish_s`` to
be acked), viewers drain, anyone told of a gap refetches, and the verdict is drawn from the
ledgers against the Kafka log and history (``tests.faults.verdict``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests.cluster.cluster_edges import PARTITIONS, Cluster, Worker
from tests.faults.links import Links
from tests.faults.load import HISTORY_PAGE, Edges, Poster, Viewer, token
from tests.faults.redis_cluster import PrivateRedisCluster
from tests.faults.verdict import Verdict, judge, read_log
from tests.faults.wire import Wire
from tests.service.serve_process import ServeProcess

EDGES: Final = 3
#: After the load stops: how long history may take to hold every acked comment (the persist
#: worker commits every ~0.5 s; after a Cassandra outage it has a backlog to write).
HISTORY_CATCH_UP_S: Final = 60.0
#: After healing: how long viewer counts may take to be exact again (contributions of a dead edge
#: lapse after 10 s; every edge re-writes its own every flush).
COUNTS_SETTLE_S: Final = 20.0


@dataclass
class Load:
    """The size of a case's load: ``streams`` streams, ``posters`` per stream (on different edges),
    ``viewers`` in all (spread over streams and edges), each poster posting every ``interval_s``."""

    streams: int = 2
    posters: int = 2
    viewers: int = 30
    interval_s: float = 0.25


@dataclass
class Fault:
    """What breaks: ``target`` is a link (kafka, redis, cassandra, postgres) with a Toxiproxy
    ``action`` (latency, reset_peer, timeout, down), or a process (edge, persist) with kill9 or
    stop (SIGSTOP, then SIGCONT at healing); ``none`` breaks nothing for ``fault_s`` (the soak)."""

    target: str
    action: str
    fault_s: float = 8.0
    warm_s: float = 3.0
    after_s: float = 8.0

    @property
    def name(self) -> str:
        return f"{self.target}-{self.action}"


def _status_mb(pid: int, field: str) -> float:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of a process, in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _sample_rss(fc: FaultCluster, every_s: float, into: list[dict[str, float]]) -> None:
    while True:
        into.append({name: _status_mb(pid, "VmRSS") for name, pid in fc.pids().items()})
        await asyncio.sleep(every_s)


def rss_drift(samples: list[dict[str, float]]) -> dict[str, float]:
    """Per process, the RSS change from the end of the first sixth of the run (start-up and
    warm-up caches filled) to the end, in % (the soak's < 5 % rule)."""
    if len(samples) < 6:
        return {}
    base, last = samples[len(samples) // 6], samples[-1]
    return {
        name: round(100.0 * (last[name] - base[name]) / base[name], 1)
        for name in base
        if base[name] and last.get(name)
    }


AUDIT_HISTORY_BUDGET: Final = (
    "--set",
    "chat.limits.history_pages_per_minute=1200",
    "--set",
    "chat.limits.history_pages_per_minute_per_user=1200",
)


class FaultCluster:
    """Three edges and a persist worker. Every service link through Toxiproxy, or, with
    ``redis_cluster``, the services directly and Redis as that private Redis Cluster (the
    ``redis-cluster`` target: kill -9 of a master)."""

    def __init__(self, tmp: Path, redis_cluster: PrivateRedisCluster | None = None) -> None:
        self.redis_cluster = redis_cluster
        self.links: Links | None = None
        if redis_cluster is not None:
            self.via = {"redis": redis_cluster.start()}
        else:
            self.links = Links()
            self.via = self.links.create()
        self.cluster = Cluster(tmp, via=self.via)
        self.persist: Worker | None = None
        self._seq = 0

    async def start(self) -> None:
        await self.cluster.create()
        for index in range(EDGES):
            # The audit pages a stream's whole history through an edge (a soak's is ~180 pages a
            # stream, the budget 60 a minute); history budgets are not what this suite tests.
            self.cluster.edge(f"e{index}", *AUDIT_HISTORY_BUDGET)
        self.persist = self.cluster.persist_worker()

    @property
    def edges(self) -> list[ServeProcess]:
        return self.cluster.edges

    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{edge.port}/live" for edge in self.edges]

    def pids(self) -> dict[str, int]:
        pids = {f"edge{i}": e.proc.pid for i, e in enumerate(self.edges) if e.proc is not None}
        if self.persist is not None and self.persist.proc is not None:
            pids["persist"] = self.persist.proc.pid
        return pids

    async def apply(self, fault: Fault) -> Callable[[], Awaitable[None]]:
        """Break the target; returns what heals it."""
        if fault.target in ("kafka", "redis", "cassandra", "postgres"):
            links = self.links
            assert links is not None
            links.fault(fault.target, fault.action)

            async def heal_link() -> None:
                links.heal(fault.target)

            return heal_link
        if fault.target == "redis-cluster":
            nodes = self.redis_cluster
            assert nodes is not None
            killed = nodes.masters()[0]
            nodes.kill(killed)

            async def restart_node() -> None:
                assert nodes is not None
                nodes.restart(killed)

            return restart_node
        if fault.target == "none":  # the soak: steady load, nothing breaks

            async def nothing() -> None:
                pass

            return nothing
        if fault.target == "edge":
            edge = self.edges[0]
            assert edge.proc is not None
            if fault.action == "kill9":
                edge.proc.kill()
                edge.proc.wait(10)
                edge.log.close()

                async def restart_edge() -> None:
                    await asyncio.to_thread(edge.start)

                return restart_edge
            edge.proc.send_signal(signal.SIGSTOP)

            async def cont_edge() -> None:
                assert edge.proc is not None
                edge.proc.send_signal(signal.SIGCONT)

            return cont_edge
        if fault.target == "persist":
            worker = self.persist
            assert worker is not None and worker.proc is not None
            if fault.action == "kill9":
                worker.proc.kill()
                worker.proc.wait(10)

                async def restart_worker() -> None:
                    assert worker is not None
                    worker.start()

                return restart_worker
            worker.proc.send_signal(signal.SIGSTOP)

            async def cont_worker() -> None:
                assert worker is not None and worker.proc is not None
                worker.proc.send_signal(signal.SIGCONT)

            return cont_worker
        raise ValueError(f"unknown fault target {fault.target!r}")

    async def history(self, stream: str) -> set[int]:
        """Every comment id history serves for ``stream`` (paged through an edge, as a client does)."""
        tok = token(self.cluster.secret, "auditor", "broadcaster")
        deadline = time.monotonic() + HISTORY_CATCH_UP_S
        for attempt in range(EDGES):
            url = f"{self.urls()[attempt]}?token={tok}"
            try:
                wire = await Wire.open(url, lambda m: None)
            except Exception:
                continue
            try:
                await wire.call("join", 10.0, stream=stream)
                ids: set[int] = set()
                before: int | None = None
                while True:
                    fields: dict[str, Any] = {"stream": stream, "limit": HISTORY_PAGE}
                    if before is not None:
                        fields["before"] = before
                    page = await wire.call("history", 10.0, **fields)
                    if page.get("t") != "history":
                        # Told to come back (history still reconnecting after an outage, or
                        # budgets): as a client does, until the catch-up deadline.
                        # rate_limited always: a soak's history is ~180 pages a stream at 60 a minute.
                        code = page.get("code")
                        if code == "rate_limited" or (code == "unavailable" and time.monotonic() < deadline):
                            await asyncio.sleep(float(page.get("retry_ms", 500)) / 1000)
                            continue
                        raise AssertionError(f"history refused: {page}")
                    items = page.get("items", [])
                    got = [int(item["id"]) for item in items]
                    ids.update(got)
                    if not got or not page.get("more"):
                        return ids
                    before = min(got)
            except (TimeoutError, ConnectionError):
                continue
            finally:
                await wire.close()
        raise AssertionError("no edge served history")

    async def counts_settle(self, stream: str, expected: int, timeout: float) -> float | None:
        """Seconds until a join's snapshot counts ``expected`` viewers in ``stream`` (the joiner
        included), or None when it did not within ``timeout`` (the last count is logged)."""
        tok = token(self.cluster.secret, "auditor", "broadcaster")
        started = time.monotonic()
        wire = await Wire.open(f"{self.urls()[1]}?token={tok}", lambda m: None)
        try:
            seen = None
            while time.monotonic() - started < timeout:
                snap = await wire.call("join", 10.0, stream=stream)
                seen = (snap.get("n") or {}).get("v")
                if seen == expected:
                    return round(time.monotonic() - started, 1)
                await asyncio.sleep(1.0)
            print(f"counts in {stream}: {seen} viewers, expected {expected}")
            return None
        finally:
            await wire.close()

    async def close(self) -> None:
        if self.links is not None:
            self.links.heal_all()
        await self.cluster.close(check_tracebacks=False)
        if self.links is not None:
            self.links.delete()
        if self.redis_cluster is not None:
            self.redis_cluster.stop()


@dataclass
class CaseRun:
    fault: Fault
    load: Load
    verdict: Verdict | None = None
    # Case-specific checks made while the fault was on (``during``): name -> what was seen.
    probes: dict[str, Any] = field(default_factory=dict)


async def run_case(
    fc: FaultCluster,
    fault: Fault,
    load: Load | None = None,
    during: Callable[[FaultCluster, list[str], CaseRun], Awaitable[None]] | None = None,
) -> CaseRun:
    load = load or Load()
    run = CaseRun(fault, load)
    fc._seq += 1
    tag = f"{fault.name}-{fc._seq}"
    streams = [f"f-{tag}-{i}" for i in range(load.streams)]
    edges = Edges(fc.urls())
    secret = fc.cluster.secret
    # Viewer i watches stream i % streams from edge (i // streams) % EDGES: every stream is open
    # on every edge (with as many streams as edges, i % EDGES would pin each stream to one edge).
    viewers = [
        Viewer(f"v-{tag}-{i}", streams[i % load.streams], edges, (i // load.streams) % EDGES, secret)
        for i in range(load.viewers)
    ]
    posters = [
        Poster(f"p-{tag}-{s}-{j}", stream, edges, (s + j) % EDGES, secret)
        for s, stream in enumerate(streams)
        for j in range(load.posters)
    ]
    stop_viewers = asyncio.Event()
    stop_posters = asyncio.Event()
    finish_by = [float("inf")]
    joined = [asyncio.Event() for _ in viewers]
    viewer_tasks = [
        asyncio.ensure_future(v.run(stop_viewers, e)) for v, e in zip(viewers, joined, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in joined)), 60)
    poster_tasks = [asyncio.ensure_future(p.run(stop_posters, load.interval_s, finish_by)) for p in posters]
    rss: list[dict[str, float]] = []
    sampler = asyncio.ensure_future(_sample_rss(fc, max(1.0, fault.fault_s / 60), rss))
    heal: Callable[[], Awaitable[None]] | None = None
    healed_at = float("inf")
    try:
        await asyncio.sleep(fault.warm_s)
        heal = await fc.apply(fault)
        fault_at = time.monotonic()
        if during is not None:
            await during(fc, streams, run)
        await asyncio.sleep(max(0.0, fault.fault_s - (time.monotonic() - fault_at)))
        await heal()
        heal = None
        healed_at = time.monotonic()
        await asyncio.sleep(fault.after_s)
        # Viewer counts are exact again (an edge's contributions expire 10 s after it died; after
        # a Redis outage each edge writes its own again): everyone connected, the auditor too.
        for stream in streams:
            people = {v.name for v in viewers if v.stream == stream} | {
                p.name for p in posters if p.stream == stream
            }
            settled = await fc.counts_settle(stream, len(people) + 1, COUNTS_SETTLE_S)
            run.probes[f"counts_settled_s_{streams.index(stream)}"] = settled
    finally:
        if heal is not None:
            await heal()
        finish_by[0] = time.monotonic() + 30
        stop_posters.set()
        await asyncio.gather(*poster_tasks, return_exceptions=True)
    # Everything acked has had a tick or two to reach every edge's viewers.
    await asyncio.sleep(2.0)
    stop_viewers.set()
    await asyncio.gather(*viewer_tasks, return_exceptions=True)
    sampler.cancel()
    peak = {name: round(_status_mb(pid, "VmHWM"), 1) for name, pid in fc.pids().items()}
    log = await read_log(fc.cluster.kafka_servers, fc.cluster.topic, PARTITIONS)
    acked_ids = {s: {a.id for p in posters if p.stream == s for a in p.acks} for s in streams}
    history: dict[str, set[int]] = {}
    deadline = time.monotonic() + HISTORY_CATCH_UP_S
    for stream in streams:
        while True:
            history[stream] = await fc.history(stream)
            if acked_ids[stream] <= history[stream] or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
    # A viewer told of a gap, still missing something, refetches once more now history is complete.
    for viewer in viewers:
        if (viewer.gaps or viewer.gap_events) and not acked_ids[viewer.stream] <= set(viewer.shown):
            await viewer.final_refetch()
    for item in (*posters, *viewers):
        with contextlib.suppress(Exception):
            await item.close()
    verdict = judge(posters, viewers, log, history)
    verdict.peak_rss_mb = peak
    verdict.notes["gap_true_snapshots"] = sum(v.gaps for v in viewers)
    verdict.notes["viewer_disconnects"] = sum(v.disconnects for v in viewers)
    verdict.notes["rss_drift_pct"] = rss_drift(rss)
    # Time from healing to the first ack of a post first sent after it (posting works again).
    after = [a.at for p in posters for a in p.acks if a.sent >= healed_at]
    verdict.notes["posting_back_s"] = round(min(after) - healed_at, 2) if after else None
    run.verdict = verdict
    return run
