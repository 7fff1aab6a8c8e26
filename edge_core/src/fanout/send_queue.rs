//! A connection's send queue and its slow-consumer policy (docs/operations.md §4, Send queues).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use super::tick::SharedFrame;

/// At most this many frames per writev (Linux IOV_MAX is 1024; 64 covers a deep backlog).
const MAX_IOV: usize = 64;

enum Chunk {
    Shared(Arc<SharedFrame>),
    Owned(Box<[u8]>),
}

struct Entry {
    chunk: Chunk,
    /// Shared frames are sent compressed to this connection.
    deflated: bool,
}

impl Entry {
    fn bytes(&self) -> &[u8] {
        match &self.chunk {
            Chunk::Shared(f) => f.bytes_for(self.deflated),
            Chunk::Owned(b) => b,
        }
    }

    fn skippable(&self) -> bool {
        matches!(&self.chunk, Chunk::Shared(f) if !f.priority)
    }
}

/// What a push did.
#[derive(Debug, PartialEq, Eq, Default, Clone, Copy)]
pub struct PushOutcome {
    /// Stale tick frames dropped to make room (the client was above the soft cap).
    pub skipped: u32,
    /// The queue passed the hard cap: the connection must be closed (4008).
    pub over_hard_cap: bool,
}

/// What a flush did.
#[derive(Debug, PartialEq, Eq, Default, Clone, Copy)]
pub struct FlushOutcome {
    pub bytes: usize,
    /// Frames fully written, and the events they carried.
    pub frames: u32,
    pub events: u64,
    /// The socket would block with bytes still queued.
    pub blocked: bool,
}

/// Frames waiting for one socket. Empty, it owns no heap memory.
#[derive(Default)]
pub struct SendQueue {
    entries: VecDeque<Entry>,
    /// Bytes of the front entry already written.
    head_written: u32,
    queued: u32,
}

