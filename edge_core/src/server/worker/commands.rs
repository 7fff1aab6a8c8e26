//! What other threads ask of this one (subscribe, send, close, tick frames, shutdown), applied
//! in the order they were queued.

use std::sync::Arc;

use super::Worker;
use crate::fanout::tick::SharedFrame;
use crate::server::conn::State;
use crate::server::conn_id::ConnId;
use crate::server::link::Cmd;

impl Worker {
    pub(super) fn handle_cmds(&mut self) {
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
                    // Counted (or the connection is gone): the stream may now be forgotten.
                    self.ctx.shared.hub().unpin(stream);
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
                Cmd::Ticks(frames, sent) => {
                    for (stream, f) in frames.iter() {
                        // Reported written after this pass's flush (even with no subscriber
                        // here): the ticker paces the stream by it.
                        self.written.push((*stream, sent));
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
    pub(super) fn send_frame(&mut self, id: ConnId, f: &Arc<SharedFrame>) {
        if let Some(slot) = self.slot_of(id) {
            self.queue_shared(slot, f);
        }
    }
}
