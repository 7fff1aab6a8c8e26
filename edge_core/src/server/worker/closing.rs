//! Ending connections: the close handshake (ours and failing on errors), forced closes, dropping
//! a connection, and the shutdown that closes them all.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::messages::Messages;
use super::Worker;
use crate::proto::frame::{self, OP_CLOSE};
use crate::proto::{close, codes};
use crate::server::conn::State;
use crate::server::events::Event;

impl Worker {
    /// Queue a close frame after what is already queued and wait for the peer's reply.
    pub(super) fn begin_close(&mut self, slot: usize, code: u16, reason: &str) {
        let linger = Self::ms(self.ctx.shared.settings.close_linger);
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match conn.state {
            State::Handshake => {
                self.drop_conn(slot);
                return;
            }
            State::Closing | State::Finishing => return,
            State::Open => {}
        }
        conn.state = State::Closing;
        conn.close_code = code;
        conn.close_reason = Some(reason.into());
        conn.deadline_ms = self.now_ms + linger;
        let f = frame::encode_frame(OP_CLOSE, false, &close::encode_payload(code, reason));
        conn.out.push_owned(f.into_boxed_slice(), usize::MAX);
        self.mark_dirty(slot);
    }

    /// Fail the connection (RFC 6455 §7.1.7) on a protocol error: what was already queued (the
    /// replies to frames before the bad one) still goes, then our close frame, then we close TCP
    /// without waiting for the peer's close.
    pub(super) fn fail(&mut self, slot: usize, code: u16, reason: &str) {
        self.begin_close(slot, code, reason);
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.inbuf = Vec::new();
            conn.state = State::Finishing;
        }
    }

    /// Drop everything unsent, then close: slow consumers, write timeouts.
    pub(super) fn force_close(&mut self, slot: usize, code: u16, reason: &str) {
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.out.clear_unsent();
            conn.inbuf = Vec::new();
            conn.rx = crate::proto::codec::RxState::default();
            conn.discard_input = true;
        }
        self.begin_close(slot, code, reason);
    }

    pub(super) fn drop_conn(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let subs: Vec<u32> = conn.subs.iter().map(|(s, _)| *s).collect();
        for s in subs {
            self.unsubscribe_local(slot, s);
        }
        let conn = self.conns.remove(slot);
        self.ctx.shared.workers[self.idx].set_free(slot);
        if conn.opened && matches!(self.messages, Messages::App(_)) {
            self.ctx.events.push(Event::Close {
                id: conn.id,
                code: conn.close_code,
                reason: conn.close_reason.map(String::from).unwrap_or_default(),
            });
        }
        self.ctx.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.stats().connections.fetch_sub(1, Ordering::Relaxed);
        // Dropping the socket closes the fd, which also removes it from epoll.
    }

    pub(super) fn start_shutdown(&mut self, drain: Duration) {
        self.shutting_down = true;
        self.shutdown_deadline_ms = self.now_ms + Self::ms(drain);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for slot in slots {
            self.begin_close(slot, codes::GOING_AWAY, "server shutting down");
        }
    }
}
