//! One I/O thread: its epoll, its listener (SO_REUSEPORT), its connections, its stream index.
//!
//! Nothing here is shared on the hot path: other threads talk to a worker through its command
//! queue and waker; a tick frame reaches it as one `Arc` and is queued to every local
//! subscriber, then each dirty connection gets one writev per loop pass.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{Conn, State};
use super::conn_id::ConnId;
use super::events::Event;
use super::link::Cmd;
use super::shared::Shared;
use super::stats::ThreadStats;
use crate::fanout::send_queue::PushOutcome;
use crate::fanout::tick::SharedFrame;
use crate::proto::codec::{self, Incoming, RxConfig, Scratch};
use crate::proto::deflate::DeflaterSet;
use crate::proto::frame::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::proto::handshake::{self, Parsed, Rejection};
use crate::proto::{close, codes, msgpack};
use crate::settings::Mode;

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);
/// Reads per readiness event before yielding to other connections (64 KiB each).
const READS_PER_TURN: usize = 16;
const READ_BUF: usize = 64 * 1024;
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The `err` every app-mode binary message that is not one msgpack value gets
/// (docs/protocol.md §6, code `bad_msgpack`); the connection stays open.
fn malformed_error_frame() -> Vec<u8> {
    let mut p = Vec::with_capacity(80);
    msgpack::write_map_len(&mut p, 3);
    msgpack::write_str(&mut p, "t");
    msgpack::write_str(&mut p, "err");
    msgpack::write_str(&mut p, "code");
    msgpack::write_str(&mut p, codes::BAD_MSGPACK);
    msgpack::write_str(&mut p, "msg");
    msgpack::write_str(&mut p, "a binary message must be exactly one msgpack value");
    frame::encode_frame(OP_BINARY, false, &p)
}

/// Per-thread buffers and handles the frame handlers need (split from the connection slab so
/// both can be borrowed at once).
struct Ctx {
    shared: Arc<Shared>,
    scratch: Scratch,
    deflaters: DeflaterSet,
    replies: Vec<u8>,
    events: Vec<Event>,
    fanout_stream: u32,
    malformed: Vec<u8>,
}

/// What decoding one read's worth of frames asks the worker to do.
#[derive(Default)]
struct DecodeOutcome {
    consumed: usize,
    peer_close: Option<(u16, String)>,
    error: Option<codec::ProtocolError>,
}

pub struct Worker {
    idx: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    streams: HashMap<u32, Vec<u32>>,
    serial: u64,
    rbuf: Box<[u8]>,
    ctx: Ctx,
    dirty: Vec<usize>,
    again: Vec<usize>,
    cmds: Vec<Cmd>,
    start: Instant,
    now_ms: u64,
    shutting_down: bool,
    shutdown_deadline_ms: u64,
}

impl Worker {
    pub fn new(idx: usize, poll: Poll, mut listener: TcpListener, shared: Arc<Shared>) -> io::Result<Self> {
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let s = &shared.settings;
        let fanout_stream = if s.mode == Mode::Fanout { shared.hub().intern(&s.fanout_stream) } else { u32::MAX };
        let deflaters = DeflaterSet::new(s.deflate_level);
        Ok(Self {
            idx,
            poll,
            listener: Some(listener),
            conns: Slab::with_capacity(1024),
            streams: HashMap::new(),
            serial: 0,
            rbuf: vec![0u8; READ_BUF].into_boxed_slice(),
            ctx: Ctx {
                shared,
                scratch: Scratch::default(),
                deflaters,
                replies: Vec::new(),
                events: Vec::new(),
                fanout_stream,
                malformed: malformed_error_frame(),
            },
            dirty: Vec::new(),
            again: Vec::new(),
            cmds: Vec::new(),
            start: Instant::now(),
            now_ms: 0,
            shutting_down: false,
            shutdown_deadline_ms: u64::MAX,
        })
    }

    fn shared(&self) -> &Shared {
        &self.ctx.shared
    }

