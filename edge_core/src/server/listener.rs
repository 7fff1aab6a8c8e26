//! The listening socket: bound once per edge (or inherited from `livechat serve --workers N`'s
//! parent), then shared by every I/O thread as a duplicate descriptor.
//!
//! No SO_REUSEPORT: a second, unrelated server asking for the same port gets "address in use"
//! instead of silently taking a share of the connections. The I/O threads (and the worker
//! processes of one `serve --workers N`) take connections from the one accept queue.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};

use socket2::{Domain, Socket, Type};

use crate::settings::Settings;

/// The environment variable naming an inherited listening socket's descriptor (set by the
/// `--workers` parent for its children only; see `python/livechat/server/workers.py`).
pub const INHERITED_FD_VAR: &str = "LIVECHAT_LISTEN_FD";

/// Options accepted sockets inherit from the listener on Linux: one setsockopt per process
/// instead of one per connection.
fn set_inherited_options(s: &Socket, settings: &Settings) -> io::Result<()> {
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    // Bounded kernel memory per connection at no per-accept cost.
    if settings.socket_send_buffer > 0 {
        s.set_send_buffer_size(settings.socket_send_buffer)?;
    }
    if settings.socket_receive_buffer > 0 {
        s.set_recv_buffer_size(settings.socket_receive_buffer)?;
    }
    Ok(())
}

/// Bind and listen on `addr` (SO_REUSEADDR only: restarts are not held up by TIME_WAIT).
pub fn bind(addr: SocketAddr, settings: &Settings) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    set_inherited_options(&s, settings)?;
    s.bind(&addr.into())?;
    s.listen(settings.listen_backlog)?;
    Ok(s.into())
}

/// Take over an inherited listening TCP socket. It must be listening, and on `port` unless that
/// is 0 (so a descriptor handed to the wrong server is refused, not served).
pub fn adopt(fd: RawFd, port: u16, settings: &Settings) -> io::Result<TcpListener> {
    // SAFETY: the descriptor was handed to this process for this edge only (the variable names
    // it); it is not used elsewhere in the process once adopted.
    let s = unsafe { Socket::from_raw_fd(fd) };
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{INHERITED_FD_VAR}={fd}: {what}"));
    if s.r#type()? != Type::STREAM || !s.is_listener()? {
        std::mem::forget(s);
        return Err(invalid("not a listening stream socket"));
    }
    let bound = s.local_addr()?.as_socket().ok_or_else(|| invalid("not an IP socket"))?;
    if port != 0 && bound.port() != port {
        std::mem::forget(s);
        return Err(invalid(&format!("bound to port {}, not {port}", bound.port())));
    }
    set_inherited_options(&s, settings)?;
    Ok(s.into())
}

/// The inherited descriptor named in the environment, if any.
pub fn inherited_fd() -> io::Result<Option<RawFd>> {
    match std::env::var(INHERITED_FD_VAR) {
        Ok(v) => v
            .trim()
            .parse::<RawFd>()
            .map(Some)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{INHERITED_FD_VAR}={v:?}"))),
        Err(_) => Ok(None),
    }
}

/// One listener per I/O thread: the first and `n - 1` duplicates of it.
pub fn per_thread(first: TcpListener, n: usize) -> io::Result<Vec<TcpListener>> {
    let mut all = Vec::with_capacity(n);
    for _ in 1..n {
        all.push(first.try_clone()?);
    }
    all.insert(0, first);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::hub::TickTiming;
    use crate::settings::Mode;
    use std::os::fd::IntoRawFd;
    use std::time::Duration;

    fn settings() -> Settings {
        let ms = Duration::from_millis;
        Settings {
            host: "127.0.0.1".into(),
            port: 0,
            io_threads: 2,
            mode: Mode::Echo,
            fanout_stream: "f".into(),
            listen_backlog: 16,
            max_connections: 10,
            max_message_bytes: 1024,
            handshake_timeout: ms(1000),
            max_request_bytes: 1024,
            ping_interval: ms(1000),
            idle_timeout: ms(1000),
            send_queue_soft_bytes: 1024,
            send_queue_hard_bytes: 2048,
            write_timeout: ms(1000),
            close_linger: ms(10),
            socket_send_buffer: 0,
            socket_receive_buffer: 0,
            tick: TickTiming { min: ms(10), max: ms(100), budget_deliveries: 0 },
            deflate: false,
            deflate_min_bytes: 0,
            deflate_level: 1,
            validate_msgpack: false,
            allowed_origins: vec![],
            public_url: None,
            trusted_proxies: vec![],
        }
    }

    #[test]
    fn a_second_bind_on_the_port_is_refused() {
        let s = settings();
        let first = bind("127.0.0.1:0".parse().unwrap(), &s).unwrap();
        let port = first.local_addr().unwrap().port();
        let again = bind(SocketAddr::from(([127, 0, 0, 1], port)), &s).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse);
        // Even a stranger asking for SO_REUSEPORT cannot join.
        let stranger = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        stranger.set_reuse_port(true).unwrap();
        let err = stranger.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn adopt_checks_the_descriptor() {
        let s = settings();
        let l = bind("127.0.0.1:0".parse().unwrap(), &s).unwrap();
        let port = l.local_addr().unwrap().port();
        let fd = l.into_raw_fd();
        assert!(adopt(fd, port.wrapping_add(1).max(1), &s).is_err(), "wrong port");
        let adopted = adopt(fd, port, &s).unwrap();
        let threads = per_thread(adopted, 3).unwrap();
        assert_eq!(threads.len(), 3);
        assert!(threads.iter().all(|t| t.local_addr().unwrap().port() == port));
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut took = 0;
        for _ in 0..200 {
            took += threads.iter().filter(|t| t.accept().is_ok()).count();
            if took > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(took, 1, "one accept queue: exactly one thread takes the connection");
        drop(client);
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(adopt(plain.into_raw_fd(), 0, &s).is_err(), "not a stream socket");
    }
}
