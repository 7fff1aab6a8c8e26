"""Every default livechat has, in one place: frozen dataclasses, one per section.

The Rust core holds no defaults of its own: ``EdgeConfig.to_core()`` hands it every field, and the
core refuses a mapping with a key missing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final, Literal

EdgeMode = Literal["app", "echo", "fanout"]


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Settings of the compiled WebSocket edge (``livechat._edge.Edge``)."""

    host: str = "127.0.0.1"
    port: int = 8765
    # I/O threads, each with its own epoll, copy of the one listener, connections and stream index.
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
    # Slow-consumer policy (docs/operations.md): above the soft cap stale tick frames are skipped, the
    # priority lane still goes; above the hard cap, or no write progress for write_timeout_ms,
    # the connection is closed with 4008 / 4009.
    send_queue_soft_bytes: int = 64 * 1024
    send_queue_hard_bytes: int = 256 * 1024
    write_timeout_ms: int = 10_000
    # Kernel socket buffers per connection (SO_SNDBUF / SO_RCVBUF, set on the listener and
    # inherited by accepted sockets); 0 = kernel autotuning. On loopback Linux sizes send buffers
    # to ~4 MiB from the peer's MSS, so slow-consumer skipping starts only once that is full; a
    # 1M-connection host caps them (docs/operations.md), e.g. 65536 / 16384.
    socket_send_buffer_bytes: int = 0
    socket_receive_buffer_bytes: int = 0
    # Time a closing connection is given to finish the close handshake before the socket is dropped.
    close_linger_ms: int = 2_000
    # Per-stream tick, paced by measured capacity. A stream's first event after a quiet spell goes
    # out at the next ticker wake; after that its next frame is due once tick_min_ms has passed AND
    # every I/O thread has written its previous frame (the measured write time is the spacing:
    # 15 000 viewers on 2 threads here ~70 ms), stretching only when writing falls behind, never
    # past tick_max_ms. tick_budget_deliveries stays as a cap (0 = none): frames of one stream are
    # never closer than subscribers / tick_budget_deliveries seconds (1 000 000/s: 15 ms for 15 000
    # viewers, so on this hardware the write time, not the cap, paces them).
    tick_min_ms: int = 10
    tick_max_ms: int = 250
    tick_budget_deliveries: int = 1_000_000
    # permessage-deflate (RFC 7692); tick frames under deflate_min_bytes go uncompressed.
    deflate: bool = True
    deflate_min_bytes: int = 256
    deflate_level: int = 3
    # Inbound binary messages must be one well-formed msgpack value (app mode only).
    validate_msgpack: bool = True
    # Pages allowed to open a WebSocket (the upgrade's Origin header, checked in the edge: 403
    # otherwise). Exact origins "https://chat.example.com" or one pattern form
    # "https://*.example.com" (any subdomain); ("*",) = any page. Empty = the page's own origin:
    # public_url's, else the listener's host:port (docs/operations.md "Security"). Requests
    # without an Origin header (not a browser) are always let through; two Origin headers never.
    allowed_origins: tuple[str, ...] = ()
    # The URL viewers open, e.g. "https://chat.example.com/" (behind a proxy or a DNS name):
    # its origin is the default allow-list.
    public_url: str | None = None
    # Reverse proxies (CIDR blocks, "10.0.0.0/8", "::1") whose X-Forwarded-For / Forwarded headers
    # name the client; from any other peer those headers are ignored (anyone can write them).
    # The client is the rightmost hop that is not one of these. Empty: the socket's peer always.
    trusted_proxies: tuple[str, ...] = ()

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
    # Reactions: one bucket per user.
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
    # Request budgets (``livechat.services.limits.RequestBudgets``): token buckets per minute,
    # bursting to the same number, one per connection (``*_per_minute``) and one per signed-in user
    # or, for anonymous connections, per source address (``*_per_minute_per_user``); 0 = unlimited.
    # Past either the request gets ``rate_limited`` with ``retry_ms``. A client paging history as
    # fast as it can measured 1 595 pages/s and raised authors' ack p50 from 0.4 ms to 248 ms.
    history_pages_per_minute: int = 60
    history_pages_per_minute_per_user: int = 240
    # Every join (a repeated join of a joined stream too: it rebuilds the snapshot). The per-user
    # budget is larger than several connections' reconnects, as many anonymous viewers may share
    # one address (NAT).
    joins_per_minute: int = 30
    joins_per_minute_per_user: int = 600
    reports_per_minute: int = 10
    reports_per_minute_per_user: int = 20
    # Likes and unlikes.
    likes_per_minute: int = 120
    likes_per_minute_per_user: int = 300
    # A post arriving while the comment log has left the write in flight unanswered this long is
    # refused at once with ``unavailable`` + ``retry_ms`` instead of queueing behind an outage (a
    # Kafka append fails only after ~11 s; a healthy one takes ~5 ms here). 0 = never refuse early.
    storage_stall_s: float = 2.0


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
    # Busy tiers keep the best-scoring comments (reputation, not flagged, replies to the
    # broadcaster, likes: livechat.services.ranking); false = a hash of the id picks them.
    ranked: bool = True
    # Ranked selection windows (by the time in the comment id): each uses the previous window's
    # scores for its threshold and caps authors per window. 500 ms: 25 000 comments at 50 000/s.
    rank_window_ms: int = 500
    # At most this share of a window's shown comments from one author (broadcaster and moderators
    # exempt): 5 % = 125 of the 2 500 a 50 000/s stream shows per window at the 5 % tier.
    author_cap: float = 0.05


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
    # Hold for review, for streams whose broadcaster or moderators set nothing: "off" (broadcast
    # first, retro-delete after), "open" or "closed" (viewer comments wait for the classifier
    # before fan-out; without a verdict in time "open" shows them, "closed" keeps them back).
    hold: Literal["off", "open", "closed"] = "off"
    # The longest wait for the classifier in hold mode, ms (a stream may set its own, 50..2000).
    hold_ms: int = 300


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
    # Changed totals (reactions, likes, counts) of a stream go out at most every viewers on this
    # edge / this many seconds (and at most every engagement_flush_s): each write is a frame to
    # every viewer when no comment tick carries it. 10 000: a 15 000-viewer stream every 1.5 s,
    # one of 1 000 every 0.25 s; 0 = every engagement_flush_s.
    state_sends_per_s: int = 10_000
    # A stream's room is dropped from memory this long after its last local viewer left (its
    # subscriptions freed; engagement totals are stored and reload at the next join).
    idle_drop_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Everything the chat services read; ``node_id`` (0..1023) goes into comment ids."""

    # -1 = assigned at start: 0 when embedded; in cluster mode the shared registry's counter
    # modulo 1024, so edges started together get distinct ids (pin one per edge to be certain
    # across more than 1 024 starts).
    node_id: int = -1
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


# --- operations: admin HTTP server, logs, shutdown ----------------------------------------------


@dataclass(frozen=True, slots=True)
class OpsConfig:
    """The operator surface of ``livechat serve``: the admin HTTP server with ``/metrics``,
    ``/healthz`` and ``/readyz`` (``livechat.server.admin``), logs (``livechat.logs``), shutdown."""

    # The admin server has no authentication: keep it on a private interface. Port 0 = any free
    # port (it is logged at start).
    admin_enabled: bool = True
    admin_host: str = "127.0.0.1"
    admin_port: int = 8766
    # "json": one JSON object per line, for log shippers; "plain": one readable line per event.
    log_format: Literal["json", "plain"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # On SIGTERM /readyz answers 503 for this long while everything keeps serving (load balancers
    # stop sending new viewers), then the edge stops accepting, flushes and closes with 1001.
    drain_grace_s: float = 0.0
    # Time the edge gets to flush send queues and finish close handshakes before sockets drop.
    drain_timeout_ms: int = 5_000
    # The broker round trip is probed this often (a control message addressed to no edge).
    broker_probe_interval_s: float = 5.0
    # Per-stream series (sampling tier, comment rate) for at most this many of the busiest streams.
    metrics_stream_series: int = 50
    # Lifetime of the development tokens ``livechat token`` mints.
    dev_token_ttl_s: int = 86_400
    # gc.set_threshold at start. With CPython's (700, 10, 10) the objects of a batch of comments
    # waiting ~30 ms for its SQLite commit get promoted, and the full collections they trigger walk
    # up to the 1M idempotency entries while the loop waits: `python -m bench.service --only
    # throughput` gave 26-29k comments/s, p99 post->ack ~200 ms by default; 35.6k/s, 46 ms with these.
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 10)
    # OpenTelemetry traces of each comment (post -> ack -> delivery -> persist, see
    # ``livechat.tracing``): "off", "console" (spans printed) or "otlp" (OTEL_EXPORTER_OTLP_* settings).
    tracing: Literal["off", "console", "otlp"] = "off"


# --- the whole process -------------------------------------------------------------------------


# --- process layout: livechat serve --workers N (livechat.server.workers) ------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How many edge processes ``livechat serve`` runs behind its one port."""

    # N > 1: the parent binds edge.port once and hands the socket to N worker processes (each its
    # own edge, services and admin port ops.admin_port + i). They share state through the
    # configured backends; with the embedded memory:// broker/registry the parent starts a
    # private local redis-server for them (the one process-shared broker the Redis backends
    # already speak), and the SQLite file is shared. chat.node_id must be -1 (leased per worker).
    workers: int = 1


