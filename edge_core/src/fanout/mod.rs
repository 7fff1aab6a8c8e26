//! Fan-out: tick frames built once per stream, the stream hub, per-connection send queues.

pub mod hub;
pub mod send_queue;
pub mod tick;
