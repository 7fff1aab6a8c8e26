"""One target's measurements: idle density, connect cost, steady fan-out and a rate ladder.

Phases, all against one fresh server process and fresh load-generator processes:
1. baseline: server started and settled; RSS and CPU sampled.
2. connect: ``conns`` viewers (spread over ``workers`` processes, one 127.0.0.x source address
   each) plus one publisher; server CPU over this phase / connections = CPU per accepted connection.
3. idle: after ``settle_s``, (RSS - baseline RSS) / connections = RSS per idle connection.
4. steady: ``steady_rate`` msg/s for ``steady_s``; then a ladder of rates, ``step_s`` each. A step
   passes when no message is lost, no viewer disconnected and p99 is within the limit; the ladder
   stops after two failed steps in a row (see ``_ladder``).
Each step waits up to ``drain_timeout_s`` after the last send for every delivery; later ones count
as lost. Server CPU per delivered message = server CPU from first send to drain end / deliveries.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fanout import latency, procstat
from bench.fanout.processes import LoadWorker, ServerExited, ServerProcess, log_tail
from bench.fanout.targets import Target

# A load-generator process above this share of one core is likely the bottleneck, not the server.
CLIENT_SATURATED_CORES = 0.85
MAX_FAILED_STEPS_IN_A_ROW = 2
# A step that delivered less than this leaves a backlog no higher rate can clear.
HOPELESS_DELIVERED_RATIO = 0.5
# Busy cores (server + load generator + everything else) above this leave the server no headroom.
MACHINE_SATURATED_FRACTION = 0.9


@dataclass(frozen=True, slots=True)
class Plan:
    conns: int
    workers: int
    steady_s: float
    ladder: tuple[float, ...]
    step_s: float
    settle_s: float
    drain_timeout_s: float
    steady_rate: float = 2.0
    p99_limit_ms: float = 250.0
    connect_concurrency: int = 64
    host: str = "127.0.0.1"
    # Viewer processes: "python" (bench.fanout.loadgen) or "rust" (lc-loadgen). The publisher is Python.
    loadgen: str = "python"

    def __post_init__(self) -> None:
        if self.loadgen not in ("python", "rust"):
            raise ValueError(f"loadgen={self.loadgen!r}: choose python or rust")
        if self.conns < self.workers or self.workers < 1:
            raise ValueError(f"need 1 <= workers <= conns, got workers={self.workers} conns={self.conns}")
        # One server process holds every connection; the open-file limit here is 20 000.
        if self.conns > 15_000:
            raise ValueError(f"conns={self.conns}: at most 15 000 connections per server process")


FULL = Plan(
    conns=15_000,
    workers=4,
    steady_s=30.0,
    ladder=(5, 10, 20, 50, 100, 200, 400, 800, 1600),
    step_s=10.0,
    settle_s=5.0,
    drain_timeout_s=5.0,
)
QUICK = Plan(
    conns=2_000, workers=2, steady_s=3.0, ladder=(20, 200), step_s=2.0, settle_s=0.5, drain_timeout_s=2.0
)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class TargetRun:
    def __init__(self, target: Target, plan: Plan, port: int, index: int, log_dir: Path) -> None:
        self.target = target
        self.plan = plan
        self.port = port
        # Each target gets its own source addresses, so earlier targets' TIME_WAIT ports never collide.
        self.subnet = f"127.0.{10 + index}"
        self.log_dir = log_dir
        self.server = ServerProcess(target.argv(plan.host, port), log_dir / f"{target.name}-server.log")
        self.viewers: list[LoadWorker] = []
        self.publisher: LoadWorker | None = None
        self.viewer_count = 0
        self.next_seq = 0

    async def run(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "target": self.target.name,
            "server_command": " ".join(self.server.command),
            "port": self.port,
            "tick_frames": self.target.tick_frames,
        }
        log = open(self.log_dir / f"{self.target.name}-loadgen.log", "wb")  # closed in run()'s finally
        try:
            await self.server.start(self.plan.host, self.port)
            await self._spawn_workers(log)
            result.update(await self._density())
            result["steady"] = await self._step(self.plan.steady_rate, self.plan.steady_s)
            result["ladder"] = await self._ladder(result["steady"])
            result["max_ok_rate"] = max(
                (step["rate"] for step in [result["steady"], *result["ladder"]] if step["ok"]), default=0
            )
            result["rss_after_load_bytes"] = procstat.rss_bytes(self.server.pid)
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            result["server_log_tail"] = log_tail(self.server.log_path)
        finally:
            # Clients leave first: a server shutting down with thousands of peers still attached
            # spends seconds in close handshakes that measure nothing.
            workers = [*self.viewers, *([self.publisher] if self.publisher else [])]
            await asyncio.gather(*(worker.stop() for worker in workers))
            result["server_exit_code"] = await self.server.stop()
            log.close()
        return result

    async def _spawn_workers(self, log: Any) -> None:
        tick = self.target.tick_frames
        *self.viewers, self.publisher = await asyncio.gather(
            *(
                LoadWorker.spawn(f"viewers-{i}", "viewers", tick, log, self.plan.loadgen)
                for i in range(self.plan.workers)
            ),
            LoadWorker.spawn("publisher", "publisher", tick, log),
        )
        # Let the interpreters finish importing so their start-up is not counted as load.
        await asyncio.gather(*(w.request("status", 60) for w in [*self.viewers, self.publisher]))

    def _url(self) -> str:
        return f"ws://{self.plan.host}:{self.port}/"

    async def _density(self) -> dict[str, Any]:
        assert self.publisher is not None
        await asyncio.sleep(self.plan.settle_s)
        base = procstat.sample(self.server.pid)
        base_user, base_system = procstat.cpu_times(self.server.pid)
        slab_before = procstat.kernel_slab_bytes()
        started = time.monotonic()
        counts = split(self.plan.conns, self.plan.workers)
        connects = await asyncio.gather(
            *(
                worker.request(
                    "connect",
                    600,
                    url=self._url(),
                    count=count,
                    source_ip=f"{self.subnet}.{i + 1}",
                    concurrency=self.plan.connect_concurrency,
                )
                for i, (worker, count) in enumerate(zip(self.viewers, counts, strict=True))
            ),
            self.publisher.request(
                "connect", 60, url=self._url(), count=1, source_ip=f"{self.subnet}.250", concurrency=1
            ),
        )
        connect_s = time.monotonic() - started
        after_connect = procstat.sample(self.server.pid)
        connect_user, connect_system = procstat.cpu_times(self.server.pid)
        connect_cpu = (connect_user - base_user) + (connect_system - base_system)
        self.viewer_count = sum(reply["connected"] for reply in connects[:-1])
        if connects[-1]["connected"] != 1:
            raise RuntimeError(f"publisher could not connect: {connects[-1]['errors']}")
        total = self.viewer_count + 1
        await asyncio.sleep(self.plan.settle_s)
        idle = procstat.sample(self.server.pid)
        slab_after = procstat.kernel_slab_bytes()
        errors: dict[str, int] = {}
        for reply in connects:
            for text, count in reply["errors"].items():
                errors[text] = errors.get(text, 0) + count
        return {
            "connections_requested": self.plan.conns + 1,
            "connections": total,
            "connect_failures": sum(reply["failed"] for reply in connects),
            "connect_errors": errors,
            "connect_seconds": connect_s,
            "rss_baseline_bytes": base.rss_bytes,
            "rss_idle_bytes": idle.rss_bytes,
            "rss_per_idle_conn_bytes": (idle.rss_bytes - base.rss_bytes) / total,
            "cpu_per_accept_us": (after_connect.cpu_s - base.cpu_s) / total * 1e6,
            "accept_sys_share": (connect_system - base_system) / connect_cpu if connect_cpu else 0.0,
            "idle_cpu_cores": (idle.cpu_s - after_connect.cpu_s) / self.plan.settle_s,
            # Both ends of every connection live on this machine; other processes' slab use is noise.
            "kernel_slab_per_conn_both_ends_bytes": (slab_after - slab_before) / total,
        }

    async def _ladder(self, steady: dict[str, Any]) -> list[dict[str, Any]]:
        """Climb the rates; stop after two failed steps in a row or one that lost most messages.

        A failed step does not end the climb: batching servers get cheaper per message as the rate
        grows, so a higher rate can pass where a lower one failed.
        """
        steps: list[dict[str, Any]] = []
        failures = 0 if steady["ok"] else 1
        for rate in self.plan.ladder:
            if rate <= self.plan.steady_rate:
                continue
            if failures:
                await self._quiesce()
            if failures >= MAX_FAILED_STEPS_IN_A_ROW:
                break
            step = await self._step(rate, self.plan.step_s)
            steps.append(step)
            failures = 0 if step["ok"] else failures + 1
            if step["delivered_ratio"] < HOPELESS_DELIVERED_RATIO:
                break
        return steps

    async def _quiesce(self, limit_s: float = 10.0) -> None:
        """After a failed step, let the server finish its backlog so the next step starts clean."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            before = procstat.cpu_seconds(self.server.pid)
            await asyncio.sleep(0.5)
            if procstat.cpu_seconds(self.server.pid) - before < 0.05 * 0.5:
                return

    def _client_pids(self) -> list[int]:
        assert self.publisher is not None
        return [w.pid for w in self.viewers] + [self.publisher.pid]

    async def _step(self, rate: float, seconds: float) -> dict[str, Any]:
        assert self.publisher is not None
        lo = self.next_seq
        clients0 = [procstat.cpu_seconds(pid) for pid in self._client_pids()]
        user0, system0 = procstat.cpu_times(self.server.pid)
        reads0, writes0 = procstat.vfs_calls(self.server.pid)
        machine0 = procstat.machine_busy_seconds()
        started = time.monotonic()
        published = await self.publisher.request(
            "publish", seconds * 4 + 60, rate=rate, seconds=seconds, first_seq=lo
        )
        hi = self.next_seq = published["next_seq"]
        expected = self.viewer_count * (hi - lo)
        sent_done = time.monotonic()
        delivered = 0
        while True:
            self.server.check_alive()
            replies = await asyncio.gather(*(w.request("delivered", 60, lo=lo, hi=hi) for w in self.viewers))
            delivered = sum(reply["delivered"] for reply in replies)
            if delivered >= expected or time.monotonic() - sent_done > self.plan.drain_timeout_s:
                break
            await asyncio.sleep(0.05)
        wall = time.monotonic() - started
        user1, system1 = procstat.cpu_times(self.server.pid)
        # Rounded to the 10 ms tick so float noise never yields a negative difference.
        server_cpu = round((user1 - user0) + (system1 - system0), 6)
        reads1, writes1 = procstat.vfs_calls(self.server.pid)
        clients = [
            round(procstat.cpu_seconds(pid) - c0, 6)
            for pid, c0 in zip(self._client_pids(), clients0, strict=True)
        ]
        machine = procstat.machine_busy_seconds() - machine0
        summaries = await asyncio.gather(*(w.request("summarize", 120, lo=lo, hi=hi) for w in self.viewers))
        step = self._verdict(
            rate, published, expected, summaries, wall, sent_done - started, server_cpu, clients, machine
        )
        step["server_sys_share"] = round(system1 - system0, 6) / server_cpu if server_cpu else 0.0
        # read/write/readv/writev only (not recv/send/sendmsg): comparable for one server across steps.
        step["server_vfs_read_calls"] = reads1 - reads0
        step["server_vfs_write_calls"] = writes1 - writes0
        return step

    def _verdict(
        self,
        rate: float,
        published: dict[str, Any],
        expected: int,
        summaries: list[dict[str, Any]],
        wall: float,
        publish_wall: float,
        server_cpu: float,
        clients: list[float],
        machine: float,
    ) -> dict[str, Any]:
        histogram = latency.merge(s["histogram"] for s in summaries)
        delivered = sum(s["delivered"] for s in summaries)
        disconnects = sum(s["disconnects"] for s in summaries)
        close_codes: dict[str, int] = {}
        for s in summaries:
            for code, count in s["close_codes"].items():
                close_codes[code] = close_codes.get(code, 0) + count
        max_us = max(s["max_us"] for s in summaries)
        # A bucket's upper edge may pass the exact maximum; never report a percentile above it.
        p50, p99 = (
            None if p is None else min(p, max_us)
            for p in (latency.percentile_us(histogram, 0.50), latency.percentile_us(histogram, 0.99))
        )
        p99_ms = p99 / 1000 if p99 is not None else math.inf
        all_delivered = delivered == expected and expected > 0
        viewer_cores = [cpu / wall for cpu in clients[:-1]]
        client_saturated = max(viewer_cores) >= CLIENT_SATURATED_CORES
        step = {
            "rate": rate,
            "publish_seconds": publish_wall,
            "sent": published["sent"],
            "publisher_max_lag_ms": published["max_lag_ms"],
            "viewers": self.viewer_count,
            "expected": expected,
            "delivered": delivered,
            "delivered_ratio": delivered / expected if expected else 0.0,
            "p50_ms": p50 / 1000 if p50 is not None else None,
            "p99_ms": p99 / 1000 if p99 is not None else None,
            "max_ms": max_us / 1000,
            "gaps": sum(s["gaps"] for s in summaries),
            "malformed": sum(s["malformed"] for s in summaries),
            "malformed_example": next(
                (s["malformed_example"] for s in summaries if s["malformed_example"]), ""
            ),
            "disconnects": disconnects,
            "close_codes": close_codes,
            "wall_seconds": wall,
            "server_cpu_seconds": server_cpu,
            "server_cores": server_cpu / wall,
            "server_cpu_per_delivered_us": server_cpu / delivered * 1e6 if delivered else None,
            "loadgen_cpu_seconds": sum(clients),
            "loadgen_cores": sum(clients) / wall,
            "loadgen_max_process_cores": max(viewer_cores),
            "other_cores": max(0.0, (machine - server_cpu - sum(clients)) / wall),
            "machine_busy_cores": machine / wall,
            "client_saturated": client_saturated,
            "machine_saturated": machine / wall >= MACHINE_SATURATED_FRACTION * (os.cpu_count() or 1),
        }
        step["ok"] = all_delivered and disconnects == 0 and p99_ms <= self.plan.p99_limit_ms
        step["histogram"] = {str(k): v for k, v in sorted(histogram.items())}
        return step


async def run_target(target: Target, plan: Plan, port: int, index: int, log_dir: Path) -> dict[str, Any]:
    result = await TargetRun(target, plan, port, index, log_dir).run()
    result["plan"] = asdict(plan)
    return result


__all__ = ["FULL", "QUICK", "Plan", "ServerExited", "run_target"]