@dataclass(frozen=True, slots=True)
class LiveChatConfig:
    """One ``livechat serve`` process: its edge, chat services, backends and operator surface."""

    # Names this edge to the others (broker dedupe, connection registry); None = random per start.
    edge_id: str | None = None
    edge: EdgeConfig = dataclasses.field(default_factory=EdgeConfig)
    chat: ChatConfig = dataclasses.field(default_factory=ChatConfig)
    backends: BackendConfig = dataclasses.field(default_factory=BackendConfig)
    ops: OpsConfig = dataclasses.field(default_factory=OpsConfig)
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)


#: The defaults as one value, for code that needs one outside these dataclasses (a default argument,
#: a backend opened without a ``BackendConfig``): it reads it here rather than restating it.
DEFAULTS: Final = LiveChatConfig()


# --- clients: the Python SDK, the web page, the load test ---------------------------------------


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The Python client (``livechat.client``) and the web page's JS client, which is served these
    values by ``livechat.server.webpage`` so both reconnect alike."""

    # Delay before reconnect attempt n (0-based): uniform in [0, min(max, initial * factor**n)]
    # ("full jitter": after a server restart the viewers do not all come back in one millisecond).
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 15.0
    reconnect_factor: float = 2.0
    connect_timeout_s: float = 5.0
    # A request (post, join, moderator action...) unanswered this long fails with TimeoutError.
    # Posts keep their cmid across reconnects (resent once reconnected), so a retry never doubles.
    request_timeout_s: float = 10.0
    # Comment ids remembered per stream to drop duplicates (snapshot vs first ticks, recovery).
    dedupe_ids: int = 4096
    # Events buffered for ``LiveChatClient.events()``; past this the oldest are dropped and counted.
    event_buffer: int = 100_000
    # Offer permessage-deflate (the websockets transport; picows has none).
    deflate: bool = True
    # Client pings find a dead path sooner than TCP does (the edge itself pings after 30 s silence).
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    # Largest server message accepted (a tick of a busy stream is well under this).
    max_message_bytes: int = 16 * 1024 * 1024
    # Comments the web page keeps in its list; older ones leave the DOM.
    page_comments: int = 200


@dataclass(frozen=True, slots=True)
class LoadTestConfig:
    """``loadtest/locustfile.py``: the user mix, what each user does, how latency is sampled."""

    # Users spread over this many streams named ``{stream_prefix}-{i}``.
    streams: int = 1
    stream_prefix: str = "load"
    # Locust weights of the three user classes.
    viewer_weight: int = 90
    poster_weight: int = 5
    reactor_weight: int = 5
    # Seconds between one poster's comments: a viewer may post 10/min (LimitsConfig), so ~8 s
    # on average stays under it; posters with role "moderator" may post 100/min.
    post_interval_s: tuple[float, float] = (6.5, 9.5)
    poster_role: str = "viewer"
    react_interval_s: tuple[float, float] = (0.5, 2.0)
    comment_chars: int = 60
    # Viewers per locust process that report each delivered comment's latency as a locust request;
    # the others only count deliveries, so the load generator stays cheap next to the server.
    latency_viewers: int = 25
    # Tokens are minted with the HS256 secret the server keeps in its data directory.
    secret_file: str = "livechat-data/hmac-secret"
    token_ttl_s: int = 86_400
