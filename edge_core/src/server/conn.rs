//! One connection's record. Idle, it holds no buffers: ~170 bytes in the slab plus its
//! subscription entries (the target is ≤1 KB of process RSS per idle connection:
//! docs/operations.md §6).

use mio::net::TcpStream;

use super::conn_id::ConnId;
use crate::fanout::send_queue::SendQueue;
use crate::proto::codec::RxState;
use crate::proto::deflate::DeflateParams;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the whole upgrade request.
    Handshake,
    Open,
    /// Our close frame is queued or sent; reading on until the peer's close or the linger ends.
    Closing,
    /// Nothing more to read: drop once the send queue is flushed (or the linger ends).
    Finishing,
}

pub struct Conn {
    pub sock: TcpStream,
    pub id: ConnId,
    pub state: State,
    pub deflate: Option<DeflateParams>,
    pub ping_outstanding: bool,
    pub dirty: bool,
    /// Not read while its send queue is over the soft cap: TCP pushes back on a client that
    /// sends faster than it reads its replies.
    pub read_paused: bool,
    /// After a forced close the input may stop mid-frame: it is read and dropped, not decoded.
    pub discard_input: bool,
    /// Our side of the TCP stream is shut (FIN sent); we read on until EOF or the linger ends.
    pub write_shut: bool,
    /// The upgrade succeeded (its open was reported, so its close will be too).
    pub opened: bool,
    /// Close code and reason reported to Python when the connection ends.
    pub close_code: u16,
    pub close_reason: Option<Box<str>>,
    /// Milliseconds since the worker started.
    pub last_read_ms: u64,
    pub last_progress_ms: u64,
    /// Handshake or linger deadline.
    pub deadline_ms: u64,
    pub out: SendQueue,
    pub rx: RxState,
    /// Bytes of an unfinished request or frame.
    pub inbuf: Vec<u8>,
    /// (stream id, position in that stream's subscriber list on this thread).
    pub subs: Vec<(u32, u32)>,
}

impl Conn {
    pub fn new(sock: TcpStream, id: ConnId, now_ms: u64, handshake_deadline_ms: u64) -> Self {
        Self {
            sock,
            id,
            state: State::Handshake,
            deflate: None,
            ping_outstanding: false,
            dirty: false,
            read_paused: false,
            discard_input: false,
            write_shut: false,
            opened: false,
            close_code: crate::proto::codes::ABNORMAL,
            close_reason: None,
            last_read_ms: now_ms,
            last_progress_ms: now_ms,
            deadline_ms: handshake_deadline_ms,
            out: SendQueue::default(),
            rx: RxState::default(),
            inbuf: Vec::new(),
            subs: Vec::new(),
        }
    }

    /// Whether shared compressed tick frames may go to this connection.
    pub fn takes_shared_deflate(&self) -> bool {
        self.deflate.is_some_and(|d| d.accepts_shared_frames())
    }
}
