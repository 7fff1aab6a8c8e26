"""Nothing acked is lost, whatever single part fails (issue 9; policies in docs/operations.md).

Each case runs a steady load on a three-edge cluster (``tests.faults.case``), breaks one thing,
heals it, and fails on any acked comment lost, any comment shown twice, any viewer left with a
silent gap, and any delivery out of log order. The short form (this file, in CI) runs each
failure once; ``make faults`` runs the long form (every link x every toxic, every process fault,
a bigger load) and writes the table of docs/results.md (``LIVECHAT_FAULTS=long``,
``LIVECHAT_FAULTS_REPORT=<file>``: one JSON line per case).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.case import CaseRun, Fault, FaultCluster, Load, run_case
from tests.faults.links import LINKS, TOXICS
from tests.faults.load import token
from tests.faults.redis_cluster import PrivateRedisCluster
from tests.faults.wire import Wire

MODE = os.environ.get("LIVECHAT_FAULTS", "short")
LONG = MODE == "long"
SOAK = MODE == "soak"
REPORT = os.environ.get("LIVECHAT_FAULTS_REPORT")

SHORT_CASES = [
    Fault("kafka", "down"),
    Fault("redis", "down"),
    Fault("cassandra", "down", fault_s=10.0),
    Fault("postgres", "down"),
    Fault("kafka", "latency"),
    Fault("edge", "kill9", fault_s=3.0),
    Fault("persist", "kill9", fault_s=5.0),
]
LONG_CASES = [Fault(link, toxic) for link in LINKS for toxic in TOXICS] + [
    Fault("edge", "kill9", fault_s=3.0),
    Fault("edge", "stop", fault_s=8.0),
    Fault("persist", "kill9", fault_s=5.0),
    Fault("persist", "stop", fault_s=8.0),
]
#: ``LIVECHAT_FAULTS=soak``: 30 minutes of the long form's load with nothing broken
#: (``LIVECHAT_SOAK_S`` to change it); RSS drift < 5 %, no errors, nothing lost.
SOAK_S = float(os.environ.get("LIVECHAT_SOAK_S", "1800"))
SOAK_CASES = [Fault("none", "soak", fault_s=SOAK_S, warm_s=5.0, after_s=5.0)]
CASES = SOAK_CASES if SOAK else LONG_CASES if LONG else SHORT_CASES
LOAD = Load(streams=3, posters=2, viewers=300, interval_s=0.2) if LONG or SOAK else Load()

pytestmark = pytest.mark.timeout(SOAK_S + 600 if SOAK else 300)


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    fc = FaultCluster(tmp_path_factory.mktemp("faults"))
    try:
        asyncio.run(fc.start())
        yield fc
    finally:
        asyncio.run(fc.close())


def _assert_counts_healed(run: CaseRun) -> None:
    """Viewer counts were exact again within COUNTS_SETTLE_S of healing (None: they were not)."""
    settled = {k: v for k, v in run.probes.items() if k.startswith("counts_settled_s_")}
    assert settled and all(v is not None for v in settled.values()), settled


def _report(run: CaseRun) -> None:
    assert run.verdict is not None
    row = {"case": run.fault.name, **run.verdict.row(), **run.probes}
    print(json.dumps(row))
    if REPORT:
        with open(REPORT, "a") as out:
            out.write(json.dumps(row) + "\n")


async def _postgres_probes(fc: FaultCluster, streams: list[str], run: CaseRun) -> None:
    """While PostgreSQL is down: a moderator's ban gets ``unavailable`` with ``retry_ms``; a user
    banned before the outage is still refused on every edge (the cached ban)."""
    secret = fc.cluster.secret
    seen: dict[str, Any] = {}
    for index, url in enumerate(fc.urls()):
        mod = await Wire.open(f"{url}?token={token(secret, f'mod-{index}', 'moderator')}", lambda m: None)
        try:
            seen[f"mod_join_edge{index}"] = (await mod.call("join", 15.0, stream=streams[0])).get(
                "code", "ok"
            )
            reply = await mod.call("ban", 15.0, stream=streams[0], user=f"someone-{index}")
            seen[f"ban_edge{index}"] = reply.get("code", reply.get("t"))
            seen[f"ban_edge{index}_retry_ms"] = reply.get("retry_ms")
        finally:
            await mod.close()
        banned = await Wire.open(f"{url}?token={token(secret, 'banned-before', 'viewer')}", lambda m: None)
        try:
            seen[f"banned_join_edge{index}"] = (await banned.call("join", 15.0, stream=streams[0])).get(
                "code", "ok"
            )
            reply = await banned.call("post", 5.0, stream=streams[0], text="let me in", cmid=f"b{index}")
            seen[f"banned_post_edge{index}"] = reply.get("code", reply.get("t"))
        finally:
            await banned.close()
    run.probes.update(seen)


#: A join of a stream no edge has open yet, while the link is down: what each policy promises.
FRESH_JOIN = {
    "redis": {"snapshot"},  # the log carries fan-out; Redis is not needed to open a room
    "cassandra": {"snapshot"},  # opened from the log's end; recovery past it says gap: true
    "kafka": {"snapshot", "unavailable"},  # a room follows the log: it may not open without it
    "postgres": {"snapshot", "unavailable"},  # bans and modes cannot be loaded: refused, not guessed
}


async def _fresh_join_probe(fc: FaultCluster, streams: list[str], run: CaseRun) -> None:
    """One viewer per edge joins a stream nobody has open, a second after the link went down."""
    await asyncio.sleep(1.0)
    secret = fc.cluster.secret

    async def probe(index: int, url: str) -> None:
        viewer = await Wire.open(f"{url}?token={token(secret, f'fresh-{index}', 'viewer')}", lambda m: None)
        started = time.monotonic()
        try:
            reply = await viewer.call("join", 30.0, stream=f"{streams[0]}-fresh-{index}")
            run.probes[f"fresh_join_edge{index}"] = reply.get("code", reply.get("t"))
            run.probes[f"fresh_join_edge{index}_retry_ms"] = reply.get("retry_ms")
            run.probes[f"fresh_join_edge{index}_s"] = round(time.monotonic() - started, 2)
        finally:
            await viewer.close()

    await asyncio.gather(*(probe(index, url) for index, url in enumerate(fc.urls())))


async def _ban_before(fc: FaultCluster, stream: str, user: str) -> None:
    secret = fc.cluster.secret
    mod = await Wire.open(f"{fc.urls()[0]}?token={token(secret, 'mod-setup', 'moderator')}", lambda m: None)
    try:
        await mod.call("join", 5.0, stream=stream)
        reply = await mod.call("ban", 10.0, stream=stream, user=user)
        assert reply.get("t") == "ok", reply
    finally:
        await mod.close()
    # Every edge has heard of the ban (the room event crosses edges within a tick or two).
    await asyncio.sleep(1.0)


@pytest.mark.parametrize("fault", CASES, ids=lambda f: f.name)
async def test_nothing_acked_is_lost(fault_cluster: FaultCluster, fault: Fault) -> None:
    during = None
    if fault.action == "down":
        during = _fresh_join_probe
    if fault.target == "postgres" and fault.action == "down":

        async def during(fc: FaultCluster, streams: list[str], run: CaseRun) -> None:
            await _fresh_join_probe(fc, streams, run)
            await _postgres_probes(fc, streams, run)

    started = time.monotonic()
    if fault.target == "postgres" and fault.action == "down":
        # The stream is the first of the case's streams (named from the case's sequence number).
        stream = f"f-{fault.name}-{fault_cluster._seq + 1}-0"
        await _ban_before(fault_cluster, stream, "banned-before")
    run = await run_case(fault_cluster, fault, LOAD, during)
    run.probes["case_s"] = round(time.monotonic() - started, 1)
    _report(run)
    assert run.verdict is not None
    assert run.verdict.failures() == []
    if fault.action == "down":
        for index in range(len(fault_cluster.urls())):
            code = run.probes[f"fresh_join_edge{index}"]
            assert code in FRESH_JOIN[fault.target], run.probes
            assert code == "snapshot" or run.probes[f"fresh_join_edge{index}_retry_ms"], run.probes
    if fault.target == "postgres" and fault.action == "down":
        for index in range(len(fault_cluster.urls())):
            assert run.probes[f"ban_edge{index}"] == "unavailable", run.probes
            assert run.probes[f"ban_edge{index}_retry_ms"], run.probes
            assert run.probes[f"banned_post_edge{index}"] == "banned", run.probes
    if SOAK:
        assert not run.verdict.errors, run.verdict.errors
        drift = run.verdict.notes["rss_drift_pct"]
        assert drift and all(pct < 5.0 for pct in drift.values()), drift
    if fault.target == "kafka" and fault.action == "down":
        # Posts during the outage were refused with a reason to retry, not silently held.
        assert run.verdict.errors.get("poster:unavailable", 0) > 0, run.verdict.errors


@pytest.fixture(scope="module")
def redis_cluster_faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    tmp = tmp_path_factory.mktemp("faults-redis-cluster")
    fc = FaultCluster(tmp, redis_cluster=PrivateRedisCluster(tmp / "services"))
    try:
        asyncio.run(fc.start())
        yield fc
    finally:
        asyncio.run(fc.close())


@pytest.mark.skipif(SOAK, reason="the soak breaks nothing")
async def test_a_redis_cluster_master_dies(redis_cluster_faults: FaultCluster) -> None:
    """kill -9 of one of three masters (its replica is promoted ~3-4 s later), restarted after 8 s:
    fan-out, limits and counts go on from the log and the other masters; nothing acked is lost."""
    run = await run_case(redis_cluster_faults, Fault("redis-cluster", "kill-master"), LOAD)
    _report(run)
    assert run.verdict is not None
    assert run.verdict.failures() == []
    _assert_counts_healed(run)
