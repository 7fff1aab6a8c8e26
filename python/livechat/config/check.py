"""Checks a resolved ``LiveChatConfig`` would pass at start-up, run before anything is opened.

``problems(config)`` asks the same code that will use each section (the compiled edge's config
parser, the token verifier, the sampler, the circuit breaker) and adds the cross-field rules none
of them can see. It opens nothing: no socket, no file, no backend (``livechat check-config
--connect`` does that separately).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from livechat.config.model import LiveChatConfig
from livechat.config.schema import config_fields

#: URL schemes each port accepts (``livechat.backends``); None = the SQLite default under data_dir.
BACKEND_SCHEMES: Final = {
    "broker": ("memory", "redis", "redis+cluster"),
    "registry": ("memory", "redis", "redis+cluster"),
    "log": ("sqlite", "kafka"),
    "history": ("sqlite", "cassandra"),
    "meta": ("sqlite", "postgresql", "postgres"),
}
# Every count, size, duration and score is >= 0, but for these, where a negative value means
# something (node_id -1: assigned at start).
_SIGNED: Final[frozenset[str]] = frozenset({"chat.node_id"})
_UNIT_INTERVAL: Final = (
    "chat.sampling.hysteresis",
    "chat.moderation.reject_score",
    "chat.moderation.flag_score",
    "chat.moderation.min_threshold",
    "chat.moderation.strike_step",
)


def _get(config: LiveChatConfig, path: str) -> Any:
    value: Any = config
    for name in path.split("."):
        value = getattr(value, name)
    return value


def _numbers(config: LiveChatConfig) -> Iterator[str]:
    for path in config_fields():
        value = _get(config, path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value < 0 and path not in _SIGNED:
            yield f"{path} = {value!r}: must not be negative"
    for path in _UNIT_INTERVAL:
        value = _get(config, path)
        if not 0.0 <= value <= 1.0:
            yield f"{path} = {value!r}: must be within 0..1"
    for path in ("edge.port", "ops.admin_port"):
        if not 0 <= _get(config, path) <= 65535:
            yield f"{path} = {_get(config, path)}: not a TCP port"
    if not -1 <= config.chat.node_id <= 1023:
        node = config.chat.node_id
        yield f"chat.node_id = {node}: must be 0..1023 (10 bits of the comment id), or -1 = auto"


def _edge(config: LiveChatConfig) -> Iterator[str]:
    from livechat._edge import Edge

    try:
        Edge(config.edge.to_core())
    except (ValueError, TypeError, OverflowError) as exc:
        yield str(exc)


def _chat(config: LiveChatConfig) -> Iterator[str]:
    from livechat.auth import TokenVerifier
    from livechat.protocol.rules import HOLD_MAX_MS, HOLD_MIN_MS
    from livechat.services.clock import SystemClock
    from livechat.services.moderation import CircuitBreaker
    from livechat.services.sampling import Sampler

    auth = config.chat.auth
    try:
        TokenVerifier(auth)
    except ValueError as exc:
        yield f"chat.auth: {exc}"
    if not auth.allow_anonymous and auth.hmac_secret is None and auth.public_key_pem is None:
        if "HS256" not in auth.algorithms:
            yield "chat.auth: no key configured and anonymous access is off: nobody could connect"
    try:
        Sampler(config.chat.sampling)
    except ValueError as exc:
        yield f"chat.sampling: {exc}"
    moderation = config.chat.moderation
    try:
        CircuitBreaker(moderation.breaker_failures, moderation.breaker_open_s, SystemClock())
    except ValueError as exc:
        yield f"chat.moderation: {exc}"
    if moderation.flag_score > moderation.reject_score:
        yield "chat.moderation: flag_score is above reject_score (nothing would ever be flagged)"
    if not HOLD_MIN_MS <= moderation.hold_ms <= HOLD_MAX_MS:
        yield (
            f"chat.moderation.hold_ms = {moderation.hold_ms}: {HOLD_MIN_MS}..{HOLD_MAX_MS} "
            "(the range the hold op accepts)"
        )
    url = moderation.classifier_url
    if url is not None and not url.startswith(("http://", "https://")):
        yield f"chat.moderation.classifier_url = {url!r}: must be an http:// or https:// URL"
    limits = config.chat.limits
    if limits.max_text_chars < 1:
        yield "chat.limits.max_text_chars must be at least 1"
    rooms = config.chat.rooms
    if rooms.snapshot_comments > rooms.recent_buffer:
        yield "chat.rooms.snapshot_comments is above recent_buffer (snapshots come from that buffer)"


def _backends(config: LiveChatConfig) -> Iterator[str]:
    backends = config.backends
    for port, schemes in BACKEND_SCHEMES.items():
        url = getattr(backends, port)
        if url is None:
            continue
        scheme, sep, _ = url.partition("://")
        if not sep or scheme.lower() not in schemes:
            yield f"backends.{port} = {url!r}: supported schemes are {', '.join(s + '://' for s in schemes)}"
    if not backends.data_dir:
        yield "backends.data_dir is empty"


def _ops(config: LiveChatConfig) -> Iterator[str]:
    ops = config.ops
    edge = config.edge
    if ops.admin_enabled and ops.admin_port != 0 and ops.admin_port == edge.port:
        if ops.admin_host == edge.host or "0.0.0.0" in (ops.admin_host, edge.host):
            yield f"ops.admin_port = {ops.admin_port} is also edge.port"
    if ops.broker_probe_interval_s <= 0:
        yield "ops.broker_probe_interval_s must be above 0"


def _server(config: LiveChatConfig) -> Iterator[str]:
    workers = config.server.workers
    if workers < 1:
        yield f"server.workers = {workers}: at least 1"
    elif workers > 1 and config.chat.node_id >= 0:
        yield (
            f"chat.node_id = {config.chat.node_id} with server.workers = {workers}: workers would mint "
            "the same comment ids; use -1 (each worker leases its own)"
        )


def problems(config: LiveChatConfig) -> list[str]:
    """Every reason ``config`` would fail (or misbehave) at start-up; empty when it is fine."""
    found: list[str] = []
    for check in (_numbers, _edge, _chat, _backends, _ops, _server):
        found.extend(check(config))
    return found
