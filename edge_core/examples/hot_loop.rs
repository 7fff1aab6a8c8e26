//! The I/O thread's read → decode → act loop, measured alone: CPU of the one I/O thread per
//! client message, read from /proc (schedstat: nanoseconds on CPU, unaffected by time spent
//! waiting for a core on a busy machine).
//!
//!     cargo run --release -p edge_core --no-default-features --example hot_loop -- [app|echo|fanout] [runs]
//!
//! app: 48-byte msgpack binary messages, validated and queued as events (drained by a thread
//! standing in for Python); echo: every message comes back; fanout: every message is published
//! to the one stream (no subscribers read: the connections only send). Four connections send
//! 500 000 messages each, in 64 KiB writes, over loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_core::fanout::hub::TickTiming;
use edge_core::proto::frame::{self, OP_BINARY};
use edge_core::proto::msgpack;
use edge_core::server::{Edge, Event};
use edge_core::settings::{Mode, Settings};

const CONNS: usize = 4;
const PER_CONN: usize = 500_000;

fn settings(mode: Mode) -> Settings {
    let ms = Duration::from_millis;
    Settings {
        host: "127.0.0.1".into(),
        port: 0,
        io_threads: 1,
        mode,
        fanout_stream: "fanout".into(),
        listen_backlog: 128,
        max_connections: 1000,
        max_message_bytes: 64 * 1024,
        handshake_timeout: ms(5_000),
        max_request_bytes: 8 * 1024,
        ping_interval: ms(30_000),
        idle_timeout: ms(75_000),
        send_queue_soft_bytes: 64 * 1024,
        send_queue_hard_bytes: 1 << 30,
        write_timeout: ms(60_000),
        close_linger: ms(100),
        socket_send_buffer: 0,
        socket_receive_buffer: 0,
        tick: TickTiming { min: ms(10), max: ms(250), budget_deliveries: 100_000 },
        deflate: false,
        deflate_min_bytes: 256,
        deflate_level: 3,
        validate_msgpack: true,
        allowed_origins: Vec::new(),
        public_url: None,
        trusted_proxies: Vec::new(),
    }
}

/// One client message: a 48-byte msgpack map, as the app's `post` roughly is.
fn message() -> Vec<u8> {
    let mut p = Vec::new();
    msgpack::write_map_len(&mut p, 3);
    msgpack::write_str(&mut p, "op");
    msgpack::write_str(&mut p, "post");
    msgpack::write_str(&mut p, "s");
    msgpack::write_str(&mut p, "room-1");
    msgpack::write_str(&mut p, "text");
    msgpack::write_str(&mut p, "hello there, this is a test");
    p
}

/// Nanoseconds the thread named `name` has spent on a CPU.
fn thread_cpu_ns(name: &str) -> u64 {
    for task in std::fs::read_dir("/proc/self/task").expect("procfs") {
        let dir = task.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let sched = std::fs::read_to_string(dir.join("schedstat")).expect("schedstat");
            return sched.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat field");
        }
    }
    panic!("no thread {name}");
}

fn connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("upgrade");
    let mut got = Vec::new();
    let mut b = [0u8; 512];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).expect("read upgrade");
        assert!(n > 0, "closed during upgrade");
        got.extend_from_slice(&b[..n]);
    }
    s
}

/// One run: returns (I/O thread ns per message, messages per second of wall time).
fn run(mode: Mode) -> (f64, f64) {
    let edge = Arc::new(Edge::start(settings(mode)).expect("start"));
    let port = edge.port();
    let payload = message();
    let framed = frame::encode_client_frame(true, false, OP_BINARY, &payload, [1, 2, 3, 4]);
    let chunk: Vec<u8> = framed.iter().copied().cycle().take(framed.len() * (64 * 1024 / framed.len())).collect();
    let frame_len = framed.len();
    let per_chunk = chunk.len() / frame_len;
    let conns: Vec<TcpStream> = (0..CONNS).map(|_| connect(port)).collect();
    let total = (CONNS * PER_CONN) as u64;
    let drainer = (mode == Mode::App).then(|| {
        let edge = edge.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while n < total {
                for e in edge.events().drain(1 << 16) {
                    n += u64::from(matches!(e, Event::Message { .. }));
                }
                std::thread::yield_now();
            }
        })
    });
    let cpu0 = thread_cpu_ns("lc-io-0");
    let t0 = Instant::now();
    let mut threads = Vec::new();
    for mut c in conns {
        let chunk = chunk.clone();
        if mode == Mode::Fanout {
            // Tick frames come back to every connection: read and drop them until the close.
            let mut r = c.try_clone().expect("clone");
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while r.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
        }
        let echo_reader = (mode == Mode::Echo).then(|| c.try_clone().expect("clone"));
        let reader = echo_reader.map(|mut r| {
            // The echo of a message is the unmasked frame: 4 bytes shorter than what was sent.
            let want = (PER_CONN * (frame_len - 4)) as u64;
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut got = 0u64;
                while got < want {
                    let n = r.read(&mut buf).expect("read echo");
                    assert!(n > 0, "closed");
                    got += n as u64;
                }
            })
        });
        threads.push(std::thread::spawn(move || {
            let mut sent = 0;
            while sent < PER_CONN {
                let k = per_chunk.min(PER_CONN - sent);
                c.write_all(&chunk[..k * frame_len]).expect("write");
                sent += k;
            }
            if let Some(r) = reader {
                r.join().expect("reader");
            }
            c
        }));
    }
    let conns: Vec<TcpStream> = threads.into_iter().map(|t| t.join().expect("writer")).collect();
    if let Some(d) = drainer {
        d.join().expect("drainer");
    } else {
        while edge.stats().0.iter().find(|(k, _)| *k == "messages_in").map_or(0, |(_, v)| *v) < total {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu_ns("lc-io-0") - cpu0;
    drop(conns);
    edge.stop(Duration::from_millis(0));
    (cpu as f64 / total as f64, total as f64 / wall.as_secs_f64())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref().unwrap_or("app") {
        "app" => Mode::App,
        "echo" => Mode::Echo,
        "fanout" => Mode::Fanout,
        other => panic!("mode {other:?} is not app/echo/fanout"),
    };
    let runs: usize = args.next().map_or(7, |r| r.parse().expect("runs"));
    let mut ns = Vec::new();
    for _ in 0..runs {
        let (per, rate) = run(mode);
        println!("{mode:?}: {per:.1} ns of I/O-thread CPU per message, {:.2} M msg/s", rate / 1e6);
        ns.push(per);
    }
    ns.sort_by(f64::total_cmp);
    println!("{mode:?}: median {:.1} ns, min {:.1} ns per message ({runs} runs)", ns[runs / 2], ns[0]);
}
