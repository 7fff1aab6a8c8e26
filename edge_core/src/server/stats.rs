//! Counters of one I/O thread.

use std::sync::atomic::{AtomicU64, Ordering};

/// Named counters, in a fixed order.
pub type Counters = Vec<(&'static str, u64)>;

/// Counters of one I/O thread (relaxed atomics: read by `stats()`, written by the thread).
#[derive(Default)]
pub struct ThreadStats {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub deliveries: AtomicU64,
    pub bytes_out: AtomicU64,
    pub queue_bytes: AtomicU64,
    pub ticks_skipped: AtomicU64,
    pub slow_closes: AtomicU64,
    pub write_timeouts: AtomicU64,
    pub idle_closes: AtomicU64,
    pub loop_busy_us: AtomicU64,
}

impl ThreadStats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Counters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("connections", g(&self.connections)),
            ("accepted", g(&self.accepted)),
            ("rejected", g(&self.rejected)),
            ("handshake_timeouts", g(&self.handshake_timeouts)),
            ("protocol_errors", g(&self.protocol_errors)),
            ("messages_in", g(&self.messages_in)),
            ("bytes_in", g(&self.bytes_in)),
            ("frames_out", g(&self.frames_out)),
            ("deliveries", g(&self.deliveries)),
            ("bytes_out", g(&self.bytes_out)),
            ("queue_bytes", g(&self.queue_bytes)),
            ("ticks_skipped", g(&self.ticks_skipped)),
            ("slow_closes", g(&self.slow_closes)),
            ("write_timeouts", g(&self.write_timeouts)),
            ("idle_closes", g(&self.idle_closes)),
            ("loop_busy_us", g(&self.loop_busy_us)),
        ]
    }
}
