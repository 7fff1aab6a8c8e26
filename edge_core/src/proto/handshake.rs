//! The HTTP/1.1 upgrade (RFC 6455 §4.2): request parsing, validation and the responses.

use base64::Engine;
use sha1::{Digest, Sha1};

use super::deflate::{self, DeflateParams};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEADERS: usize = 48;

/// A valid upgrade request, reduced to what the edge keeps.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    pub path: String,
    pub accept_key: String,
    pub deflate: Option<(DeflateParams, String)>,
    pub authorization: Option<String>,
    /// Every `X-Forwarded-For` header, joined with `, ` in order (read only from trusted proxies).
    pub forwarded_for: Option<String>,
    /// Every `Forwarded` header (RFC 7239), joined likewise.
    pub forwarded: Option<String>,
    /// The `Origin` header (browsers always send one; checked against the allow-list).
    pub origin: Option<String>,
}

/// A request that is not a WebSocket upgrade, or a bad one: the HTTP answer to give.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// 400 with the reason in the body.
    BadRequest(&'static str),
    /// 426 (not an upgrade, or a version other than 13), with `Sec-WebSocket-Version: 13`.
    UpgradeRequired(&'static str),
    /// 405: upgrades are GET only.
    MethodNotAllowed,
    /// 403: an origin the allow-list refuses, or more than one `Origin` header.
    Forbidden(&'static str),
    /// 431: headers past `max_request_bytes`.
    TooLarge,
    /// A plain GET (no upgrade headers) for `path`: the caller may serve a static file.
    PlainGet(String),
}

/// Parse outcome: a full request and its length, more bytes needed, or a rejection.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Upgrade(Box<Upgrade>, usize),
    Partial,
    Reject(Rejection),
}

fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// A repeated list header is one list (RFC 9110 §5.3): values joined with `, `, in order.
fn append_list(list: &mut Option<String>, value: &[u8]) {
    let Ok(value) = std::str::from_utf8(value) else { return };
    match list {
        Some(l) => {
            l.push_str(", ");
            l.push_str(value);
        }
        None => *list = Some(value.to_owned()),
    }
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Parse and validate an upgrade request at the start of `buf` (at most `max_bytes` long).
pub fn parse(buf: &[u8], max_bytes: usize, allow_deflate: bool) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_bytes { Parsed::Reject(Rejection::TooLarge) } else { Parsed::Partial };
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Reject(Rejection::TooLarge),
        Err(_) => return Parsed::Reject(Rejection::BadRequest("malformed HTTP request")),
    };
    if consumed > max_bytes {
        return Parsed::Reject(Rejection::TooLarge);
    }
    let path = req.path.unwrap_or("/").to_owned();
    let (mut upgrade, mut connection, mut version, mut key, mut host) = (None, None, None, None, false);
    let (mut authorization, mut origin, mut origins) = (None, None, 0usize);
    let (mut forwarded_for, mut forwarded): (Option<String>, Option<String>) = (None, None);
    let mut extensions: Vec<&str> = Vec::new();
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade = Some(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            connection = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(h.value);
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            if let Ok(v) = std::str::from_utf8(h.value) {
                extensions.push(v);
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = std::str::from_utf8(h.value).ok().map(str::to_owned);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            append_list(&mut forwarded_for, h.value);
        } else if name.eq_ignore_ascii_case("forwarded") {
            append_list(&mut forwarded, h.value);
        } else if name.eq_ignore_ascii_case("origin") {
            origins += 1;
            // Not UTF-8: kept as a value no allow-list entry can match.
            origin = Some(std::str::from_utf8(h.value).map_or_else(|_| "\u{fffd}".to_owned(), str::to_owned));
        }
    }
    let is_upgrade = upgrade.is_some_and(|u| has_token(u, "websocket"));
    if req.method != Some("GET") {
        return Parsed::Reject(if is_upgrade {
            Rejection::MethodNotAllowed
        } else {
            Rejection::BadRequest("not a WebSocket upgrade")
        });
    }
    if !is_upgrade && upgrade.is_none() && key.is_none() {
        return Parsed::Reject(Rejection::PlainGet(path));
    }
    if req.version != Some(1) {
        return Parsed::Reject(Rejection::BadRequest("HTTP/1.1 required"));
    }
    if !is_upgrade || !connection.is_some_and(|c| has_token(c, "upgrade")) {
        return Parsed::Reject(Rejection::UpgradeRequired("Upgrade: websocket and Connection: Upgrade required"));
    }
    if version.map(<[u8]>::trim_ascii) != Some(b"13".as_slice()) {
        return Parsed::Reject(Rejection::UpgradeRequired("Sec-WebSocket-Version must be 13"));
    }
    if !host {
        return Parsed::Reject(Rejection::BadRequest("Host header required"));
    }
    let Some(key) = key.map(<[u8]>::trim_ascii) else {
        return Parsed::Reject(Rejection::BadRequest("Sec-WebSocket-Key required"));
    };
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(k) if k.len() == 16 => {}
        _ => return Parsed::Reject(Rejection::BadRequest("Sec-WebSocket-Key must be 16 bytes, base64")),
    }
    if origins > 1 {
        // Which one would the browser have meant? Neither is trusted.
        return Parsed::Reject(Rejection::Forbidden("more than one Origin header"));
    }
    let deflate = if allow_deflate { deflate::negotiate(extensions) } else { None };
    Parsed::Upgrade(
        Box::new(Upgrade {
            path,
            accept_key: accept_key(key),
            deflate,
            authorization,
            forwarded_for,
            forwarded,
            origin,
        }),
        consumed,
    )
}

