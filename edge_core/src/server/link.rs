//! How other threads reach one I/O thread: its command queue, its waker, its live-id table.

use std::sync::{Arc, Mutex, RwLock};

use super::conn_id::ConnId;
use super::stats::ThreadStats;
use super::sync::lock;
use crate::fanout::tick::SharedFrame;

/// A command for one I/O thread.
pub enum Cmd {
    Subscribe(ConnId, u32),
    Unsubscribe(ConnId, u32),
    Send(ConnId, Arc<SharedFrame>),
    SendMany(Vec<ConnId>, Arc<SharedFrame>),
    SendBatch(Vec<(ConnId, Arc<SharedFrame>)>),
    Close(ConnId, u16, String),
    /// One tick's frames (stream id, frame) and when the ticker sent them.
    Ticks(Arc<Vec<(u32, Arc<SharedFrame>)>>, std::time::Instant),
    /// Stop accepting, close every connection with 1001, exit once empty or after the drain time.
    Shutdown(std::time::Duration),
}

/// One I/O thread as the others see it: its command queue, waker and counters.
pub struct WorkerLink {
    cmds: Mutex<Vec<Cmd>>,
    waker: mio::Waker,
    pub stats: ThreadStats,
    /// The id living in each slot (0 = free), so callers can tell a dead id at once: 8 bytes
    /// per slot, written on accept and close, read by the bridge.
    live: RwLock<Vec<u64>>,
}

impl WorkerLink {
    pub fn new(waker: mio::Waker) -> Self {
        Self { cmds: Mutex::new(Vec::new()), waker, stats: ThreadStats::default(), live: RwLock::new(Vec::new()) }
    }

    /// Record `id` as the connection in its slot.
    pub fn set_live(&self, id: ConnId) {
        self.set_slot(id.slot(), id.raw());
    }

    /// Record `slot` as free.
    pub fn set_free(&self, slot: usize) {
        self.set_slot(slot, 0);
    }

    fn set_slot(&self, slot: usize, raw: u64) {
        let mut live = self.live.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if live.len() <= slot {
            live.resize(slot + 1, 0);
        }
        live[slot] = raw;
    }

    /// Whether `id` is an open connection of this thread right now.
    pub fn is_live(&self, id: ConnId) -> bool {
        let live = self.live.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.get(id.slot()) == Some(&id.raw())
    }

    /// Queue a command; the thread is woken only when its queue was empty.
    pub fn send(&self, cmd: Cmd) {
        let was_empty = {
            let mut q = lock(&self.cmds);
            q.push(cmd);
            q.len() == 1
        };
        if was_empty {
            let _ = self.waker.wake();
        }
    }

    pub fn take(&self, into: &mut Vec<Cmd>) {
        std::mem::swap(&mut *lock(&self.cmds), into);
    }
}
