"""The only module that touches cassandra-driver (it has no type stubs): a typed, asyncio-bridged session.

Every request goes out with ``execute_async`` on the driver's libev reactor (one I/O thread for the
process, whatever the number of requests); its ``ResponseFuture`` callbacks run on that thread and hand
the outcome to the caller's event loop with ``call_soon_threadsafe``. No thread per call: threads are
used only for the blocking one-off steps (connect, prepare, shutdown).

Errors: the driver's "the cluster cannot answer now" family (no host, client or server timeout,
unavailable replicas, overloaded or bootstrapping coordinator, broken connection) is
``BackendUnavailable``; any other driver or server error (a bad query, a schema mismatch) is
``BackendError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import cast

from cassandra import (  # type: ignore[import-untyped]
    ConsistencyLevel,
    CoordinationFailure,
    OperationTimedOut,
    Timeout,
    Unavailable,
)
from cassandra.cluster import (  # type: ignore[import-untyped]
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    ResponseFuture,
    Session,
)
from cassandra.connection import ConnectionException  # type: ignore[import-untyped]
from cassandra.io.libevreactor import LibevConnection  # type: ignore[import-untyped]
from cassandra.metadata import KeyspaceMetadata, TableMetadata  # type: ignore[import-untyped]
from cassandra.policies import (  # type: ignore[import-untyped]
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.protocol import (  # type: ignore[import-untyped]
    IsBootstrappingErrorMessage,
    OverloadedErrorMessage,
)
from cassandra.query import (  # type: ignore[import-untyped]
    BatchStatement,
    BatchType,
    PreparedStatement,
    tuple_factory,
)

from livechat.ports.errors import BackendError, BackendUnavailable, ConfigurationError

log = logging.getLogger(__name__)

# One result row, columns in SELECT order; callers cast each column to the CQL type they selected.
Row = tuple[object, ...]
Params = Sequence[object]

# Native protocol v5 (Cassandra 4.0+): checksummed frames, per-query keyspace, better error codes.
PROTOCOL_VERSION = 5
# Between tries to reach a host marked down: doubling from the first to the second, in seconds.
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 4.0

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    NoHostAvailable,
    OperationTimedOut,
    Unavailable,
    Timeout,  # ReadTimeout and WriteTimeout
    CoordinationFailure,  # ReadFailure and WriteFailure: replicas answered with an error
    ConnectionException,
    OverloadedErrorMessage,
    IsBootstrappingErrorMessage,
)


def consistency_level(name: str) -> int:
    """The driver's code for a consistency level name (``LOCAL_QUORUM``, ``ONE``…)."""
    code = cast(dict[str, int], ConsistencyLevel.name_to_value).get(name.upper())
    if code is None:
        known = ", ".join(sorted(cast(dict[str, int], ConsistencyLevel.name_to_value)))
        raise ConfigurationError(f"unknown Cassandra consistency level {name!r}; known: {known}")
    return code


def map_error(exc: BaseException) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, _UNAVAILABLE):
        return BackendUnavailable(f"cassandra: {type(exc).__name__}: {exc}")
    return BackendError(f"cassandra: {type(exc).__name__}: {exc}")


class Statement:
    """A prepared statement (opaque outside this module)."""

    __slots__ = ("_prepared",)

    def __init__(self, prepared: object) -> None:
        self._prepared = prepared


def discard(fut: asyncio.Future[list[Row]]) -> None:
    """Drop a started request's future without leaving a "never retrieved" exception behind."""
    if fut.done():
        if not fut.cancelled():
            fut.exception()
    else:
        fut.cancel()


def _resolve(fut: asyncio.Future[list[Row]], rows: object) -> None:
    if not fut.done():  # the awaiting task may have been cancelled meanwhile
        fut.set_result([] if rows is None else cast(list[Row], rows))


