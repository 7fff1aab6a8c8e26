//! Fan-out: tick frames built once per stream, the stream hub, per-connection send queues.

pub mod hub;
pub mod outbox;
pub mod tick;
