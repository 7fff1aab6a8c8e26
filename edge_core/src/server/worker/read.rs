//! Reading: drain the socket, decode whole frames, answer pings, hand data messages to the
//! mode's handler, and start the close on a protocol error or the peer's close frame.

use std::io::{self, Read};

use super::handler::{OnMessage, Out};
use super::messages::Messages;
use super::{Ctx, Worker};
use crate::proto::codec::{self, Incoming, RxConfig};
use crate::proto::frame::{self, OP_CLOSE, OP_PONG};
use crate::proto::{close, codes};
use crate::server::conn::{Conn, State};
use crate::server::stats::ThreadStats;

/// Reads per readiness event before yielding to other connections (64 KiB each).
const READS_PER_TURN: usize = 16;
pub(super) const READ_BUF: usize = 64 * 1024;

/// What decoding one read's worth of frames asks the worker to do.
#[derive(Default)]
struct DecodeOutcome {
    consumed: usize,
    peer_close: Option<(u16, String)>,
    error: Option<codec::ProtocolError>,
}

impl Worker {
    /// Read until the socket is drained. A short read means it is (epoll reports the next
    /// arrival as a new edge), which saves the EAGAIN read per event; when the event also
    /// carried a hang-up, read on to see the EOF.
    pub(super) fn on_readable(&mut self, slot: usize, hangup: bool) {
        let soft = self.ctx.shared.settings.send_queue_soft_bytes;
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(slot) else {
                return;
            };
            if conn.state == State::Open && conn.out.queued_bytes() > soft {
                self.flush(slot);
                let Some(conn) = self.conns.get_mut(slot) else {
                    return;
                };
                if conn.out.queued_bytes() > soft {
                    // Resumed by `flush` once the queue is back under the soft cap.
                    conn.read_paused = true;
                    return;
                }
            }
            let Some(conn) = self.conns.get_mut(slot) else {
                return;
            };
            let n = match conn.sock.read(&mut self.rbuf) {
                Ok(0) => {
                    self.on_eof(slot);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_conn(slot);
                    return;
                }
            };
            conn.last_read_ms = self.now_ms;
            conn.ping_outstanding = false;
            ThreadStats::add(&self.ctx.shared.workers[self.idx].stats.bytes_in, n as u64);
            match conn.state {
                State::Handshake => self.on_handshake_bytes(slot, n),
                State::Open | State::Closing if !conn.discard_input => self.on_frame_bytes(slot, n),
                // Both sides have closed, or the stream is out of sync: discard.
                _ => {}
            }
            if n < READ_BUF && !hangup {
                return;
            }
        }
        self.again.push(slot);
    }

    pub(super) fn on_eof(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if conn.state == State::Open || conn.state == State::Handshake {
            conn.close_code = codes::ABNORMAL;
            conn.close_reason = Some("connection lost".into());
        }
        self.drop_conn(slot);
    }

    /// Decode frames from the read buffer (`n` new bytes) or, when a partial frame is pending,
    /// from the connection's own buffer.
    pub(super) fn on_frame_bytes(&mut self, slot: usize, n: usize) {
        let conn = &mut self.conns[slot];
        let outcome = if conn.inbuf.is_empty() {
            let o = decode_frames(&mut self.messages, &mut self.ctx, conn, &mut self.rbuf[..n]);
            if o.error.is_none() && o.peer_close.is_none() && o.consumed < n {
                conn.inbuf.extend_from_slice(&self.rbuf[o.consumed..n]);
            }
            o
        } else {
            conn.inbuf.extend_from_slice(&self.rbuf[..n]);
            let mut buf = std::mem::take(&mut conn.inbuf);
            let o = decode_frames(&mut self.messages, &mut self.ctx, conn, &mut buf);
            buf.drain(..o.consumed);
            if buf.capacity() > 4 * READ_BUF && buf.len() < READ_BUF {
                buf.shrink_to(READ_BUF);
            }
            conn.inbuf = buf;
            o
        };
        if !self.ctx.replies.is_empty() {
            let replies = std::mem::take(&mut self.ctx.replies);
            self.queue_owned(slot, replies.into_boxed_slice());
        }
        if let Some(e) = outcome.error {
            ThreadStats::add(&self.stats().protocol_errors, 1);
            self.fail(slot, e.code, e.reason);
        } else if let Some((code, reason)) = outcome.peer_close {
            self.on_peer_close(slot, code, reason);
        }
    }

    pub(super) fn on_peer_close(&mut self, slot: usize, code: u16, reason: String) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.state == State::Open {
            // Echo the peer's code (RFC 6455 §5.5.1); no code in, no code out.
            let payload = if code == codes::NO_STATUS { Vec::new() } else { close::encode_payload(code, "") };
            conn.out.push_owned(frame::encode_frame(OP_CLOSE, false, &payload).into_boxed_slice(), usize::MAX);
            conn.close_code = code;
            conn.close_reason = Some(reason.into());
        }
        conn.inbuf = Vec::new();
        conn.state = State::Finishing;
        conn.deadline_ms = self.now_ms + Self::ms(self.ctx.shared.settings.close_linger);
        self.mark_dirty(slot);
    }
}

/// Decode whatever whole frames `buf` holds for `conn`. The one branch on the mode per read:
/// each arm runs that mode's own copy of the decode loop.
fn decode_frames(messages: &mut Messages, ctx: &mut Ctx, conn: &mut Conn, buf: &mut [u8]) -> DecodeOutcome {
    match messages {
        Messages::App(h) => decode_with(h, ctx, conn, buf),
        Messages::Echo(h) => decode_with(h, ctx, conn, buf),
        Messages::Fanout(h) => decode_with(h, ctx, conn, buf),
    }
}

fn decode_with(h: &mut impl OnMessage, ctx: &mut Ctx, conn: &mut Conn, buf: &mut [u8]) -> DecodeOutcome {
    let Ctx { shared, scratch, replies, events } = ctx;
    let cfg = RxConfig { max_message: shared.settings.max_message_bytes, deflate: conn.deflate };
    let open = conn.state == State::Open;
    let mut sink = Out { id: conn.id, replies, events, reply_window: conn.deflate.map(|d| d.server_max_window_bits) };
    let mut out = DecodeOutcome::default();
    let mut messages = 0u64;
    let result = codec::decode(&mut conn.rx, &cfg, buf, scratch, |m| {
        match m {
            Incoming::Text(data) | Incoming::Binary(data) => {
                let text = matches!(m, Incoming::Text(_));
                messages += 1;
                if open {
                    h.on_message(&mut sink, data, text);
                }
            }
            Incoming::Ping(p) => {
                if open {
                    frame::write_header(sink.replies, true, false, OP_PONG, p.len(), None);
                    sink.replies.extend_from_slice(p);
                }
            }
            Incoming::Pong(_) => {}
            Incoming::Close(code, reason) => out.peer_close = Some((code, reason.to_owned())),
        }
        true
    });
    ThreadStats::add(&shared.workers[conn.id.thread()].stats.messages_in, messages);
    match result {
        Ok(n) => out.consumed = n,
        Err(e) => out.error = Some(e),
    }
    out
}
