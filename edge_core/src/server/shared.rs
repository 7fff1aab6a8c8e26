//! State shared between the I/O threads, the ticker and the Python bridge.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use crate::fanout::hub::HubState;
use crate::fanout::tick::SharedFrame;
use crate::settings::Settings;

/// An inbound event for Python.
#[derive(Debug)]
pub enum Event {
    Open { id: u64, path: String, peer: String, authorization: Option<String> },
    Message { id: u64, data: Vec<u8>, text: bool },
    Close { id: u64, code: u16, reason: String },
}

/// Events waiting for Python, and the eventfd that tells asyncio so.
pub struct EventSink {
    queue: Mutex<VecDeque<Event>>,
    efd: OwnedFd,
}

impl EventSink {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a negative return is checked before the fd is owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nothing else owns.
        Ok(Self { queue: Mutex::new(VecDeque::new()), efd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. EAGAIN (counter saturated)
        // still leaves it readable, which is all that matters.
        unsafe { libc::write(self.efd.as_raw_fd(), std::ptr::from_ref(&one).cast(), 8) };
    }

    /// Append a thread's batch; one lock and at most one eventfd write per batch.
    pub fn push_batch(&self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let was_empty = {
            let mut q = lock(&self.queue);
            let was_empty = q.is_empty();
            q.extend(batch.drain(..));
            was_empty
        };
        if was_empty {
            self.signal();
        }
    }

    /// Take up to `max` events. Clears the eventfd first, so an event pushed after the take
    /// signals again instead of being stranded.
    pub fn drain(&self, max: usize) -> Vec<Event> {
        let mut counter: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.efd.as_raw_fd(), std::ptr::from_mut(&mut counter).cast(), 8) };
        let (out, more) = {
            let mut q = lock(&self.queue);
            let n = q.len().min(max);
            let out: Vec<Event> = q.drain(..n).collect();
            (out, !q.is_empty())
        };
        if more {
            self.signal();
        }
        out
    }
}

/// A command for one I/O thread.
pub enum Cmd {
    Subscribe(u64, u32),
    Unsubscribe(u64, u32),
    Send(u64, Arc<SharedFrame>),
    SendMany(Vec<u64>, Arc<SharedFrame>),
    SendBatch(Vec<(u64, Arc<SharedFrame>)>),
    Close(u64, u16, String),
    Ticks(Arc<Vec<(u32, Arc<SharedFrame>)>>),
    /// Stop accepting, close every connection with 1001, exit once empty or after the drain time.
    Shutdown(std::time::Duration),
}

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

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
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

    pub fn set_live(&self, slot: usize, id: u64) {
        let mut live = self.live.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if live.len() <= slot {
            live.resize(slot + 1, 0);
        }
        live[slot] = id;
    }

    /// Whether `id` is an open connection of this thread right now.
    pub fn is_live(&self, id: u64, slot: usize) -> bool {
        let live = self.live.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.get(slot) == Some(&id)
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

/// A file served to plain GETs (the web page): content type and body.
pub type StaticFile = (String, Arc<[u8]>);

/// Everything the threads share.
pub struct Shared {
    /// Plain-GET paths (query stripped) → file; set from Python, read on each plain GET.
    pub static_files: RwLock<std::collections::HashMap<String, StaticFile>>,
    pub settings: Settings,
    pub hub: Mutex<HubState>,
    pub ticker_wake: Condvar,
    pub events: EventSink,
    pub workers: Vec<WorkerLink>,
    pub open_connections: AtomicUsize,
    pub draining: AtomicBool,
    pub stopped: AtomicBool,
    pub frames_built: AtomicU64,
    pub ticks: AtomicU64,
    /// Time spent encoding and compressing tick frames, in nanoseconds (all ticks).
    pub tick_build_ns: AtomicU64,
}

impl Shared {
    pub fn hub(&self) -> MutexGuard<'_, HubState> {
        lock(&self.hub)
    }

    /// Publish-side helper: run `f` on the hub and wake the ticker if it asks to.
    pub fn with_hub(&self, f: impl FnOnce(&mut HubState) -> bool) {
        let wake = f(&mut self.hub());
        if wake {
            self.ticker_wake.notify_one();
        }
    }

    /// The thread owning a connection id, if the id is well formed.
    pub fn worker_of(&self, id: u64) -> Option<&WorkerLink> {
        self.workers.get((id >> 56) as usize)
    }
}

/// Lock, ignoring poisoning: every guarded structure stays consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn eventfd_signals_once_per_batch_and_never_strands_events() {
        let s = EventSink::new().unwrap();
        assert!(!readable(s.fd()));
        s.push_batch(&mut vec![Event::Close { id: 1, code: 1000, reason: String::new() }]);
        assert!(readable(s.fd()));
        s.push_batch(&mut vec![Event::Close { id: 2, code: 1000, reason: String::new() }]);
        let got = s.drain(1);
        assert_eq!(got.len(), 1);
        assert!(readable(s.fd()), "one event left: still readable");
        assert_eq!(s.drain(10).len(), 1);
        assert!(!readable(s.fd()));
    }
}
