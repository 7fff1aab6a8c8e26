"""Every default of the workers, in one place (``livechat worker --help`` shows them)."""

from __future__ import annotations

from typing import Final

PERSIST_GROUP: Final = "livechat-persist"
NOTIFY_GROUP: Final = "livechat-notify"
NOTIFICATIONS_TOPIC: Final = "notifications"

# Records one getmany hands over. A persist batch is one put_many (SQLite: one transaction;
# Cassandra: concurrent single-partition batches), so larger batches amortise the round trips.
MAX_BATCH_RECORDS: Final = 5000
# getmany waits at most this long for records when the log is idle (then the loop checks stop).
POLL_TIMEOUT_MS: Final = 500
# Bytes one fetch brings per partition / in all: the worker's memory bound for in-flight records.
MAX_PARTITION_FETCH_BYTES: Final = 4 * 1024 * 1024
FETCH_MAX_BYTES: Final = 16 * 1024 * 1024
# The broker answers a fetch once this many bytes are ready, or after FETCH_MAX_WAIT_MS: a worker
# favours full batches over latency (edges do not wait for it).
FETCH_MIN_BYTES: Final = 1
FETCH_MAX_WAIT_MS: Final = 100

# A worker killed with -9 holds its partitions until the group coordinator misses its heartbeats
# this long: the restarted worker (a new member) waits that out. 6 s is the broker's default
# group.min.session.timeout.ms; heartbeats every 2 s leave three chances before the cut.
SESSION_TIMEOUT_MS: Final = 6000
HEARTBEAT_INTERVAL_MS: Final = 2000

# At stop, the last commit and leaving the group get this long each.
STOP_TIMEOUT_S: Final = 5.0

# A failed store write / produce / commit is retried after a delay doubling between these.
RETRY_MIN_S: Final = 0.1
RETRY_MAX_S: Final = 5.0
# Deletes of one batch run this many at a time (each is one store round trip).
DELETE_CONCURRENCY: Final = 32

# Lag (records behind the log's end, per partition) is measured and logged this often.
LAG_INTERVAL_S: Final = 10.0

# notify: @handle -> user resolutions are cached this long (also "no such user"), at most this many.
RESOLVE_TTL_S: Final = 60.0
RESOLVE_CACHE: Final = 50_000
# notify: authors of the comments seen lately, so a reply finds its parent's author without a
# history read (and before the persist worker wrote it).
AUTHOR_CACHE: Final = 200_000

# webhook: POSTs waiting (the consumer waits when it is full), POSTs in flight, per-POST timeout,
# attempts per notification (then it is logged and counted as dropped; the topic still has it).
WEBHOOK_QUEUE: Final = 1000
WEBHOOK_CONCURRENCY: Final = 8
WEBHOOK_TIMEOUT_S: Final = 5.0
WEBHOOK_ATTEMPTS: Final = 6
