//! One viewer connection: TCP connect, the upgrade, then frames until either side closes.

use std::io::{ErrorKind, Read, Write};

use mio::net::TcpStream;

use crate::clock;
use crate::receive::Receiver;
use crate::ws::{self, Parsed};

/// Read at least this much per `read()`; the buffer is shared by every connection of the process.
const MIN_READ: usize = 64 << 10;
/// A connection keeps a partial-frame buffer up to this size between reads; larger ones are freed.
const KEEP_PARTIAL_CAPACITY: usize = 4 << 10;
/// What an empty close frame means (RFC 6455 §7.1.5), as picows reports it.
const CLOSE_NO_STATUS: u16 = 1005;

pub enum Phase {
    /// TCP connect in progress.
    Connecting {
        request: Vec<u8>,
        accept: String,
    },
    /// Request sent; collecting the response head.
    Upgrading {
        accept: String,
        head: Vec<u8>,
    },
    Open,
}

/// After a readiness event: still going, or the server ended it cleanly (EOF or close frame).
#[derive(Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Ended,
}

pub struct Conn {
    pub stream: TcpStream,
    pub phase: Phase,
    /// CLOCK_MONOTONIC ns by which the upgrade must be done.
    pub deadline_ns: i64,
    /// The close code the server sent, if it sent a close frame.
    pub close_code: Option<u16>,
    /// The seq this viewer should receive next.
    expect: u64,
    /// The start of a frame that has not fully arrived.
    partial: Vec<u8>,
    /// A fragmented message being reassembled: its opcode and the bytes so far.
    fragments: Option<(u8, Vec<u8>)>,
    /// Bytes the socket would not take yet (only the request, pongs and the close reply are sent).
    out: Vec<u8>,
    mask: [u8; 4],
}

