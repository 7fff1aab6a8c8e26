//! Inbound events for Python, and the eventfd that wakes asyncio when there are some.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use super::conn_id::ConnId;
use super::sync::lock;

/// An inbound event for Python.
#[derive(Debug)]
pub enum Event {
    Open { id: ConnId, path: String, peer: String, authorization: Option<String> },
    Message { id: ConnId, data: Vec<u8>, text: bool },
    Close { id: ConnId, code: u16, reason: String },
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
        s.push_batch(&mut vec![Event::Close { id: ConnId::from_raw(1), code: 1000, reason: String::new() }]);
        assert!(readable(s.fd()));
        s.push_batch(&mut vec![Event::Close { id: ConnId::from_raw(2), code: 1000, reason: String::new() }]);
        let got = s.drain(1);
        assert_eq!(got.len(), 1);
        assert!(readable(s.fd()), "one event left: still readable");
        assert_eq!(s.drain(10).len(), 1);
        assert!(!readable(s.fd()));
    }
}
