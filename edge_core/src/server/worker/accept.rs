//! New connections: accept, admission (limits, draining), the upgrade handshake, static pages.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::messages::Messages;
use super::Worker;
use crate::proto::handshake::{self, Parsed, Rejection};
use crate::server::conn::{Conn, State};
use crate::server::conn_id::ConnId;
use crate::server::events::Event;
use crate::server::shared::Shared;
use crate::server::stats::ThreadStats;

impl Worker {
    pub(super) fn accept_all(&mut self) {
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

    pub(super) fn admit(&mut self, mut sock: TcpStream) {
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

    pub(super) fn on_handshake_bytes(&mut self, slot: usize, n: usize) {
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
                if !matches!(r, Rejection::PlainGet(_)) {
                    ThreadStats::add(&self.ctx.shared.workers[self.idx].stats.rejected, 1);
                }
                self.reject(slot, response);
            }
            Parsed::Upgrade(up, _) if !self.ctx.shared.origins.allows(up.origin.as_deref()) => {
                // Refused before Python hears of it: a page on another site never gets a session.
                ThreadStats::add(&self.ctx.shared.workers[self.idx].stats.rejected, 1);
                let response = handshake::rejection_response(&Rejection::Forbidden("origin not allowed"));
                self.reject(slot, response);
            }
            Parsed::Upgrade(up, consumed) => {
                conn.inbuf.drain(..consumed);
                conn.deflate = up.deflate.as_ref().map(|(p, _)| *p);
                let response = handshake::switching_protocols(&up);
                conn.out.push_owned(response.into_boxed_slice(), usize::MAX);
                conn.state = State::Open;
                conn.opened = true;
                self.mark_dirty(slot);
                self.on_open(slot, &up);
                let leftover = self.conns.get(slot).map_or(0, |c| c.inbuf.len());
                if leftover > 0 {
                    self.on_frame_bytes(slot, 0);
                }
            }
        }
    }

    /// Answer a refused request and close with a lingering close: the response is queued, FIN
    /// follows it, and whatever the client still sends (the rest of a 3 MB header) is read and
    /// dropped until its EOF or `close_linger`. Closing with unread input would send an RST,
    /// which can destroy the response before the client reads it.
    fn reject(&mut self, slot: usize, response: Vec<u8>) {
        let linger = Self::ms(self.ctx.shared.settings.close_linger);
        let conn = &mut self.conns[slot];
        conn.inbuf = Vec::new();
        conn.out.push_owned(response.into_boxed_slice(), usize::MAX);
        conn.state = State::Finishing;
        conn.discard_input = true;
        conn.deadline_ms = self.now_ms + linger;
        conn.close_reason = Some("rejected upgrade".into());
        self.mark_dirty(slot);
    }

    pub(super) fn on_open(&mut self, slot: usize, up: &handshake::Upgrade) {
        match &self.messages {
            Messages::App(_) => {
                let conn = &self.conns[slot];
                // The client's address: the socket's peer, or what a trusted proxy says it is.
                let peer = conn.sock.peer_addr().map_or_else(
                    |_| String::new(),
                    |a: SocketAddr| {
                        self.ctx.shared.proxies.client_address(a, up.forwarded_for.as_deref(), up.forwarded.as_deref())
                    },
                );
                self.ctx.events.push(Event::Open {
                    id: conn.id,
                    path: up.path.clone(),
                    peer,
                    authorization: up.authorization.clone(),
                });
            }
            Messages::Fanout(f) => self.subscribe_local(slot, f.stream),
            Messages::Echo(_) => {}
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
