"""Every default livechat has, in one place.

The Rust core holds no defaults of its own: ``EdgeConfig.to_core()`` hands it every field, and the
core refuses a mapping with a key missing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

EdgeMode = Literal["app", "echo", "fanout"]


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Settings of the compiled WebSocket edge (``livechat._edge.Edge``)."""

    host: str = "127.0.0.1"
    port: int = 8765
    # I/O threads, each with its own epoll, listener (SO_REUSEPORT), connections and stream index.
    io_threads: int = 2
    # "app": events go to Python; "echo": every message is echoed (Autobahn testee);
    # "fanout": every connection joins `fanout_stream`, every message is published to it.
    mode: EdgeMode = "app"
    fanout_stream: str = "fanout"
    listen_backlog: int = 4096
    # Past this many open connections per process, new upgrades get 503.
    max_connections: int = 1_000_000
    # Largest message accepted from a client, after reassembly and inflation; larger -> close 1009.
    max_message_bytes: int = 64 * 1024
    # Upgrade request must arrive whole within this time and within this many bytes (slowloris).
    handshake_timeout_ms: int = 5_000
    max_request_bytes: int = 8 * 1024
    # A ping goes out after this much read silence; no frame at all for idle_timeout_ms -> close 1001.
    ping_interval_ms: int = 30_000
    idle_timeout_ms: int = 75_000
    # Slow-consumer policy (design.md §2): above the soft cap stale tick frames are skipped, the
    # priority lane still goes; above the hard cap, or no write progress for write_timeout_ms,
    # the connection is closed with 4008 / 4009.
    send_queue_soft_bytes: int = 64 * 1024
    send_queue_hard_bytes: int = 256 * 1024
    write_timeout_ms: int = 10_000
    # Time a closing connection is given to finish the close handshake before the socket is dropped.
    close_linger_ms: int = 2_000
    # Per-stream tick: streams whose audience x event rate is small flush every tick_min_ms; the
    # interval grows toward tick_max_ms as deliveries per second pass tick_budget_deliveries.
    tick_min_ms: int = 10
    tick_max_ms: int = 100
    tick_budget_deliveries: int = 200_000
    # permessage-deflate (RFC 7692); tick frames under deflate_min_bytes go uncompressed.
    deflate: bool = True
    deflate_min_bytes: int = 256
    deflate_level: int = 3
    # Inbound binary messages must be one well-formed msgpack value (app mode only).
    validate_msgpack: bool = True

    def to_core(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- chat domain (python/livechat/services, auth, protocol) -------------------------------------


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """JWT checks at upgrade (``livechat.auth``).

    Each algorithm is verified only with its own key kind: HS256 with ``hmac_secret``, every
    asymmetric algorithm with ``public_key_pem``; a token naming an algorithm not listed here
    (``none`` included) is refused before any signature work.
    """

    algorithms: tuple[str, ...] = ("HS256",)
    hmac_secret: str | None = None
    # PEM of the Ed25519 / EC P-256 / RSA public key for EdDSA / ES256 / RS256.
    public_key_pem: str | None = None
    # Checked when set: tokens minted for another service are refused.
    audience: str | None = "livechat"
    issuer: str | None = None
    # Clock skew tolerated on exp/nbf/iat.
    leeway_s: float = 30.0
    require_exp: bool = True
    # No token at all -> read-only anonymous viewer; False -> close 4001.
    allow_anonymous: bool = True
    # Claims: global role ("viewer" | "moderator" | "broadcaster"), per-stream roles {stream: role},
    # display name (falls back to ``sub``).
    role_claim: str = "role"
    stream_roles_claim: str = "streams"
    name_claim: str = "name"


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Per-user, per-connection and per-stream limits (``livechat.services.limits``)."""

    # Counted after NFC normalisation, in code points.
    max_text_chars: int = 500
    # Token buckets per user: this many per minute, bursting up to the same number; 0 = unlimited.
    comments_per_minute_viewer: int = 10
    comments_per_minute_moderator: int = 100
    comments_per_minute_broadcaster: int = 0
    # Reactions, likes and unlikes share one bucket per user.
    reactions_per_minute: int = 300
    # Admission cap per stream on this edge (token bucket, burst = one second's worth).
    stream_comments_per_second: int = 100_000
    # A repost of the same client message id within this window gets the first ack back.
    idempotency_window_s: float = 120.0
    idempotency_max_entries: int = 1_000_000
    max_streams_per_connection: int = 8
    # A connection that earns this many error replies within a minute is closed with 4005.
    max_errors_per_minute: int = 60
    history_page_max: int = 100
    report_reason_max_chars: int = 200


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """Adaptive sampling of comment fan-out per stream (``livechat.services.sampling``).

    ``tiers`` are (comments per second at or above which the tier starts, fraction broadcast),
    ascending; below the first threshold everything is broadcast (tier 0).
    """

    tiers: tuple[tuple[float, float], ...] = ((5_000.0, 0.5), (20_000.0, 0.1), (50_000.0, 0.05))
    # Rate = comments counted over the last ``window_s`` seconds in ``buckets`` slices.
    window_s: float = 2.0
    buckets: int = 8
    # A tier is left downward only once the rate falls below threshold * hysteresis (no flapping).
    hysteresis: float = 0.8


@dataclass(frozen=True, slots=True)
class ModerationConfig:
    """Rules, ML callout, reputation (``livechat.services.moderation``)."""

    # Block list: a hit rejects. Matched after normalisation against spacing/leetspeak/homoglyphs.
    blocked_terms: tuple[str, ...] = ()
    # Flag list: a hit is accepted and queued for review.
    flagged_terms: tuple[str, ...] = ()
    # Pluggable classifier (HTTP JSON endpoint); None = off. Runs after broadcast (retro-delete).
    classifier_url: str | None = None
    # Well under the 2 s tombstone budget: timeout + one tick must stay below it.
    classifier_timeout_s: float = 0.8
    classifier_concurrency: int = 64
    # Circuit breaker: this many consecutive failures open it for ``breaker_open_s``, then one
    # trial call (half-open) decides between closing and reopening.
    breaker_failures: int = 5
    breaker_open_s: float = 10.0
    # Classifier score thresholds for a user with no strikes; each strike lowers both by
    # ``strike_step`` down to ``min_threshold``.
    reject_score: float = 0.9
    flag_score: float = 0.6
    strike_step: float = 0.1
    min_threshold: float = 0.3
    # From this many strikes on, an offence is a SHADOW_BAN instead of a REJECT.
    shadow_ban_strikes: int = 3
    # This many distinct reporters of one comment queue it for review (FLAG).
    reports_to_flag: int = 3


@dataclass(frozen=True, slots=True)
class RoomConfig:
    """Snapshots, recovery and engagement (``livechat.services.rooms``)."""

    # Recent visible comments kept in memory per stream (snapshot + reconnect recovery).
    recent_buffer: int = 500
    snapshot_comments: int = 50
    # Reconnect with a last seen id further back than this many comments -> "gap" signal.
    recover_max: int = 200
    # Reaction/like/count state slots are refreshed at most this often.
    engagement_flush_s: float = 0.25
    # Comments per stream whose likers are remembered (like/unlike is idempotent for these).
    tracked_like_comments: int = 2_000


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Everything the chat services read; ``node_id`` (0..1023) goes into comment ids."""

    node_id: int = 0
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    moderation: ModerationConfig = dataclasses.field(default_factory=ModerationConfig)
    rooms: RoomConfig = dataclasses.field(default_factory=RoomConfig)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Where each port lives (``livechat.backends.open_backends``). Embedded by default: in-process
    broker and registry, one SQLite file ``livechat.db`` under ``data_dir`` for log, history and
    meta. Cluster: ``broker="redis://host:port"``, ``registry="redis://host:port"``, …"""

    data_dir: str = "livechat-data"
    broker: str = "memory://"
    registry: str = "memory://"
    # None = "sqlite://{data_dir}/livechat.db"; any sqlite:// URL (``?synchronous=full`` to fsync
    # every commit) or, later, kafka:// / cassandra:// / postgresql://.
    log: str | None = None
    history: str | None = None
    meta: str | None = None
    # Key and channel prefix in Redis, so several deployments can share one server.
    redis_prefix: str = "lc:"
    # A client message id is deduplicated this long after its first append.
    log_dedupe_window_s: float = 600.0
    log_retention_s: float = 7 * 86400.0
    # Deleted comment ids stay visible to reconnect recovery (and block late writes) this long.
    tombstone_ttl_s: float = 86400.0
    # Comments older than this (by the time in their id) are purged from history.
    history_retention_s: float = 30 * 86400.0

    def sqlite_url(self) -> str:
        return f"sqlite://{self.data_dir}/livechat.db"


# --- the whole process -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveChatConfig:
    """One ``livechat serve`` process: its edge, chat services and backends."""

    # Names this edge to the others (broker dedupe, connection registry); None = random per start.
    edge_id: str | None = None
    edge: EdgeConfig = dataclasses.field(default_factory=EdgeConfig)
    chat: ChatConfig = dataclasses.field(default_factory=ChatConfig)
    backends: BackendConfig = dataclasses.field(default_factory=BackendConfig)
