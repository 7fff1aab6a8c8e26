//! One `connect` request: open `count` viewer connections from one source address, at most
//! `concurrency` handshakes in flight, and report how many made it and why the others did not.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Instant;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::conn::describe;

/// Same limit as the Python load generator's `websocket_handshake_timeout`.
pub const HANDSHAKE_TIMEOUT_NS: i64 = 60_000_000_000;
/// Error texts are cut here, as the Python load generator cuts them.
const ERROR_CHARS: usize = 120;

/// Where the viewers connect: from a `ws://host:port/path` URL.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| format!("only ws:// URLs are supported, got {url:?}"))?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |slash| (&rest[..slash], &rest[slash..]));
        let addr = authority
            .to_socket_addrs()
            .map_err(|err| format!("cannot resolve {authority:?}: {err}"))?
            .next()
            .ok_or_else(|| format!("{authority:?} resolves to no address"))?;
        Ok(Endpoint { addr, host_header: authority.to_owned(), path: path.to_owned() })
    }
}

pub struct ConnectJob {
    pub endpoint: Endpoint,
    source: IpAddr,
    remaining: usize,
    concurrency: usize,
    /// Slab keys of the connections still connecting or upgrading.
    pub in_flight: Vec<usize>,
    connected: u64,
    errors: HashMap<String, u64>,
    started: Instant,
}

impl ConnectJob {
    pub fn new(url: &str, count: usize, source_ip: &str, concurrency: usize) -> Result<Self, String> {
        let source = source_ip.parse().map_err(|_| format!("source_ip {source_ip:?} is not an IP address"))?;
        if concurrency == 0 {
            return Err("concurrency must be at least 1".to_owned());
        }
        Ok(ConnectJob {
            endpoint: Endpoint::parse(url)?,
            source,
            remaining: count,
            concurrency,
            in_flight: Vec::new(),
            connected: 0,
            errors: HashMap::new(),
            started: Instant::now(),
        })
    }

    /// Whether another connection may start now.
    pub fn wants_more(&self) -> bool {
        self.remaining > 0 && self.in_flight.len() < self.concurrency
    }

    pub fn is_done(&self) -> bool {
        self.remaining == 0 && self.in_flight.is_empty()
    }

    /// Starts a non-blocking connect from the source address (any port). Counts the attempt.
    pub fn open_socket(&mut self) -> Result<mio::net::TcpStream, String> {
        self.remaining -= 1;
        let socket = Socket::new(Domain::for_address(self.endpoint.addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(describe)?;
        socket.set_nonblocking(true).map_err(describe)?;
        socket.bind(&SockAddr::from(SocketAddr::new(self.source, 0))).map_err(describe)?;
        match socket.connect(&SockAddr::from(self.endpoint.addr)) {
            Ok(()) => {}
            Err(err) if rustix::io::Errno::from_io_error(&err) == Some(rustix::io::Errno::INPROGRESS) => {}
            Err(err) => return Err(describe(err)),
        }
        Ok(mio::net::TcpStream::from_std(socket.into()))
    }

    pub fn started(&mut self, key: usize) {
        self.in_flight.push(key);
    }

    pub fn succeeded(&mut self, key: usize) {
        self.in_flight.retain(|&k| k != key);
        self.connected += 1;
    }

    /// A connection failed before or during the upgrade (`key` is None if it never got a socket).
    pub fn failed(&mut self, key: Option<usize>, why: &str) {
        if let Some(key) = key {
            self.in_flight.retain(|&k| k != key);
        }
        let text: String = why.chars().take(ERROR_CHARS).collect();
        *self.errors.entry(text).or_default() += 1;
    }

    /// The reply line: `{"connected", "failed", "errors" (the 5 most common), "seconds"}`.
    pub fn reply(&self) -> serde_json::Value {
        let mut errors: Vec<(&String, &u64)> = self.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let top: serde_json::Map<String, serde_json::Value> =
            errors.into_iter().take(5).map(|(text, &count)| (text.clone(), count.into())).collect();
        serde_json::json!({
            "connected": self.connected,
            "failed": self.errors.values().sum::<u64>(),
            "errors": top,
            "seconds": self.started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{ConnectJob, Endpoint};

    #[test]
    fn parses_urls() {
        let endpoint = Endpoint::parse("ws://127.0.0.1:19100/").unwrap();
        assert_eq!(endpoint.addr.to_string(), "127.0.0.1:19100");
        assert_eq!((endpoint.host_header.as_str(), endpoint.path.as_str()), ("127.0.0.1:19100", "/"));
        assert_eq!(Endpoint::parse("ws://127.0.0.1:80").unwrap().path, "/");
        assert!(Endpoint::parse("wss://127.0.0.1:443/").is_err());
        assert!(Endpoint::parse("ws://127.0.0.1/").is_err(), "no port");
    }

    #[test]
    fn reports_the_most_common_errors() {
        let mut job = ConnectJob::new("ws://127.0.0.1:1/", 10, "127.0.0.1", 4).unwrap();
        for (i, why) in ["a", "b", "b", "c", "d", "e", "f", "f", "f"].iter().enumerate() {
            job.started(i);
            job.failed(Some(i), why);
        }
        job.started(99);
        job.succeeded(99);
        let reply = job.reply();
        assert_eq!(reply["connected"], 1);
        assert_eq!(reply["failed"], 9);
        let errors = reply["errors"].as_object().unwrap();
        assert_eq!(errors.len(), 5);
        assert_eq!((errors["f"].as_u64(), errors["b"].as_u64()), (Some(3), Some(2)));
        assert!(job.in_flight.is_empty());
        assert!(ConnectJob::new("ws://127.0.0.1:1/", 1, "localhost", 1).is_err());
    }
}
