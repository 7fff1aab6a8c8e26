//! The viewers process: every connection and the control channel on one mio poll, one thread.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use slab::Slab;

use crate::clock;
use crate::conn::{Conn, Liveness};
use crate::connect::{ConnectJob, HANDSHAKE_TIMEOUT_NS};
use crate::receive::Receiver;
use crate::requests::{self, Request};
use crate::ws;

const STDIN: Token = Token(usize::MAX - 1);
const STDIN_FD: i32 = 0;
/// While a connect request runs, wake at least this often to expire stuck handshakes.
const CONNECT_TICK: Duration = Duration::from_millis(100);
/// One broadcast makes every connection of the process readable at once.
const EVENTS_PER_POLL: usize = 4096;
/// Disconnect reasons logged to stderr per process (the harness keeps the log when a run errs).
const LOGGED_DISCONNECTS: u32 = 5;

pub struct Viewers {
    poll: Poll,
    conns: Slab<Conn>,
    /// Shared by every connection: an idle viewer holds no read buffer.
    read_buf: Vec<u8>,
    receiver: Receiver,
    open: usize,
    job: Option<ConnectJob>,
    rng: XorShift,
    logged_disconnects: u32,
}

/// Sec-WebSocket-Key and mask bytes. They only need to differ between connections (RFC 6455
/// wants masks unpredictable to defeat proxy cache poisoning, which cannot happen on loopback).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

enum Control {
    Continue,
    Exit,
}

impl Viewers {
    pub fn new(tick_frames: bool) -> io::Result<Self> {
        Ok(Viewers {
            poll: Poll::new()?,
            conns: Slab::new(),
            read_buf: vec![0; 64 << 10],
            receiver: Receiver::new(tick_frames),
            open: 0,
            job: None,
            rng: XorShift(clock::monotonic_ns().unsigned_abs() ^ u64::from(std::process::id()) | 1),
            logged_disconnects: 0,
        })
    }

