"""Cassandra history stores for the contract suites: ONE keyspace for every test, a unique stream
name space per test (``test_history_contract`` names its streams through its ``name`` fixture).

Why not a keyspace per test: a keyspace with the store's six tables takes 1.6-2.4 s to create
(every CREATE waits for schema agreement) and 1.6-2.2 s to drop, measured on this 2-core machine
under load ~3, against ~0.25 s to open a store on an existing keyspace; the history contract has
~17 tests, so a keyspace each would add about a minute and leave a snapshot per dropped keyspace
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
