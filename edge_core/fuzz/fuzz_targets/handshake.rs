//! The HTTP upgrade (`proto::handshake::parse`), the Origin allow-list (`proto::origin`),
//! permessage-deflate negotiation and the forwarded-address walk (`proto::proxy`).
//!
//! Properties:
//! - never more consumed than given or than `max_bytes`; `Partial` only below `max_bytes`; an
//!   accepted request parses the same from exactly its own bytes, and every shorter prefix is
//!   `Partial`; no kept field carries CR or LF; the 101 and every rejection are well-formed HTTP;
//! - Origin: three policies (a public URL, a subdomain pattern, the loopback listener default)
//!   against oracles written here from the module's documented rules; `normalize` is idempotent;
//! - the negotiated extension response, offered back, negotiates the same parameters;
//! - an untrusted peer's address is never replaced by a header, a trusted peer's is an IP.
//!
//! Input: byte 0 = bit 0 allow deflate, bits 1-2 the size limit; rest = the request.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use edge_core::proto::deflate;
use edge_core::proto::handshake::{self, Parsed, Rejection, Upgrade};
use edge_core::proto::origin::{normalize, OriginPolicy};
use edge_core::proto::proxy::TrustedProxies;
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [64, 512, 4096, 8192];

struct Fixtures {
    public: OriginPolicy,
    pattern: OriginPolicy,
    listener: OriginPolicy,
    proxies: TrustedProxies,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        public: OriginPolicy::default_for(Some("https://chat.example.com/live"), "0.0.0.0", 8765).unwrap(),
        pattern: OriginPolicy::new(&["https://*.example.com:8443"]).unwrap(),
        listener: OriginPolicy::default_for(None, "127.0.0.1", 8765).unwrap(),
        proxies: TrustedProxies::new(&["10.0.0.0/8".to_owned(), "::1".to_owned()]).unwrap(),
    })
}

/// `scheme://host[:port][/]`, lower-cased, split, with the port as a number when it is 1-5 digits.
fn split_origin(o: &str) -> Option<(String, String, Option<u32>)> {
    let s = o.trim().to_ascii_lowercase();
    let s = s.strip_suffix('/').unwrap_or(&s);
    let (scheme, rest) = s.split_once("://")?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (h, Some(p.parse().ok()?))
        }
        _ => (rest, None),
    };
    Some((scheme.to_owned(), host.to_owned(), port))
}