impl SendQueue {
    pub fn queued_bytes(&self) -> usize {
        self.queued as usize
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push(&mut self, e: Entry) {
        self.queued = self.queued.saturating_add(e.bytes().len() as u32);
        self.entries.push_back(e);
    }

    /// Queue a tick frame. Above `soft` bytes, stale unstarted tick frames are dropped first so
    /// the client always gets the newest tick; priority frames are never dropped.
    pub fn push_shared(&mut self, f: Arc<SharedFrame>, deflated: bool, soft: usize, hard: usize) -> PushOutcome {
        let mut out = PushOutcome::default();
        if !f.priority && self.queued_bytes() > soft {
            out.skipped = self.drop_stale();
        }
        self.push(Entry { chunk: Chunk::Shared(f), deflated });
        out.over_hard_cap = self.queued_bytes() > hard;
        out
    }

    /// Queue bytes on the priority lane (acks, errors, control frames).
    pub fn push_owned(&mut self, frame: Box<[u8]>, hard: usize) -> PushOutcome {
        self.push(Entry { chunk: Chunk::Owned(frame), deflated: false });
        PushOutcome { skipped: 0, over_hard_cap: self.queued_bytes() > hard }
    }

    fn drop_stale(&mut self) -> u32 {
        let keep_head = self.head_written > 0;
        let mut dropped = 0u32;
        let mut freed = 0usize;
        let mut i = 0usize;
        self.entries.retain(|e| {
            let first = i == 0;
            i += 1;
            if (first && keep_head) || !e.skippable() {
                return true;
            }
            dropped += 1;
            freed += e.bytes().len();
            false
        });
        self.queued -= freed as u32;
        dropped
    }

    /// Drop everything not yet started (before a forced close) and return the frames dropped.
    pub fn clear_unsent(&mut self) -> u32 {
        let keep = usize::from(self.head_written > 0).min(self.entries.len());
        let dropped = (self.entries.len() - keep) as u32;
        self.entries.truncate(keep);
        self.queued = self.entries.front().map_or(0, |e| (e.bytes().len() - self.head_written as usize) as u32);
        dropped
    }

    /// Write as much as the socket takes, up to `MAX_IOV` frames per writev.
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<FlushOutcome> {
        let mut out = FlushOutcome::default();
        while !self.entries.is_empty() {
            let n = {
                let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
                let mut count = 0;
                for (i, e) in self.entries.iter().take(MAX_IOV).enumerate() {
                    let b = e.bytes();
                    iov[i] = IoSlice::new(if i == 0 { &b[self.head_written as usize..] } else { b });
                    count += 1;
                }
                match w.write_vectored(&iov[..count]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        out.blocked = true;
                        return Ok(out);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            out.bytes += n;
            self.queued -= n as u32;
            let mut left = n;
            while left > 0 {
                let front = self.entries.front().map_or(0, |e| e.bytes().len() - self.head_written as usize);
                if left >= front {
                    left -= front;
                    self.head_written = 0;
                    if let Some(e) = self.entries.pop_front() {
                        out.frames += 1;
                        if let Chunk::Shared(f) = &e.chunk {
                            out.events += u64::from(f.events);
                        }
                    }
                } else {
                    self.head_written += left as u32;
                    left = 0;
                }
            }
        }
        if self.entries.capacity() > 16 {
            // A drained backlog gives its memory back: idle connections hold no buffers.
            self.entries = VecDeque::new();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes `room` bytes, then would block.
    struct Sink {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn tick(byte: u8, len: usize, priority: bool) -> Arc<SharedFrame> {
        Arc::new(SharedFrame { plain: vec![byte; len].into(), deflated: None, events: 1, priority })
    }

    #[test]
    fn partial_writes_keep_order() {
        let mut q = SendQueue::default();
        for b in 0..5u8 {
            q.push_shared(tick(b, 10, false), false, 1000, 2000);
        }
        let mut s = Sink { got: vec![], room: 23 };
        let r = q.flush(&mut s).unwrap();
        assert!(r.blocked);
        assert_eq!((r.bytes, r.frames, q.queued_bytes()), (23, 2, 27));
        s.room = 1000;
        let r = q.flush(&mut s).unwrap();
        assert_eq!((r.frames, q.queued_bytes()), (3, 0));
        let want: Vec<u8> = (0..5u8).flat_map(|b| [b; 10]).collect();
        assert_eq!(s.got, want);
    }

    #[test]
    fn slow_consumer_skips_stale_ticks_keeps_priority() {
        let mut q = SendQueue::default();
        let mut s = Sink { got: vec![], room: 5 };
        q.push_shared(tick(1, 10, false), false, 15, 100);
        q.flush(&mut s).unwrap();
        q.push_shared(tick(2, 10, true), false, 15, 100);
        q.push_shared(tick(3, 10, false), false, 15, 100);
        // Above the soft cap: tick 3 is stale, tick 1 is half-written and must finish.
        let r = q.push_shared(tick(4, 10, false), false, 15, 100);
        assert_eq!(r, PushOutcome { skipped: 1, over_hard_cap: false });
        s.room = 1000;
        q.flush(&mut s).unwrap();
        let want: Vec<u8> = [[1u8; 10], [2; 10], [4; 10]].concat();
        assert_eq!(s.got, want);
    }

    #[test]
    fn hard_cap_is_reported_and_clear_keeps_partial_head() {
        let mut q = SendQueue::default();
        let mut s = Sink { got: vec![], room: 3 };
        assert!(!q.push_owned(vec![9; 10].into(), 25).over_hard_cap);
        q.flush(&mut s).unwrap();
        q.push_owned(vec![8; 10].into(), 25);
        assert!(q.push_owned(vec![7; 10].into(), 25).over_hard_cap);
        assert_eq!(q.clear_unsent(), 2);
        assert_eq!(q.queued_bytes(), 7);
        s.room = 100;
        q.flush(&mut s).unwrap();
        assert_eq!(s.got, vec![9; 10]);
    }
}
