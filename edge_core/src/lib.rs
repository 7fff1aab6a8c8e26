//! livechat's edge core: the WebSocket wire, per-stream tick fan-out and send queues.
//!
//! `proto` is pure protocol code; `fanout` builds tick frames and holds the stream hub;
//! `server` runs the I/O threads and the ticker; `bridge` is the only module that touches Python.

#[cfg(feature = "python")]
mod bridge;
pub mod fanout;
pub mod proto;
pub mod server;
pub mod settings;
