//! Plain-Rust settings, extracted once from Python's `EdgeConfig` (which holds every default).

use std::time::Duration;

use crate::fanout::hub::TickTiming;

/// What the edge does with client messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Events go to Python.
    App,
    /// Every message is echoed back (the Autobahn testee).
    Echo,
    /// Every connection joins one stream; every message is published to it.
    Fanout,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub io_threads: usize,
    pub mode: Mode,
    pub fanout_stream: String,
    pub listen_backlog: i32,
    pub max_connections: usize,
    pub max_message_bytes: usize,
    pub handshake_timeout: Duration,
    pub max_request_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub send_queue_soft_bytes: usize,
    pub send_queue_hard_bytes: usize,
    pub write_timeout: Duration,
    pub close_linger: Duration,
    /// SO_SNDBUF / SO_RCVBUF for every connection; 0 leaves the kernel's autotuning.
    pub socket_send_buffer: usize,
    pub socket_receive_buffer: usize,
    pub tick: TickTiming,
    pub deflate: bool,
    pub deflate_min_bytes: usize,
    pub deflate_level: u32,
    pub validate_msgpack: bool,
    /// Origins that may upgrade (`proto::origin`); empty = the page's own origin: `public_url`'s,
    /// else the listener's host:port.
    pub allowed_origins: Vec<String>,
    /// The URL viewers open (the page's origin), when the edge sits behind a proxy or a name.
    pub public_url: Option<String>,
    /// CIDR blocks of reverse proxies whose `X-Forwarded-For` / `Forwarded` name the client
    /// (`proto::proxy`); empty = those headers are ignored.
    pub trusted_proxies: Vec<String>,
}