/// The 101 response.
pub fn switching_protocols(up: &Upgrade) -> Vec<u8> {
    let mut r = String::with_capacity(160);
    r.push_str(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    r.push_str(&up.accept_key);
    if let Some((_, ext)) = &up.deflate {
        r.push_str("\r\nSec-WebSocket-Extensions: ");
        r.push_str(ext);
    }
    r.push_str("\r\n\r\n");
    r.into_bytes()
}

/// A complete HTTP response that closes the connection.
pub fn http_response(status: &str, extra_headers: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The response for a rejection (a plain GET with nothing to serve gets 426 as well).
pub fn rejection_response(r: &Rejection) -> Vec<u8> {
    let text = |s: &str| format!("{s}\n").into_bytes();
    match r {
        Rejection::BadRequest(why) => http_response("400 Bad Request", "", "text/plain", &text(why)),
        Rejection::UpgradeRequired(why) => http_response(
            "426 Upgrade Required",
            "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            "text/plain",
            &text(why),
        ),
        Rejection::MethodNotAllowed => {
            http_response("405 Method Not Allowed", "Allow: GET\r\n", "text/plain", &text("GET only"))
        }
        Rejection::Forbidden(why) => http_response("403 Forbidden", "", "text/plain", &text(why)),
        Rejection::TooLarge => {
            http_response("431 Request Header Fields Too Large", "", "text/plain", &text("request too large"))
        }
        Rejection::PlainGet(_) => http_response(
            "426 Upgrade Required",
            "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            "text/plain",
            &text("this endpoint speaks WebSocket"),
        ),
    }
}

/// 503 when the edge is at `max_connections` or draining.
pub fn unavailable_response() -> Vec<u8> {
    http_response("503 Service Unavailable", "Retry-After: 5\r\n", "text/plain", b"edge at capacity\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "GET /ws?stream=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn req(extra: &str) -> Vec<u8> {
        format!("{OK}{extra}\r\n").into_bytes()
    }

    #[test]
    fn rfc_example_accept_key() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_upgrade() {
        let r = req(
            "Authorization: Bearer abc\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        );
        let Parsed::Upgrade(up, n) = parse(&r, 8192, true) else { panic!("not upgraded") };
        assert_eq!(n, r.len());
        assert_eq!(up.path, "/ws?stream=1");
        assert_eq!(up.authorization.as_deref(), Some("Bearer abc"));
        assert!(up.deflate.is_some());
        let resp = String::from_utf8(switching_protocols(&up)).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101") && resp.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(resp.contains("server_no_context_takeover"));
        let Parsed::Upgrade(up, _) = parse(&r, 8192, false) else { panic!() };
        assert!(up.deflate.is_none());
    }

    #[test]
    fn repeated_forwarding_headers_are_one_list_in_order() {
        let r = req("X-Forwarded-For: 1.1.1.1\r\nForwarded: for=2.2.2.2\r\nx-forwarded-for: 3.3.3.3, 4.4.4.4\r\n");
        let Parsed::Upgrade(up, _) = parse(&r, 8192, true) else { panic!("not upgraded") };
        assert_eq!(up.forwarded_for.as_deref(), Some("1.1.1.1, 3.3.3.3, 4.4.4.4"));
        assert_eq!(up.forwarded.as_deref(), Some("for=2.2.2.2"));
        let Parsed::Upgrade(up, _) = parse(&req(""), 8192, true) else { panic!("not upgraded") };
        assert_eq!((up.forwarded_for, up.forwarded), (None, None));
    }

    #[test]
    fn partial_and_too_large() {
        let r = req("");
        assert_eq!(parse(&r[..20], 8192, true), Parsed::Partial);
        assert_eq!(parse(&r[..20], 20, true), Parsed::Reject(Rejection::TooLarge));
    }

    #[test]
    fn bad_requests() {
        let bad_version = OK.replace("Version: 13", "Version: 8") + "\r\n";
        assert!(matches!(parse(bad_version.as_bytes(), 8192, true), Parsed::Reject(Rejection::UpgradeRequired(_))));
        let bad_key = OK.replace("dGhlIHNhbXBsZSBub25jZQ==", "short") + "\r\n";
        assert!(matches!(parse(bad_key.as_bytes(), 8192, true), Parsed::Reject(Rejection::BadRequest(_))));
        let post = OK.replace("GET", "POST") + "\r\n";
        assert_eq!(parse(post.as_bytes(), 8192, true), Parsed::Reject(Rejection::MethodNotAllowed));
        let no_host = OK.replace("Host: x\r\n", "") + "\r\n";
        assert!(matches!(parse(no_host.as_bytes(), 8192, true), Parsed::Reject(Rejection::BadRequest(_))));
        let no_conn = OK.replace("keep-alive, Upgrade", "keep-alive") + "\r\n";
        assert!(matches!(parse(no_conn.as_bytes(), 8192, true), Parsed::Reject(Rejection::UpgradeRequired(_))));
        assert!(matches!(parse(b"\x16\x03\x01garbage\r\n\r\n", 8192, true), Parsed::Reject(Rejection::BadRequest(_))));
        let plain = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse(plain, 8192, true), Parsed::Reject(Rejection::PlainGet("/index.html".into())));
        let resp = String::from_utf8(rejection_response(&Rejection::UpgradeRequired("x"))).unwrap();
        assert!(resp.starts_with("HTTP/1.1 426") && resp.contains("Sec-WebSocket-Version: 13"));
    }

    #[test]
    fn origin_header() {
        let Parsed::Upgrade(up, _) = parse(&req("Origin: https://a.example\r\n"), 8192, true) else { panic!() };
        assert_eq!(up.origin.as_deref(), Some("https://a.example"));
        let Parsed::Upgrade(up, _) = parse(&req(""), 8192, true) else { panic!() };
        assert_eq!(up.origin, None);
        let two = req("Origin: https://a.example\r\norigin: https://a.example\r\n");
        assert!(matches!(parse(&two, 8192, true), Parsed::Reject(Rejection::Forbidden(_))));
        let resp = String::from_utf8(rejection_response(&Rejection::Forbidden("x"))).unwrap();
        assert!(resp.starts_with("HTTP/1.1 403 Forbidden"));
    }
}
