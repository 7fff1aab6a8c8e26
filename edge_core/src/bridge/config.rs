//! `EdgeConfig` (Python) → `Settings` (Rust): every key required, no defaults on this side.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::fanout::hub::TickTiming;
use crate::proto::origin::{self, OriginPolicy};
use crate::proto::proxy::TrustedProxies;
use crate::server::ConnId;
use crate::settings::{Mode, Settings};

const KEYS: &[&str] = &[
    "host",
    "port",
    "io_threads",
    "mode",
    "fanout_stream",
    "listen_backlog",
    "max_connections",
    "max_message_bytes",
    "handshake_timeout_ms",
    "max_request_bytes",
    "ping_interval_ms",
    "idle_timeout_ms",
    "send_queue_soft_bytes",
    "send_queue_hard_bytes",
    "write_timeout_ms",
    "close_linger_ms",
    "socket_send_buffer_bytes",
    "socket_receive_buffer_bytes",
    "tick_min_ms",
    "tick_max_ms",
    "tick_budget_deliveries",
    "deflate",
    "deflate_min_bytes",
    "deflate_level",
    "validate_msgpack",
    "allowed_origins",
    "public_url",
    "trusted_proxies",
];

fn get<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    let v = d.get_item(key)?.ok_or_else(|| PyValueError::new_err(format!("edge config: missing key {key:?}")))?;
    v.extract::<T>().map_err(|_| PyValueError::new_err(format!("edge config: {key} has the wrong type: {v:?}")))
}

fn ms<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Duration> {
    Ok(Duration::from_millis(get::<u64>(d, key)?))
}

pub fn extract(config: &Bound<'_, PyAny>) -> PyResult<Settings> {
    let d = PyDict::new(config.py());
    d.update(config.cast::<pyo3::types::PyMapping>()?)?;
    for k in d.keys() {
        let k: String = k.extract()?;
        if !KEYS.contains(&k.as_str()) {
            return Err(PyValueError::new_err(format!("edge config: unknown key {k:?}")));
        }
    }
    let mode = match get::<String>(&d, "mode")?.as_str() {
        "app" => Mode::App,
        "echo" => Mode::Echo,
        "fanout" => Mode::Fanout,
        other => return Err(PyValueError::new_err(format!("edge config: mode {other:?} is not app/echo/fanout"))),
    };
    let s = Settings {
        host: get(&d, "host")?,
        port: get(&d, "port")?,
        io_threads: get(&d, "io_threads")?,
        mode,
        fanout_stream: get(&d, "fanout_stream")?,
        listen_backlog: get(&d, "listen_backlog")?,
        max_connections: get(&d, "max_connections")?,
        max_message_bytes: get(&d, "max_message_bytes")?,
        handshake_timeout: ms(&d, "handshake_timeout_ms")?,
        max_request_bytes: get(&d, "max_request_bytes")?,
        ping_interval: ms(&d, "ping_interval_ms")?,
        idle_timeout: ms(&d, "idle_timeout_ms")?,
        send_queue_soft_bytes: get(&d, "send_queue_soft_bytes")?,
        send_queue_hard_bytes: get(&d, "send_queue_hard_bytes")?,
        write_timeout: ms(&d, "write_timeout_ms")?,
        close_linger: ms(&d, "close_linger_ms")?,
        socket_send_buffer: get(&d, "socket_send_buffer_bytes")?,
        socket_receive_buffer: get(&d, "socket_receive_buffer_bytes")?,
        tick: TickTiming {
            min: ms(&d, "tick_min_ms")?,
            max: ms(&d, "tick_max_ms")?,
            budget_deliveries: get(&d, "tick_budget_deliveries")?,
        },
        deflate: get(&d, "deflate")?,
        deflate_min_bytes: get(&d, "deflate_min_bytes")?,
        deflate_level: get(&d, "deflate_level")?,
        validate_msgpack: get(&d, "validate_msgpack")?,
        allowed_origins: get(&d, "allowed_origins")?,
        public_url: get(&d, "public_url")?,
        trusted_proxies: get(&d, "trusted_proxies")?,
    };
    if s.io_threads == 0 || s.io_threads > ConnId::MAX_THREADS {
        let max = ConnId::MAX_THREADS;
        return Err(PyValueError::new_err(format!("edge config: io_threads must be 1..={max}")));
    }
    if s.tick.min > s.tick.max || s.tick.min.is_zero() {
        return Err(PyValueError::new_err("edge config: need 0 < tick_min_ms <= tick_max_ms"));
    }
    if s.send_queue_soft_bytes > s.send_queue_hard_bytes {
        return Err(PyValueError::new_err("edge config: send_queue_soft_bytes > send_queue_hard_bytes"));
    }
    OriginPolicy::new(&s.allowed_origins)
        .map_err(|e| PyValueError::new_err(format!("edge config: allowed_origins: {e}")))?;
    TrustedProxies::new(&s.trusted_proxies)
        .map_err(|e| PyValueError::new_err(format!("edge config: trusted_proxies: {e}")))?;
    if let Some(url) = &s.public_url {
        if origin::origin_of_url(url).is_none() {
            return Err(PyValueError::new_err(format!("edge config: public_url {url:?} is not an http(s) URL")));
        }
    }
    if s.deflate_level > 9 {
        return Err(PyValueError::new_err("edge config: deflate_level must be 0..=9"));
    }
    Ok(s)
}