    /// Serves requests from stdin until `exit` or end of input.
    pub fn run(mut self) -> io::Result<()> {
        rustix::io::ioctl_fionbio(io::stdin(), true)?;
        self.poll.registry().register(&mut SourceFd(&STDIN_FD), STDIN, Interest::READABLE)?;
        let mut lines = LineReader::default();
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            let timeout = self.job.as_ref().map(|_| CONNECT_TICK);
            match self.poll.poll(&mut events, timeout) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                other => other?,
            }
            for event in &events {
                if event.token() == STDIN {
                    lines.fill()?;
                } else {
                    let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                    self.on_ready(event.token().0, readable);
                }
            }
            self.advance_job()?;
            while self.job.is_none() {
                let Some(line) = lines.next_line() else { break };
                if let Control::Exit = self.handle(&line)? {
                    return Ok(());
                }
            }
            if lines.eof && self.job.is_none() && lines.is_empty() {
                return Ok(());
            }
        }
    }

    fn handle(&mut self, line: &str) -> io::Result<Control> {
        let reply = match requests::parse(line) {
            Err(error) => json!({ "error": error }),
            Ok(Request::Exit) => {
                self.receiver.ledger.closing = true;
                return Ok(Control::Exit);
            }
            Ok(Request::Connect { url, count, source_ip, concurrency }) => {
                match ConnectJob::new(&url, count, &source_ip, concurrency) {
                    Ok(job) => {
                        self.job = Some(job);
                        self.advance_job()?;
                        return Ok(Control::Continue);
                    }
                    Err(error) => json!({ "error": format!("ValueError: {error}") }),
                }
            }
            Ok(Request::Delivered { lo, hi }) => json!({ "delivered": self.receiver.ledger.delivered(lo, hi) }),
            Ok(Request::Summarize { lo, hi }) => {
                let summary = self.receiver.ledger.summarize(lo, hi);
                let histogram: serde_json::Map<String, Value> =
                    summary.histogram.iter().map(|(bucket, &count)| (bucket.to_string(), count.into())).collect();
                let mut reply = json!({
                    "delivered": summary.delivered,
                    "histogram": histogram,
                    "max_us": summary.max_us,
                });
                self.add_counters(&mut reply);
                reply
            }
            Ok(Request::Status) => {
                let mut reply = json!({ "open": self.open });
                self.add_counters(&mut reply);
                reply
            }
        };
        write_reply(&reply)?;
        Ok(Control::Continue)
    }

    fn add_counters(&self, reply: &mut Value) {
        let ledger = &self.receiver.ledger;
        let counters = json!({
            "gaps": ledger.gaps,
            "malformed": ledger.malformed,
            "malformed_example": ledger.malformed_example,
            "unexpected_text": ledger.unexpected_text,
            "disconnects": ledger.disconnects,
            "close_codes": ledger.close_codes,
        });
        if let (Value::Object(reply), Value::Object(counters)) = (reply, counters) {
            reply.extend(counters);
        }
    }

    /// Starts connections up to the job's concurrency, expires stuck ones, replies when all are done.
    fn advance_job(&mut self) -> io::Result<()> {
        let Some(job) = self.job.as_mut() else { return Ok(()) };
        let now = clock::monotonic_ns();
        let expired: Vec<usize> = job
            .in_flight
            .iter()
            .copied()
            .filter(|&key| self.conns.get(key).is_some_and(|c| c.deadline_ns < now))
            .collect();
        for key in expired {
            self.end(key, Some("TimeoutError: no upgrade within 60 s".to_owned()));
        }
        let Some(job) = self.job.as_mut() else { return Ok(()) };
        while job.wants_more() {
            let stream = match job.open_socket() {
                Ok(stream) => stream,
                Err(why) => {
                    job.failed(None, &why);
                    continue;
                }
            };
            let mut key_bytes = [0u8; 16];
            key_bytes[..8].copy_from_slice(&self.rng.next().to_le_bytes());
            key_bytes[8..].copy_from_slice(&self.rng.next().to_le_bytes());
            let key = ws::new_key(key_bytes);
            let request = ws::upgrade_request(&job.endpoint.host_header, &job.endpoint.path, &key);
            let mask = (self.rng.next() as u32).to_le_bytes();
            let entry = self.conns.vacant_entry();
            let token = entry.key();
            let conn = entry.insert(Conn::new(stream, request, ws::accept_for(&key), now + HANDSHAKE_TIMEOUT_NS, mask));
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(err) = self.poll.registry().register(&mut conn.stream, Token(token), interest) {
                self.conns.remove(token);
                job.failed(None, &crate::conn::describe(err));
                continue;
            }
            job.started(token);
        }
        if job.is_done() {
            let reply = job.reply();
            self.job = None;
            write_reply(&reply)?;
        }
        Ok(())
    }

    fn on_ready(&mut self, key: usize, readable: bool) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let was_open = conn.is_open();
        let result = conn.on_ready(readable, &mut self.receiver, &mut self.read_buf);
        if conn.is_open() && !was_open {
            self.open += 1;
            if let Some(job) = self.job.as_mut() {
                job.succeeded(key);
            }
        }
        match result {
            Ok(Liveness::Alive) => {}
            Ok(Liveness::Ended) => self.end(key, None),
            Err(why) => self.end(key, Some(why)),
        }
    }

    /// Drops a connection: a disconnect if it was open, else a failed connect of the running job.
    fn end(&mut self, key: usize, why: Option<String>) {
        let mut conn = self.conns.remove(key);
        self.poll.registry().deregister(&mut conn.stream).ok();
        if conn.is_open() {
            self.open -= 1;
            self.receiver.ledger.count_disconnect(conn.close_code);
            if self.logged_disconnects < LOGGED_DISCONNECTS && !self.receiver.ledger.closing {
                self.logged_disconnects += 1;
                let why = why.as_deref().unwrap_or("server closed");
                eprintln!("lc-loadgen: viewer disconnected (close code {:?}): {why}", conn.close_code);
            }
        } else if let Some(job) = self.job.as_mut() {
            job.failed(Some(key), why.as_deref().unwrap_or("ConnectionClosed: server closed during the upgrade"));
        }
    }
}

fn write_reply(reply: &Value) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{reply}")?;
    stdout.flush()
}

/// Request lines from the non-blocking stdin pipe.
#[derive(Default)]
struct LineReader {
    pending: Vec<u8>,
    lines: VecDeque<String>,
    eof: bool,
}

impl LineReader {
    /// Reads everything available (the poll is edge-triggered) and splits complete lines off.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        loop {
            match io::stdin().lock().read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        while let Some(newline) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            if !line.is_empty() {
                self.lines.push_back(line);
            }
        }
        Ok(())
    }

    fn next_line(&mut self) -> Option<String> {
        self.lines.pop_front()
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}