fn is_label(l: &str) -> bool {
    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `https://chat.example.com` in any case, with or without :443 and one trailing `/`.
fn public_oracle(o: &str) -> bool {
    split_origin(o).is_some_and(|(s, h, p)| s == "https" && h == "chat.example.com" && matches!(p, None | Some(443)))
}

/// `https://*.example.com:8443`: one or more whole labels before `.example.com`, port 8443.
fn pattern_oracle(o: &str) -> bool {
    split_origin(o).is_some_and(|(s, h, p)| {
        s == "https"
            && p == Some(8443)
            && h.strip_suffix(".example.com").is_some_and(|sub| sub.split('.').all(is_label))
    })
}

/// The listener 127.0.0.1:8765 over http or https, under its loopback names.
fn listener_oracle(o: &str) -> bool {
    split_origin(o).is_some_and(|(s, h, p)| {
        matches!(s.as_str(), "http" | "https")
            && matches!(h.as_str(), "127.0.0.1" | "localhost" | "[::1]")
            && p == Some(8765)
    })
}

fn check_origin(o: &str) {
    let f = fixtures();
    let n = normalize(o.trim());
    assert_eq!(normalize(&n), n, "normalize is not idempotent on {o:?}");
    for (name, policy, oracle) in [
        ("public", &f.public, public_oracle as fn(&str) -> bool),
        ("pattern", &f.pattern, pattern_oracle),
        ("listener", &f.listener, listener_oracle),
    ] {
        let got = policy.allows(Some(o));
        assert_eq!(got, oracle(o), "{name} policy on origin {o:?}");
        assert_eq!(policy.allows(Some(&n)), got, "{name}: {o:?} and its normal form {n:?} differ");
    }
    assert!(OriginPolicy::any().allows(Some(o)));
    // A listed origin is allowed (the patterns aside, an entry is its own origin).
    if !o.contains('*') {
        if let Ok(p) = OriginPolicy::new(&[o]) {
            assert!(p.allows(Some(o)), "{o:?} listed but refused");
        }
    }
}

fn check_forwarding(up: &Upgrade) {
    let f = fixtures();
    let (xff, fwd) = (up.forwarded_for.as_deref(), up.forwarded.as_deref());
    let outside: SocketAddr = "203.0.113.9:4000".parse().unwrap();
    assert_eq!(f.proxies.client_address(outside, xff, fwd), outside.to_string());
    for proxy in ["10.0.0.1:4000", "[::1]:4000"] {
        let peer: SocketAddr = proxy.parse().unwrap();
        let got = f.proxies.client_address(peer, xff, fwd);
        if xff.is_none() && fwd.is_none() {
            assert_eq!(got, peer.to_string());
        } else {
            assert!(got.parse::<IpAddr>().is_ok() || got == peer.to_string(), "client address {got:?}");
        }
    }
}

fn check_response(resp: &[u8], status: &str) {
    let text = std::str::from_utf8(resp).expect("response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head ends with a blank line");
    assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
    for line in head.split("\r\n") {
        assert!(!line.is_empty() && !line.contains(['\r', '\n']), "header line {line:?}");
    }
    if let Some(cl) = head.split("\r\n").find_map(|l| l.strip_prefix("Content-Length: ")) {
        assert_eq!(cl.parse::<usize>().unwrap(), body.len());
    } else {
        assert!(body.is_empty());
    }
}

fn check_upgrade(buf: &[u8], up: &Upgrade, n: usize, max: usize, allow_deflate: bool) {
    assert!(n <= buf.len() && n <= max, "consumed {n} of {} (limit {max})", buf.len());
    for field in [Some(&up.path), up.authorization.as_ref(), up.origin.as_ref(), up.forwarded_for.as_ref()]
        .into_iter()
        .chain([up.forwarded.as_ref()])
        .flatten()
    {
        assert!(!field.contains(['\r', '\n']), "field {field:?}");
    }
    assert_eq!(up.accept_key.len(), 28);
    match parse_once(&buf[..n], max, allow_deflate) {
        Parsed::Upgrade(again, m) => assert!(m == n && *again == *up, "its own bytes parse differently"),
        other => panic!("its own {n} bytes give {other:?}"),
    }
    for cut in [0, n / 2, n - 1] {
        assert_eq!(parse_once(&buf[..cut], max, allow_deflate), Parsed::Partial, "prefix {cut} of {n}");
    }
    check_response(&handshake::switching_protocols(up), "101 Switching Protocols");
    if let Some((params, response)) = &up.deflate {
        assert!(allow_deflate);
        assert!((8..=15).contains(&params.server_max_window_bits));
        let (again, _) = deflate::negotiate([response.as_str()]).expect("our own response is an acceptable offer");
        assert_eq!(again, *params, "response {response:?}");
    }
    if let Some(o) = &up.origin {
        check_origin(o);
    }
    check_forwarding(up);
}

fn parse_once(buf: &[u8], max: usize, allow_deflate: bool) -> Parsed {
    handshake::parse(buf, max, allow_deflate)
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, buf)) = data.split_first() else { return };
    let allow_deflate = c & 1 != 0;
    let max = LIMITS[usize::from(c >> 1) & 3];
    match parse_once(buf, max, allow_deflate) {
        Parsed::Upgrade(up, n) => check_upgrade(buf, &up, n, max, allow_deflate),
        Parsed::Partial => assert!(buf.len() < max, "Partial at {} bytes, limit {max}", buf.len()),
        Parsed::Reject(r) => {
            let status = match &r {
                Rejection::BadRequest(_) => "400",
                Rejection::UpgradeRequired(_) | Rejection::PlainGet(_) => "426",
                Rejection::MethodNotAllowed => "405",
                Rejection::Forbidden(_) => "403",
                Rejection::TooLarge => "431",
            };
            check_response(&handshake::rejection_response(&r), status);
        }
    }
    // The Origin rules on any text, not only what survives a parse.
    if let Ok(text) = std::str::from_utf8(buf) {
        if text.len() <= 256 {
            check_origin(text);
        }
    }
});
