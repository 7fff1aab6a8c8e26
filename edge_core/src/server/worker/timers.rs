//! The periodic sweep: handshake deadline, ping and idle, write timeout, close linger, the
//! queue gauge, and retrying a listener stalled on EMFILE.

use std::io::Write;
use std::sync::atomic::Ordering;

use super::Worker;
use crate::proto::codes;
use crate::proto::frame::{self, OP_PING};
use crate::server::conn::State;
use crate::server::stats::ThreadStats;

impl Worker {
    /// Timers: handshake deadline, ping and idle, write timeout, close linger; the queue gauge.
    pub(super) fn sweep(&mut self) {
        let s = &self.ctx.shared.settings;
        let (ping, idle, write_to) = (Self::ms(s.ping_interval), Self::ms(s.idle_timeout), Self::ms(s.write_timeout));
        let now = self.now_ms;
        let mut queued = 0u64;
        let mut to_drop = Vec::new();
        let mut to_ping = Vec::new();
        let mut to_close: Vec<(usize, u16, &'static str)> = Vec::new();
        for (slot, c) in &mut self.conns {
            queued += c.out.queued_bytes() as u64;
            match c.state {
                State::Handshake if now >= c.deadline_ms => to_drop.push(slot),
                State::Closing | State::Finishing if now >= c.deadline_ms => to_drop.push(slot),
                State::Open => {
                    if !c.out.is_empty() && now.saturating_sub(c.last_progress_ms) >= write_to {
                        to_close.push((slot, codes::WRITE_TIMEOUT, "write timeout"));
                    } else if now.saturating_sub(c.last_read_ms) >= idle {
                        to_close.push((slot, codes::GOING_AWAY, "idle timeout"));
                    } else if !c.ping_outstanding && now.saturating_sub(c.last_read_ms) >= ping {
                        c.ping_outstanding = true;
                        to_ping.push(slot);
                    }
                }
                _ => {}
            }
        }
        self.stats().queue_bytes.store(queued, Ordering::Relaxed);
        for slot in to_drop {
            if self.conns[slot].state == State::Handshake {
                ThreadStats::add(&self.stats().handshake_timeouts, 1);
                let _ = self.conns[slot]
                    .sock
                    .write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            }
            self.drop_conn(slot);
        }
        for (slot, code, reason) in to_close {
            let counter =
                if code == codes::WRITE_TIMEOUT { &self.stats().write_timeouts } else { &self.stats().idle_closes };
            ThreadStats::add(counter, 1);
            self.force_close(slot, code, reason);
        }
        for slot in to_ping {
            self.queue_owned(slot, frame::encode_frame(OP_PING, false, b"lc").into_boxed_slice());
        }
        if self.listener.is_none() && !self.shutting_down {
            return;
        }
        // A listener stalled on EMFILE gets no new edge: retry accepting now and then.
        if self.listener.is_some() {
            self.accept_all();
        }
    }
}
