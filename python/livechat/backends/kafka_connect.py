"""Kafka settings shared by the comment log and its follower: the URL, client settings, the stream
-> partition rule and error mapping. Every Kafka default of livechat lives here.

URL: ``kafka://host:port[,host:port...]/topic[?option=value&...]`` with options
- ``partitions=N`` (default 8) and ``replication=R`` (default 1): used only when the topic is
  created; an existing topic keeps its own. Never add partitions to a live topic: streams would
  move to other partitions and lose their order.
- ``dedupe=redis://host:port`` or ``dedupe=redis+cluster://host:port[,host:port]``: the shared
  index that makes ``client_msg_id`` idempotent across edges (``kafka_dedupe``). Without it the
  window is per process. A Redis URL carrying its own ``?query`` must be percent-encoded.
- ``dedupe_prefix=lc:`` prefixes the index keys (default ``lc:``).

Records: key = the stream id (UTF-8), value = the payload, headers ``origin`` (the appending edge)
and ``cmid`` (the client message id), timestamp = when the log accepted it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import unquote

from aiokafka import errors as kafka_errors  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from livechat.ports.errors import BackendError, BackendUnavailable, ConfigurationError

DEFAULT_PORT = 9092
DEFAULT_PARTITIONS = 8
DEFAULT_REPLICATION = 1
DEFAULT_DEDUPE_PREFIX = "lc:"

# A request the broker has not answered within this fails (and is retried by aiokafka while the
# batch is younger than it): an outage surfaces as BackendUnavailable in about this long.
REQUEST_TIMEOUT_MS = 5000
# Waiting for topic metadata, the admin client and the first connection.
CONNECT_TIMEOUT_S = 10.0
# An append not acknowledged within this raises BackendUnavailable (aiokafka fails a batch after
# at most two request timeouts: one waiting in the accumulator, one in flight).
APPEND_TIMEOUT_S = 2 * REQUEST_TIMEOUT_MS / 1000 + 1.0
# Bytes per produced record batch. One batch per partition is queued and one is in flight
# (the idempotent producer keeps their order), so this bounds what one round trip carries:
# ~2 500 comments of 200 B. Below the broker's message.max.bytes (1 MiB).
MAX_BATCH_BYTES = 512 * 1024
MAX_REQUEST_BYTES = 1024 * 1024
# The broker answers a fetch at once when it has data, else after this: the follower's idle
# latency floor. 5 ms costs an idle follower ~200 empty fetches a second.
FETCH_MAX_WAIT_MS = 5
# Records handed to the handler per fetch (bounds a handler call, not memory).
FETCH_MAX_RECORDS = 2000
# Bytes one fetch may bring per partition / in all: the follower's memory bound.
MAX_PARTITION_FETCH_BYTES = 1024 * 1024
FETCH_MAX_BYTES = 8 * 1024 * 1024
# Retrying a failed read: backoff doubles from the first to the last value.
RETRY_MIN_S = 0.05
RETRY_MAX_S = 2.0
# Consumers kept for ``read``/``last_offset`` (each holds one connection per broker).
READERS = 2

HEADER_ORIGIN = "origin"
HEADER_CMID = "cmid"


@dataclass(frozen=True, slots=True)
class KafkaUrl:
    """A parsed ``kafka://`` URL (see the module docstring)."""

    servers: tuple[str, ...]
    topic: str
    partitions: int = DEFAULT_PARTITIONS
    replication: int = DEFAULT_REPLICATION
    dedupe: str | None = None
    dedupe_prefix: str = DEFAULT_DEDUPE_PREFIX

    @classmethod
    def parse(cls, url: str) -> KafkaUrl:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() != "kafka":
            raise ConfigurationError(f"not a kafka:// URL: {url!r}")
        rest, _, query = rest.partition("?")
        netloc, _, topic = rest.partition("/")
        topic = topic.strip("/")
        servers = tuple(_server(part, url) for part in netloc.split(",") if part)
        if not servers:
            raise ConfigurationError(f"kafka URL names no broker: {url!r}")
        if not topic or not all(c.isalnum() or c in "._-" for c in topic) or len(topic) > 249:
            raise ConfigurationError(f"kafka URL needs a topic name of [a-zA-Z0-9._-]: {url!r}")
        # Split by hand: parse_qs would turn the '+' of redis+cluster:// into a space.
        options: dict[str, str] = {}
        for part in query.split("&") if query else ():
            key, has_value, value = part.partition("=")
            if not has_value:
                raise ConfigurationError(f"kafka URL option {part!r} needs a value: {url!r}")
            options[key] = unquote(value)
        unknown = set(options) - {"partitions", "replication", "dedupe", "dedupe_prefix"}
        if unknown:
            raise ConfigurationError(f"unknown kafka URL option(s) {sorted(unknown)} in {url!r}")
        partitions = _positive(options.get("partitions"), DEFAULT_PARTITIONS, "partitions", url)
        replication = _positive(options.get("replication"), DEFAULT_REPLICATION, "replication", url)
        dedupe = options.get("dedupe") or None
        if dedupe is not None and not dedupe.lower().startswith(("redis://", "redis+cluster://")):
            raise ConfigurationError(f"dedupe must be a redis:// or redis+cluster:// URL: {url!r}")
        prefix = options.get("dedupe_prefix", DEFAULT_DEDUPE_PREFIX)
        return cls(servers, topic, partitions, replication, dedupe, prefix)

    @property
    def bootstrap(self) -> list[str]:
        return list(self.servers)


def _server(part: str, url: str) -> str:
    host, sep, port = part.rpartition(":")
    if not sep:
        host, port = part, str(DEFAULT_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"bad host:port {part!r} in kafka URL {url!r}")
    return f"{host}:{port}"


def _positive(raw: str | None, default: int, name: str, url: str) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"kafka URL option {name} must be a positive integer: {url!r}")
    return int(raw)


@functools.lru_cache(maxsize=65536)
def partition_of(stream: str, partitions: int) -> int:
    """The partition of ``stream``'s records: Kafka's default partitioner (murmur2 of the key,
    made positive, modulo the partition count), so every client (Java, librdkafka, aiokafka)
    puts a stream on the same partition. Cached: murmur2 in Python costs ~5 µs a key."""
    return int((murmur2(stream.encode()) & 0x7FFFFFFF) % partitions)


def translate(exc: BaseException, what: str) -> BackendError:
    """The port's error for an aiokafka exception: unreachable, timeouts, leadership moves and
    anything aiokafka calls retriable -> BackendUnavailable; the rest -> BackendError."""
    if isinstance(exc, BackendError):
        return exc
    unavailable = (
        kafka_errors.KafkaConnectionError,
        kafka_errors.KafkaTimeoutError,
        kafka_errors.RequestTimedOutError,
        kafka_errors.NodeNotReadyError,
        kafka_errors.NoBrokersAvailable,
        kafka_errors.KafkaUnavailableError,
        kafka_errors.ProducerClosed,
        TimeoutError,
        OSError,
    )
    if isinstance(exc, unavailable) or getattr(exc, "retriable", False):
        return BackendUnavailable(f"kafka {what}: {type(exc).__name__}: {exc}")
    return BackendError(f"kafka {what}: {type(exc).__name__}: {exc}")