    fn stats(&self) -> &ThreadStats {
        &self.ctx.shared.workers[self.idx].stats
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = 0u64;
        loop {
            let timeout = if self.again.is_empty() {
                Duration::from_millis(next_sweep.saturating_sub(self.now_ms).clamp(1, 250))
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            let busy_from = Instant::now();
            self.now_ms = Self::ms(busy_from - self.start);
            for ev in &events {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => self.handle_cmds(),
                    Token(slot) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(slot, ev.is_read_closed() || ev.is_error());
                        }
                        if ev.is_writable() {
                            self.mark_dirty(slot);
                        }
                    }
                }
            }
            for slot in std::mem::take(&mut self.again) {
                self.on_readable(slot, true);
            }
            self.flush_dirty();
            self.ctx.shared.events.push_batch(&mut self.ctx.events);
            if self.now_ms >= next_sweep {
                self.sweep();
                next_sweep = self.now_ms + Self::ms(SWEEP_EVERY);
            }
            ThreadStats::add(&self.stats().loop_busy_us, busy_from.elapsed().as_micros() as u64);
            if self.shutting_down && (self.conns.is_empty() || self.now_ms >= self.shutdown_deadline_ms) {
                break;
            }
        }
        for slot in self.conns.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.drop_conn(slot);
        }
        self.ctx.shared.events.push_batch(&mut self.ctx.events);
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (sock, _peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EMFILE / ENFILE / ECONNABORTED: the sweep retries later; nothing to undo.
                Err(_) => return,
            };
            self.admit(sock);
        }
    }

    fn admit(&mut self, mut sock: TcpStream) {
        let shared = self.shared();
        let open = shared.open_connections.load(Ordering::Relaxed);
        if open >= shared.settings.max_connections
            || shared.draining.load(Ordering::Relaxed)
            || self.conns.len() >= ConnId::MAX_SLOTS
        {
            let _ = sock.write(&handshake::unavailable_response());
            ThreadStats::add(&self.stats().rejected, 1);
            return;
        }
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        self.serial = ConnId::next_serial(self.serial);
        let id = ConnId::new(self.idx, self.serial, slot);
        let deadline = self.now_ms + Self::ms(self.ctx.shared.settings.handshake_timeout);
        if self.poll.registry().register(&mut sock, Token(slot), Interest::READABLE | Interest::WRITABLE).is_err() {
            return;
        }
        entry.insert(Conn::new(sock, id, self.now_ms, deadline));
        self.ctx.shared.workers[self.idx].set_live(id);
        self.ctx.shared.open_connections.fetch_add(1, Ordering::Relaxed);
        ThreadStats::add(&self.stats().connections, 1);
        ThreadStats::add(&self.stats().accepted, 1);
    }

    /// Read until the socket is drained. A short read means it is (epoll reports the next
    /// arrival as a new edge), which saves the EAGAIN read per event; when the event also
    /// carried a hang-up, read on to see the EOF.
    fn on_readable(&mut self, slot: usize, hangup: bool) {
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

    fn on_eof(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if conn.state == State::Open || conn.state == State::Handshake {
            conn.close_code = codes::ABNORMAL;
            conn.close_reason = Some("connection lost".into());
        }
        self.drop_conn(slot);
    }

    fn on_handshake_bytes(&mut self, slot: usize, n: usize) {
        let settings = &self.ctx.shared.settings;
        let conn = &mut self.conns[slot];
        conn.inbuf.extend_from_slice(&self.rbuf[..n]);
        match handshake::parse(&conn.inbuf, settings.max_request_bytes, settings.deflate) {
            Parsed::Partial => {}
            Parsed::Reject(r) => {
                let response = match &r {
                    Rejection::PlainGet(path) => static_response(&self.ctx.shared, path),
                    _ => None,
                };
                let response = response.unwrap_or_else(|| handshake::rejection_response(&r));
                // Best effort in one write: a static page is small, and the socket closes after.
                let _ = conn.sock.write(&response);
                if !matches!(r, Rejection::PlainGet(_)) {
                    ThreadStats::add(&self.ctx.shared.workers[self.idx].stats.rejected, 1);
                }
                conn.close_reason = Some("rejected upgrade".into());
                self.drop_conn(slot);
            }
            Parsed::Upgrade(up, consumed) => {
                conn.inbuf.drain(..consumed);
                conn.deflate = up.deflate.as_ref().map(|(p, _)| *p);
                let response = handshake::switching_protocols(&up);
                conn.out.push_owned(response.into_boxed_slice(), usize::MAX);
                conn.state = State::Open;
                self.mark_dirty(slot);
                self.on_open(slot, &up);
                let leftover = self.conns.get(slot).map_or(0, |c| c.inbuf.len());
                if leftover > 0 {
                    self.on_frame_bytes(slot, 0);
                }
            }
        }
    }

    fn on_open(&mut self, slot: usize, up: &handshake::Upgrade) {
        match self.ctx.shared.settings.mode {
            Mode::App => {
                let conn = &self.conns[slot];
                let peer = up.forwarded_for.clone().unwrap_or_else(|| {
                    conn.sock.peer_addr().map_or_else(|_| String::new(), |a: SocketAddr| a.to_string())
                });
                self.ctx.events.push(Event::Open {
                    id: conn.id,
                    path: up.path.clone(),
                    peer,
                    authorization: up.authorization.clone(),
                });
            }
            Mode::Fanout => self.subscribe_local(slot, self.ctx.fanout_stream),
            Mode::Echo => {}
        }
    }

    /// Decode frames from the read buffer (`n` new bytes) or, when a partial frame is pending,
    /// from the connection's own buffer.
    fn on_frame_bytes(&mut self, slot: usize, n: usize) {
        let conn = &mut self.conns[slot];
        let outcome = if conn.inbuf.is_empty() {
            let o = decode_frames(&mut self.ctx, conn, &mut self.rbuf[..n]);
            if o.error.is_none() && o.peer_close.is_none() && o.consumed < n {
                conn.inbuf.extend_from_slice(&self.rbuf[o.consumed..n]);
            }
            o
        } else {
            conn.inbuf.extend_from_slice(&self.rbuf[..n]);
            let mut buf = std::mem::take(&mut conn.inbuf);
            let o = decode_frames(&mut self.ctx, conn, &mut buf);
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

    fn on_peer_close(&mut self, slot: usize, code: u16, reason: String) {
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

    fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    fn apply_push(&mut self, slot: usize, r: PushOutcome) {
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

    fn queue_owned(&mut self, slot: usize, bytes: Box<[u8]>) {
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

    fn queue_shared(&mut self, slot: usize, f: &Arc<SharedFrame>) {
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

    /// Queue a close frame after what is already queued and wait for the peer's reply.
    fn begin_close(&mut self, slot: usize, code: u16, reason: &str) {
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
    fn fail(&mut self, slot: usize, code: u16, reason: &str) {
        self.begin_close(slot, code, reason);
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.inbuf = Vec::new();
            conn.state = State::Finishing;
        }
    }

    /// Drop everything unsent, then close: slow consumers, write timeouts.
    fn force_close(&mut self, slot: usize, code: u16, reason: &str) {
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.out.clear_unsent();
            conn.inbuf = Vec::new();
            conn.rx = crate::proto::codec::RxState::default();
            conn.discard_input = true;
        }
        self.begin_close(slot, code, reason);
    }

    fn flush_dirty(&mut self) {
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

    fn flush(&mut self, slot: usize) {
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
        match conn.out.flush(&mut super::sink::SocketSink::new(&conn.sock)) {
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
    fn linger(conn: &mut Conn) {
        if !conn.write_shut {
            conn.write_shut = true;
            let _ = conn.sock.shutdown(std::net::Shutdown::Write);
        }
    }

    fn subscribe_local(&mut self, slot: usize, stream: u32) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.subs.iter().any(|(s, _)| *s == stream) {
            return;
        }
        let list = self.streams.entry(stream).or_default();
        conn.subs.push((stream, list.len() as u32));
        list.push(slot as u32);
        self.ctx.shared.hub().add_subscribers(stream, 1);
    }

    fn unsubscribe_local(&mut self, slot: usize, stream: u32) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let Some(i) = conn.subs.iter().position(|(s, _)| *s == stream) else {
            return;
        };
        let (_, pos) = conn.subs.swap_remove(i);
        let Some(list) = self.streams.get_mut(&stream) else {
            return;
        };
        list.swap_remove(pos as usize);
        // The last subscriber moved into `pos`: tell it where it now sits.
        if let Some(&moved) = list.get(pos as usize) {
            if let Some(m) = self.conns.get_mut(moved as usize) {
                if let Some(e) = m.subs.iter_mut().find(|(s, _)| *s == stream) {
                    e.1 = pos;
                }
            }
        }
        if list.is_empty() {
            self.streams.remove(&stream);
        }
        self.ctx.shared.hub().add_subscribers(stream, -1);
    }

    fn drop_conn(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let subs: Vec<u32> = conn.subs.iter().map(|(s, _)| *s).collect();
        for s in subs {
            self.unsubscribe_local(slot, s);
        }
        let conn = self.conns.remove(slot);
        self.ctx.shared.workers[self.idx].set_free(slot);
        let was_open = conn.state != State::Handshake;
        if was_open && self.ctx.shared.settings.mode == Mode::App {
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

    fn slot_of(&self, id: ConnId) -> Option<usize> {
        let slot = id.slot();
        self.conns.get(slot).filter(|c| c.id == id).map(|_| slot)
    }

    fn handle_cmds(&mut self) {
        let mut cmds = std::mem::take(&mut self.cmds);
        self.ctx.shared.workers[self.idx].take(&mut cmds);
        for cmd in cmds.drain(..) {
            match cmd {
                Cmd::Subscribe(id, stream) => {
                    if let Some(slot) = self.slot_of(id) {
                        if self.conns[slot].state == State::Open {
                            self.subscribe_local(slot, stream);
                        }
                    }
                }
                Cmd::Unsubscribe(id, stream) => {
                    if let Some(slot) = self.slot_of(id) {
                        self.unsubscribe_local(slot, stream);
                    }
                }
                Cmd::Send(id, f) => self.send_frame(id, &f),
                Cmd::SendMany(ids, f) => {
                    for id in ids {
                        self.send_frame(id, &f);
                    }
                }
                Cmd::SendBatch(items) => {
                    for (id, f) in items {
                        self.send_frame(id, &f);
                    }
                }
                Cmd::Close(id, code, reason) => {
                    if let Some(slot) = self.slot_of(id) {
                        self.begin_close(slot, code, &reason);
                    }
                }
                Cmd::Ticks(frames) => {
                    for (stream, f) in frames.iter() {
                        let Some(list) = self.streams.get(stream) else {
                            continue;
                        };
                        let slots: Vec<u32> = list.clone();
                        for slot in slots {
                            self.queue_shared(slot as usize, f);
                        }
                    }
                }
                Cmd::Shutdown(drain) => self.start_shutdown(drain),
            }
        }
        self.cmds = cmds;
    }

    /// A direct send: the framed message is queued by reference, like a tick frame (it is a
    /// priority frame, so the slow-consumer policy never skips it).
    fn send_frame(&mut self, id: ConnId, f: &Arc<SharedFrame>) {
        if let Some(slot) = self.slot_of(id) {
            self.queue_shared(slot, f);
        }
    }

    fn start_shutdown(&mut self, drain: Duration) {
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

    /// Timers: handshake deadline, ping and idle, write timeout, close linger; the queue gauge.
    fn sweep(&mut self) {
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

/// The 200 response for a plain GET of a registered static path.
fn static_response(shared: &Shared, path_and_query: &str) -> Option<Vec<u8>> {
    let path = path_and_query.split(['?', '#']).next().unwrap_or("/");
    let files = shared.static_files.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (content_type, body) = files.get(path)?;
    Some(handshake::http_response("200 OK", "Cache-Control: no-cache\r\n", content_type, body))
}

/// Decode whatever whole frames `buf` holds for `conn`, acting on each message by mode.
fn decode_frames(ctx: &mut Ctx, conn: &mut Conn, buf: &mut [u8]) -> DecodeOutcome {
    let Ctx { shared, scratch, deflaters, replies, events, fanout_stream, malformed } = ctx;
    let settings = &shared.settings;
    let cfg = RxConfig { max_message: settings.max_message_bytes, deflate: conn.deflate };
    let open = conn.state == State::Open;
    let id = conn.id;
    let reply_window = conn.deflate.map(|d| d.server_max_window_bits);
    let mut out = DecodeOutcome::default();
    let mode = settings.mode;
    let mut messages = 0u64;
    let result = codec::decode(&mut conn.rx, &cfg, buf, scratch, |m| {
        match m {
            Incoming::Text(data) | Incoming::Binary(data) => {
                let text = matches!(m, Incoming::Text(_));
                messages += 1;
                if !open {
                    return true;
                }
                match mode {
                    Mode::Echo => {
                        let op = if text { OP_TEXT } else { OP_BINARY };
                        if let Some(bits) = reply_window.filter(|_| data.len() >= settings.deflate_min_bytes) {
                            let mut z = Vec::with_capacity(data.len() / 2 + 16);
                            deflaters.for_window(bits).compress(data, &mut z);
                            frame::write_header(replies, true, true, op, z.len(), None);
                            replies.extend_from_slice(&z);
                        } else {
                            frame::write_header(replies, true, false, op, data.len(), None);
                            replies.extend_from_slice(data);
                        }
                    }
                    Mode::Fanout => {
                        let stream = *fanout_stream;
                        shared.with_hub(|h| h.publish_raw(stream, data, text));
                    }
                    Mode::App => {
                        if !text && settings.validate_msgpack && msgpack::validate(data).is_err() {
                            replies.extend_from_slice(malformed);
                        } else {
                            events.push(Event::Message { id, data: data.to_vec(), text });
                        }
                    }
                }
            }
            Incoming::Ping(p) => {
                if open {
                    frame::write_header(replies, true, false, OP_PONG, p.len(), None);
                    replies.extend_from_slice(p);
                }
            }
            Incoming::Pong(_) => {}
            Incoming::Close(code, reason) => out.peer_close = Some((code, reason.to_owned())),
        }
        true
    });
    ThreadStats::add(&shared.workers[id.thread()].stats.messages_in, messages);
    match result {
        Ok(n) => out.consumed = n,
        Err(e) => out.error = Some(e),
    }
    out
}