def _fail(fut: asyncio.Future[list[Row]], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(map_error(exc))


class CqlSession:
    """A connected driver session with one execution profile (consistency, timeout, tuple rows)."""

    def __init__(self, cluster: Cluster, session: Session, consistency: int) -> None:
        self._cluster = cluster
        self._session = session
        self._consistency = consistency

    @classmethod
    async def connect(
        cls,
        contact_points: Sequence[tuple[str, int]],
        *,
        consistency: int,
        local_dc: str | None,
        timeout_s: float,
    ) -> CqlSession:
        profile = ExecutionProfile(
            # Token-aware: each request goes straight to a replica of its partition.
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_dc)),
            consistency_level=consistency,
            request_timeout=timeout_s,
            row_factory=tuple_factory,
        )
        cluster = Cluster(
            contact_points=list(contact_points),
            protocol_version=PROTOCOL_VERSION,
            connection_class=LibevConnection,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=timeout_s,
            control_connection_timeout=timeout_s,
            # The driver's default waits up to 600 s between tries to reach a host it marked
            # down; after a 10 s outage its next try came ~16 s after Cassandra was back.
            reconnection_policy=ExponentialReconnectionPolicy(RECONNECT_MIN_S, RECONNECT_MAX_S),
        )
        try:
            session = await asyncio.to_thread(cluster.connect)
        except BaseException as exc:
            await asyncio.to_thread(cluster.shutdown)
            if isinstance(exc, Exception):
                raise map_error(exc) from exc
            raise
        return cls(cluster, session, consistency)

    async def prepare_all(self, queries: Sequence[str]) -> list[Statement]:
        """Prepare ``queries`` (one blocking round trip each, so together in one worker thread)."""

        def run() -> list[Statement]:
            return [Statement(self._session.prepare(q)) for q in queries]

        try:
            return await asyncio.to_thread(run)
        except Exception as exc:
            raise map_error(exc) from exc

    def _send(self, statement: object) -> asyncio.Future[list[Row]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Row]] = loop.create_future()
        try:
            response: ResponseFuture = self._session.execute_async(statement)
        except Exception as exc:  # e.g. NoHostAvailable raised before anything is sent
            fut.set_exception(map_error(exc))
            return fut
        response.add_callbacks(
            lambda rows: loop.call_soon_threadsafe(_resolve, fut, rows),
            lambda exc: loop.call_soon_threadsafe(_fail, fut, exc),
        )
        return fut

    def _bind(self, statement: Statement, params: Params) -> object:
        prepared: PreparedStatement = statement._prepared
        bound = prepared.bind(params)
        # Every query here carries its own LIMIT: one response, never a silently partial page.
        bound.fetch_size = None
        return bound

    async def rows(self, statement: Statement, params: Params) -> list[Row]:
        return await self._send(self._bind(statement, params))

    def start(self, statement: Statement, params: Params) -> asyncio.Future[list[Row]]:
        """Send a query now and return its future (to overlap it with other requests).

        A caller that ends up not needing it must ``discard`` it."""
        return self._send(self._bind(statement, params))

    async def execute(self, statement: Statement, params: Params) -> None:
        await self._send(self._bind(statement, params))

    async def batch(self, items: Sequence[tuple[Statement, Params]], *, logged: bool = False) -> None:
        """Apply ``items`` as one batch (callers keep an unlogged batch inside one partition)."""
        batch = BatchStatement(
            batch_type=BatchType.LOGGED if logged else BatchType.UNLOGGED,
            consistency_level=self._consistency,
        )
        for statement, params in items:
            batch.add(self._bind(statement, params))
        await self._send(batch)

    async def ddl(self, cql: str) -> None:
        """A schema change; returns once the cluster agrees on the new schema (the driver waits)."""
        await self._send(cql)

    def _table(self, keyspace: str, table: str) -> TableMetadata | None:
        keyspaces = cast(dict[str, KeyspaceMetadata], self._cluster.metadata.keyspaces)
        ks = keyspaces.get(keyspace)
        return None if ks is None else cast(dict[str, TableMetadata], ks.tables).get(table)

    def has_table(self, keyspace: str, table: str) -> bool:
        """Whether the driver's schema metadata knows ``keyspace.table``."""
        return self._table(keyspace, table) is not None

    def table_option(self, keyspace: str, table: str, option: str) -> object | None:
        """A table option (``gc_grace_seconds``…) from the driver's schema metadata (None: no table)."""
        meta = self._table(keyspace, table)
        return None if meta is None else cast(dict[str, object], meta.options).get(option)

    async def close(self) -> None:
        await asyncio.to_thread(self._cluster.shutdown)