impl Conn {
    pub fn new(stream: TcpStream, request: Vec<u8>, accept: String, deadline_ns: i64, mask: [u8; 4]) -> Self {
        Conn {
            stream,
            phase: Phase::Connecting { request, accept },
            deadline_ns,
            close_code: None,
            expect: 0,
            partial: Vec::new(),
            fragments: None,
            out: Vec::new(),
            mask,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Handles one readiness event. `Err` ends the connection with that reason.
    pub fn on_ready(&mut self, readable: bool, receiver: &mut Receiver, buf: &mut Vec<u8>) -> Result<Liveness, String> {
        if matches!(self.phase, Phase::Connecting { .. }) {
            if !self.connected()? {
                return Ok(Liveness::Alive);
            }
            if let Phase::Connecting { request, accept } = std::mem::replace(&mut self.phase, Phase::Open) {
                self.phase = Phase::Upgrading { accept, head: Vec::new() };
                self.send(&request)?;
            }
        }
        self.flush()?;
        if !readable {
            return Ok(Liveness::Alive);
        }
        if let Phase::Upgrading { .. } = self.phase {
            if self.read_upgrade(buf)? == Liveness::Ended {
                return Ok(Liveness::Ended);
            }
            if !self.is_open() {
                return Ok(Liveness::Alive);
            }
            // Frames that came in the same segment as the response head.
            let early = std::mem::take(&mut self.partial);
            let (consumed, liveness) = self.dispatch(&early, receiver, clock::monotonic_ns())?;
            self.partial.extend_from_slice(&early[consumed..]);
            if liveness == Liveness::Ended {
                return Ok(liveness);
            }
        }
        self.read_frames(receiver, buf)
    }

    fn connected(&mut self) -> Result<bool, String> {
        if let Some(err) = self.stream.take_error().map_err(describe)? {
            return Err(describe(err));
        }
        match self.stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(describe(err)),
        }
    }

    fn read_upgrade(&mut self, buf: &mut [u8]) -> Result<Liveness, String> {
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => return Err("ConnectionClosed: server closed during the upgrade".to_owned()),
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(Liveness::Alive),
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return Err(describe(err)),
            };
            let Phase::Upgrading { accept, head } = &mut self.phase else { unreachable!("caller checked") };
            head.extend_from_slice(&buf[..n]);
            if let Some(length) =
                ws::check_upgrade_response(head, accept).map_err(|e| format!("HandshakeError: {e}"))?
            {
                self.partial = head[length..].to_vec();
                self.phase = Phase::Open;
                return Ok(Liveness::Alive);
            }
            if head.len() > 16 << 10 {
                return Err("HandshakeError: response head over 16 KiB".to_owned());
            }
        }
    }

    /// Reads until the socket is drained, dispatching every complete frame.
    fn read_frames(&mut self, receiver: &mut Receiver, buf: &mut Vec<u8>) -> Result<Liveness, String> {
        loop {
            let kept = self.partial.len();
            let frame_len = match ws::parse_frame(&self.partial) {
                Parsed::Incomplete(needed) => needed,
                _ => 0,
            };
            let wanted = frame_len.max(kept + MIN_READ);
            if buf.len() < wanted {
                buf.resize(wanted.next_power_of_two(), 0);
            }
            buf[..kept].copy_from_slice(&self.partial);
            if self.partial.capacity() > KEEP_PARTIAL_CAPACITY {
                self.partial = Vec::new();
            } else {
                self.partial.clear();
            }
            let space = buf.len() - kept;
            let n = match self.stream.read(&mut buf[kept..]) {
                Ok(0) => return Ok(Liveness::Ended),
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::WouldBlock || err.kind() == ErrorKind::Interrupted => {
                    self.partial.extend_from_slice(&buf[..kept]);
                    if err.kind() == ErrorKind::Interrupted {
                        continue;
                    }
                    return Ok(Liveness::Alive);
                }
                Err(err) => return Err(describe(err)),
            };
            let end = kept + n;
            let (consumed, liveness) = self.dispatch(&buf[..end], receiver, clock::monotonic_ns())?;
            if liveness == Liveness::Ended {
                return Ok(liveness);
            }
            self.partial.extend_from_slice(&buf[consumed..end]);
            // A short read drained the socket: epoll (edge-triggered) reports the next arrival, so
            // the extra read that would only return EAGAIN is skipped.
            if n < space {
                return Ok(Liveness::Alive);
            }
        }
    }

    /// Handles every complete frame at the start of `data`; returns how many bytes they took.
    fn dispatch(&mut self, data: &[u8], receiver: &mut Receiver, now_ns: i64) -> Result<(usize, Liveness), String> {
        let mut pos = 0;
        while pos < data.len() {
            let head = match ws::parse_frame(&data[pos..]) {
                Parsed::Frame(head) => head,
                Parsed::Incomplete(_) => break,
                Parsed::Invalid(why) => return Err(format!("ProtocolError: {why}")),
            };
            let payload = &data[pos + head.header_len..pos + head.total_len()];
            pos += head.total_len();
            match head.opcode {
                ws::OP_BINARY | ws::OP_TEXT if self.fragments.is_some() => {
                    return Err("ProtocolError: new message inside a fragmented one".to_owned());
                }
                ws::OP_BINARY | ws::OP_TEXT if head.fin => self.deliver(head.opcode, payload, receiver, now_ns),
                ws::OP_BINARY | ws::OP_TEXT => self.fragments = Some((head.opcode, payload.to_vec())),
                ws::OP_CONTINUATION => {
                    let Some((opcode, mut message)) = self.fragments.take() else {
                        return Err("ProtocolError: continuation frame without a message".to_owned());
                    };
                    if message.len() + payload.len() > ws::MAX_MESSAGE_BYTES {
                        return Err("ProtocolError: message over 64 MiB".to_owned());
                    }
                    message.extend_from_slice(payload);
                    if head.fin {
                        self.deliver(opcode, &message, receiver, now_ns);
                    } else {
                        self.fragments = Some((opcode, message));
                    }
                }
                ws::OP_PING => self.send(&ws::client_control_frame(ws::OP_PONG, payload, self.mask))?,
                ws::OP_CLOSE => {
                    let echo = payload.get(..2).unwrap_or(&[]);
                    self.close_code =
                        Some(if echo.is_empty() { CLOSE_NO_STATUS } else { u16::from_be_bytes([echo[0], echo[1]]) });
                    // Best effort: the server may already be gone.
                    self.send(&ws::client_control_frame(ws::OP_CLOSE, echo, self.mask)).ok();
                    return Ok((pos, Liveness::Ended));
                }
                _ => {} // pong
            }
        }
        Ok((pos, Liveness::Alive))
    }

    fn deliver(&mut self, opcode: u8, message: &[u8], receiver: &mut Receiver, now_ns: i64) {
        if opcode == ws::OP_TEXT {
            receiver.ledger.unexpected_text += 1;
        } else {
            receiver.on_binary(&mut self.expect, message, now_ns);
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.out.extend_from_slice(bytes);
        self.flush()
    }

    fn flush(&mut self) -> Result<(), String> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err("WriteZero: socket accepted no bytes".to_owned()),
                Ok(n) => drop(self.out.drain(..n)),
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(describe(err)),
            }
        }
        Ok(())
    }
}

/// `Kind: message`, like the Python load generator's `TypeName: message`.
pub fn describe(err: std::io::Error) -> String {
    format!("{:?}: {err}", err.kind())
}
