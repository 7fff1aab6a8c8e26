"""The comment topic: create it when missing and name its lineage (cluster id + topic id).

The topic id is what changes when a topic is deleted and created again under the same name, so it
is the log's epoch. aiokafka's MetadataRequest stops at v5 (no topic ids), so this module sends
Metadata v10 (Kafka 2.8+, the first version carrying topic ids) with aiokafka's own protocol
types; the broker negotiates it like any other request.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.protocol.abstract import AbstractType  # type: ignore[import-untyped]
from aiokafka.protocol.api import Request, RequestStruct, Response  # type: ignore[import-untyped]
from aiokafka.protocol.types import (  # type: ignore[import-untyped]
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from livechat.backends.kafka_connect import CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_MS, KafkaUrl, translate
from livechat.ports.errors import BackendError, BackendUnavailable

log = logging.getLogger("livechat.backends.kafka")


class _Uuid(AbstractType):  # type: ignore[misc]
    """Kafka's UUID: 16 raw bytes."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: io.BytesIO) -> bytes:
        return data.read(16)


class _MetadataResponseV10(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class _MetadataRequestV10(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = _MetadataResponseV10
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


_V10: TypeAlias = _MetadataRequestV10


class _TopicMetadata(Request[_V10]):  # type: ignore[misc]
    API_KEY = 3

    def __init__(self, topic: str) -> None:
        self._topic = topic

    def build(self, request_struct_class: type[_V10]) -> _V10:
        return request_struct_class([(bytes(16), self._topic, {})], False, False, False, {})


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What the log needs to know about its topic."""

    cluster_id: str
    topic_id: str
    partitions: int

    @property
    def epoch(self) -> str:
        return f"kafka:{self.cluster_id}:{self.topic_id}"


async def ensure_topic(url: KafkaUrl, retention_s: float) -> TopicInfo:
    """Create the topic if missing (``url.partitions``, ``url.replication``, retention), then
    describe it. An existing topic keeps its own settings; a partition count that differs from
    the URL's is logged, and the topic's own count is used."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=url.bootstrap,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        client_id="livechat-log-admin",
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await admin.start()
            info = await _describe(admin, url.topic)
            if info is None:
                await _create(admin, url, retention_s)
                info = await _wait_described(admin, url.topic)
    except TimeoutError as exc:
        raise BackendUnavailable(
            f"kafka: no answer from {url.bootstrap} within {CONNECT_TIMEOUT_S} s"
        ) from exc
    except BackendError:
        raise
    except Exception as exc:
        raise translate(exc, "topic setup") from exc
    finally:
        await admin.close()
    if info.partitions != url.partitions:
        log.warning(
            "kafka topic %s has %d partitions, the URL asks for %d: using %d",
            url.topic,
            info.partitions,
            url.partitions,
            info.partitions,
        )
    return info


async def _create(admin: Any, url: KafkaUrl, retention_s: float) -> None:
    configs = {
        "retention.ms": str(int(retention_s * 1000)),
        # With replication R > 1, an acks=all write needs a majority of replicas in sync.
        "min.insync.replicas": str(url.replication // 2 + 1),
    }
    topic = NewTopic(url.topic, url.partitions, url.replication, topic_configs=configs)
    response = await admin.create_topics([topic], timeout_ms=REQUEST_TIMEOUT_MS)
    for entry in response.to_object()["topic_errors"]:
        code = entry["error_code"]
        if code and code != TopicAlreadyExistsError.errno:  # another edge created it first: fine
            raise BackendError(f"kafka: cannot create topic {url.topic}: {for_code(code).__name__}")
    log.info(
        "kafka topic %s created (%d partitions, replication %d)", url.topic, url.partitions, url.replication
    )


async def _wait_described(admin: Any, topic: str) -> TopicInfo:
    """A new topic's metadata reaches the broker's cache a moment after CreateTopics returns."""
    delay = 0.02
    while True:
        info = await _describe(admin, topic)
        if info is not None:
            return info
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def _describe(admin: Any, topic: str) -> TopicInfo | None:
    """The topic's info, or None while it does not exist (or has no leaders yet)."""
    node = admin._client.get_random_node()
    response = await admin._client.send(node, _TopicMetadata(topic))
    answer = response.to_object()
    for entry in answer["topics"]:
        if entry["name"] != topic:
            continue
        error = entry["error_code"]
        if error == 3:  # UNKNOWN_TOPIC_OR_PARTITION
            return None
        if error == 5:  # LEADER_NOT_AVAILABLE: being created
            return None
        if error:
            raise BackendError(f"kafka: topic {topic}: {for_code(error).__name__}")
        if not entry["partitions"] or any(p["leader_id"] < 0 for p in entry["partitions"]):
            return None
        topic_id = str(uuid.UUID(bytes=entry["topic_id"]))
        return TopicInfo(answer["cluster_id"] or "", topic_id, len(entry["partitions"]))
    return None
