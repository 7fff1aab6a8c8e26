//! Socket writes through `send`/`sendmsg` instead of `write`/`writev`: the socket calls skip the
//! VFS layer (`vfs_writev` + `fdget_pos` were ~6% of server samples in a 4 000-viewer fan-out
//! profile), and MSG_NOSIGNAL turns a write to a reset peer into EPIPE instead of SIGPIPE.

use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, RawFd};

/// Writes to a connected, non-blocking socket.
pub struct SocketSink {
    fd: RawFd,
}

impl SocketSink {
    pub fn new(sock: &impl AsRawFd) -> Self {
        Self { fd: sock.as_raw_fd() }
    }
}

fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Write for SocketSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live slice of `buf.len()` bytes; `fd` is an open socket borrowed from
        // the connection for the duration of this call.
        check(unsafe { libc::send(self.fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) })
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.len() == 1 {
            return self.write(&bufs[0]);
        }
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it); the msghdr
        // points at `bufs`, which outlives the call; no name or control data is passed.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr().cast_mut().cast();
            msg.msg_iovlen = bufs.len();
            libc::sendmsg(self.fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
        };
        check(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn single_and_vectored_sends_arrive_whole_and_in_order() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut sink = SocketSink::new(&a);
        assert_eq!(sink.write(b"one").unwrap(), 3);
        let parts = [IoSlice::new(b"two"), IoSlice::new(b""), IoSlice::new(b"three")];
        assert_eq!(sink.write_vectored(&parts).unwrap(), 8);
        let mut got = [0u8; 11];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"onetwothree");
    }

    #[test]
    fn full_buffer_would_block_and_closed_peer_is_an_error_not_a_signal() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut sink = SocketSink::new(&a);
        let chunk = vec![0u8; 1 << 16];
        let mut sent = 0usize;
        let err = loop {
            match sink.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
        };
        assert!(sent > 0);
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(b);
        assert!(sink.write(b"x").is_err());
    }
}
