//! livechat's edge core: the WebSocket wire, per-stream tick fan-out and send queues.
//!
//! `proto` is pure protocol code; `fanout` builds tick frames and holds the stream hub;
//! `server` runs the I/O threads; `bridge` is the only module that touches Python.

pub mod proto;
