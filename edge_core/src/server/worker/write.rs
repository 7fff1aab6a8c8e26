//! Writing: queue frames on a connection's send queue, apply the slow-consumer policy, and
//! flush dirty connections (one writev each per loop pass).

use std::sync::Arc;

use super::Worker;
use crate::fanout::send_queue::PushOutcome;
use crate::fanout::tick::SharedFrame;
use crate::proto::codes;
use crate::server::conn::{Conn, State};
use crate::server::sink::SocketSink;
use crate::server::stats::ThreadStats;

impl Worker {
    pub(super) fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    pub(super) fn apply_push(&mut self, slot: usize, r: PushOutcome) {
        if r.skipped > 0 {
            ThreadStats::add(&self.stats().ticks_skipped, u64::from(r.skipped));
        }
        if r.over_hard_cap {
            // The queue may only be full because nothing was written yet this pass: write what
            // the socket takes, then judge.
            self.flush(slot);
            let hard = self.ctx.shared.settings.send_queue_hard_bytes;
            if self.conns.get(slot).is_some_and(|c| c.out.queued_bytes() > hard) {
                ThreadStats::add(&self.stats().slow_closes, 1);
                self.force_close(slot, codes::SLOW_CONSUMER, "slow consumer: send queue over its cap");
            }
        } else {
            self.mark_dirty(slot);
        }
    }

    pub(super) fn queue_owned(&mut self, slot: usize, bytes: Box<[u8]>) {
        let hard = self.ctx.shared.settings.send_queue_hard_bytes;
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.out.is_empty() {
            conn.last_progress_ms = self.now_ms;
        }
        let r = conn.out.push_owned(bytes, hard);
        self.apply_push(slot, r);
    }

    pub(super) fn queue_shared(&mut self, slot: usize, f: &Arc<SharedFrame>) {
        let s = &self.ctx.shared.settings;
        let (soft, hard) = (s.send_queue_soft_bytes, s.send_queue_hard_bytes);
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.state != State::Open {
            return;
        }
        if conn.out.is_empty() {
            conn.last_progress_ms = self.now_ms;
        }
        let deflated = f.deflated.is_some() && conn.takes_shared_deflate();
        let r = conn.out.push_shared(f.clone(), deflated, soft, hard);
        self.apply_push(slot, r);
    }

    pub(super) fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            self.flush(slot);
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Tell the hub this thread is done with the tick frames it got this pass: every local
    /// subscriber's copy is written, or queued behind a full socket (a slow consumer does not
    /// hold the stream back: its queue skips stale ticks).
    pub(super) fn report_written(&mut self) {
        if self.written.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let done = std::mem::take(&mut self.written);
        self.ctx.shared.with_hub(|h| h.frames_written(&done, now));
        let mut done = done;
        done.clear();
        self.written = done;
    }

    pub(super) fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.dirty = false;
        if conn.out.is_empty() {
            if conn.state == State::Finishing {
                Self::linger(conn);
            }
            return;
        }
        match conn.out.flush(&mut SocketSink::new(&conn.sock)) {
            Ok(r) => {
                if r.bytes > 0 {
                    conn.last_progress_ms = self.now_ms;
                }
                let st = &self.ctx.shared.workers[self.idx].stats;
                ThreadStats::add(&st.bytes_out, r.bytes as u64);
                ThreadStats::add(&st.frames_out, u64::from(r.frames));
                ThreadStats::add(&st.deliveries, r.events);
                if conn.out.is_empty() {
                    match conn.state {
                        // Our close frame is out: half-close so the peer sees EOF after it.
                        State::Finishing | State::Closing => Self::linger(conn),
                        _ => {}
                    }
                }
                let soft = self.ctx.shared.settings.send_queue_soft_bytes;
                if conn.read_paused && conn.out.queued_bytes() <= soft {
                    conn.read_paused = false;
                    self.again.push(slot);
                }
            }
            Err(_) => self.drop_conn(slot),
        }
    }

    /// Lingering close: send FIN once everything queued is out, then read and drop whatever
    /// still arrives until the peer's EOF (or the linger deadline), so unread input never turns
    /// our close into an RST that could destroy the close frame in flight.
    pub(super) fn linger(conn: &mut Conn) {
        if !conn.write_shut {
            conn.write_shut = true;
            let _ = conn.sock.shutdown(std::net::Shutdown::Write);
        }
    }
}
