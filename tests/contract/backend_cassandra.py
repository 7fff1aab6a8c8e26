"""Cassandra history stores for the contract suites: ONE keyspace for every test, a unique stream
name space per test (``test_history_contract`` names its streams through its ``name`` fixture).

Why not a keyspace per test: opening a store on a new keyspace (keyspace + six tables, each CREATE
waiting for schema agreement) took 0.6-1.1 s and dropping it 0.6-1.1 s, against 0.05-0.10 s to open
one on an existing keyspace (3 rounds each, 2 cores under load 3.3; an earlier bare-DDL probe under
load 5.5: 1.7-2.4 s to create, 1.6-2.2 s to drop). With 16 Cassandra tests in the history contract
a keyspace each would add 20-35 s a run and leave a snapshot per dropped keyspace
(``auto_snapshot``). Streams are the store's unit of isolation (every read names one stream), so
unique stream names isolate tests as well as keyspaces do, concurrent sessions included.

The keyspace's name carries a digest of the schema the store creates, so a changed schema gets a
new keyspace instead of meeting stale tables. Its data expires on its own (every row has a TTL).
The server is the shared one from ``tests.cluster_services`` (a test FAILS when it cannot start).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from livechat.backends.cassandra_schema import table_ddl

from tests.cluster_services import service_url

# Bump when the keyspace's settings (not its tables) change.
_BUILD = "1"


def keyspace() -> str:
    schema = "".join(table_ddl("ks", 0, 0, 0).values())
    return "lc_test_history_" + hashlib.sha256(f"{_BUILD}{schema}".encode()).hexdigest()[:12]


def server_url() -> str:
    """``cassandra://host:port`` of the shared server, started if needed."""
    return service_url("cassandra")


def fresh_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The session-wide test keyspace (``kind`` must be "history"); tests keep to their own streams."""
    if kind != "history":
        raise ValueError(f"Cassandra backs only the history store, not {kind!r}")
    return f"{server_url()}/{keyspace()}?replication=1"
