//! One I/O thread: its epoll, its copy of the listener, its connections, its stream index.
//!
//! Nothing here is shared on the hot path: other threads talk to a worker through its command
//! queue and waker; a tick frame reaches it as one `Arc` and is queued to every local
//! subscriber, then each dirty connection gets one writev per loop pass.
//!
//! One job per file: `accept` (new connections, the upgrade), `read` (reading and decoding),
//! `messages` (what a data message does in app mode; `bench_modes` in echo and fanout mode),
//! `write` (send queues and flushing), `closing` (the close handshake and dropping),
//! `subscriptions` (the thread's stream index), `commands` (what other threads ask),
//! `timers` (the periodic sweep). This file holds the worker's state and its event loop.

mod accept;
mod bench_modes;
mod closing;
mod commands;
mod handler;
mod messages;
mod read;
mod subscriptions;
mod timers;
mod write;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::Conn;
use super::conn_id::ConnId;
use super::events::Event;
use super::link::Cmd;
use super::shared::Shared;
use super::stats::ThreadStats;
use crate::proto::codec::Scratch;
use messages::Messages;
use read::READ_BUF;

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Per-thread buffers and handles the frame handlers need (split from the connection slab so
/// both can be borrowed at once).
struct Ctx {
    shared: Arc<Shared>,
    scratch: Scratch,
    replies: Vec<u8>,
    events: Vec<Event>,
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
    /// What data messages do: chosen once from the mode, so the decode loop never asks.
    messages: Messages,
    dirty: Vec<usize>,
    /// Tick frames handed to this thread in this loop pass (stream, sent at): reported written
    /// to the hub once the pass has flushed them.
    written: Vec<(u32, Instant)>,
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
        let messages = Messages::new(&shared);
        Ok(Self {
            idx,
            poll,
            listener: Some(listener),
            conns: Slab::with_capacity(1024),
            streams: HashMap::new(),
            serial: 0,
            rbuf: vec![0u8; READ_BUF].into_boxed_slice(),
            ctx: Ctx { shared, scratch: Scratch::default(), replies: Vec::new(), events: Vec::new() },
            messages,
            dirty: Vec::new(),
            written: Vec::new(),
            again: Vec::new(),
            cmds: Vec::new(),
            start: Instant::now(),
            now_ms: 0,
            shutting_down: false,
            shutdown_deadline_ms: u64::MAX,
        })
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.ctx.shared
    }

    pub(super) fn stats(&self) -> &ThreadStats {
        &self.ctx.shared.workers[self.idx].stats
    }

    pub(super) fn ms(d: Duration) -> u64 {
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
            self.report_written();
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

    pub(super) fn slot_of(&self, id: ConnId) -> Option<usize> {
        let slot = id.slot();
        self.conns.get(slot).filter(|c| c.id == id).map(|_| slot)
    }
}
