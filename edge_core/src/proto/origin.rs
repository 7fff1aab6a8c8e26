//! The Origin allow-list (RFC 6454 origins; RFC 6455 §10.2): which pages may open a WebSocket to
//! this edge. Browsers always send `Origin` on a WebSocket upgrade and a page cannot forge it, so
//! refusing unknown origins stops cross-site WebSocket hijacking; clients that are not browsers
//! send none and are let through (they are not acting for a user's browser session).
//!
//! Entries and the header are compared in one normal form: `scheme://host[:port]`, ASCII
//! lower-case, the scheme's default port (80 for http/ws, 443 for https/wss) dropped, one
//! trailing `/` ignored. A value that is not of that form (`null`, `file://`, a path, user info)
//! is compared as written (lower-cased), so it matches only an entry that lists it literally.
//! One pattern form: `scheme://*.domain[:port]` matches any subdomain (one or more labels) of a
//! domain of at least two labels with that scheme and port, never the domain itself or a host
//! that merely ends with the same letters. `*` alone allows every origin.

/// An allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// A normalised origin, or a literal such as `null`.
    Exact(String),
    /// `scheme://*.suffix[:port]`: `prefix` is `scheme://`, `suffix` starts with `.`, `port` is
    /// `:N` or empty (the default port).
    Subdomains { prefix: String, suffix: String, port: String },
}

/// Which origins may upgrade. Built once at start; `allows` is called once per upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    any: bool,
    rules: Vec<Rule>,
}

/// The parts of an origin in normal form.
struct Parts<'a> {
    scheme: String,
    host: &'a str,
    /// None: absent or the scheme's default.
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

fn port_suffix(port: Option<u16>) -> String {
    port.map_or_else(String::new, |p| format!(":{p}"))
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn is_host(h: &str, wildcard: bool) -> bool {
    if let Some(v6) = h.strip_prefix('[') {
        return v6
            .strip_suffix(']')
            .is_some_and(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')));
    }
    let h = if wildcard { h.strip_prefix("*.").unwrap_or(h) } else { h };
    // A fully qualified name (`example.com.`) is a host of its own origin, as browsers treat it.
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty() && h.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// Split `scheme://host[:port][/]` (lower-cased); None when `s` is not of that form.
fn parts(s: &str, wildcard: bool) -> Option<Parts<'_>> {
    let (scheme, rest) = s.split_once("://")?;
    if !is_scheme(scheme) {
        return None;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if !is_host(host, wildcard) {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(p) if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(p) => Some(u16::try_from(p.parse::<u32>().ok()?).ok()?).filter(|n| default_port(&scheme) != Some(*n)),
    };
    Some(Parts { scheme, host, port })
}

/// `scheme://host[:port]` with the default port dropped, or the value as written (lower-cased).
pub fn normalize(value: &str) -> String {
    let Some(p) = parts(value, false) else {
        return value.to_ascii_lowercase();
    };
    serialize(&p)
}

fn serialize(p: &Parts<'_>) -> String {
    format!("{}://{}{}", p.scheme, p.host.to_ascii_lowercase(), port_suffix(p.port))
}

/// The origin of a URL (`https://chat.example.com/live` → `https://chat.example.com`).
pub fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return None;
    }
    let joined = format!("{scheme}://{authority}");
    let p = parts(&joined, false)?;
    // A page is served over http(s); a ws(s) URL's page has the matching http(s) origin.
    let scheme = match p.scheme.as_str() {
        "ws" => "http".to_owned(),
        "wss" => "https".to_owned(),
        "http" | "https" => p.scheme.clone(),
        _ => return None,
    };
    Some(serialize(&Parts { scheme, ..p }))
}

impl OriginPolicy {
    /// Every origin (`["*"]`).
    pub fn any() -> Self {
        Self { any: true, rules: Vec::new() }
    }

    /// From configured entries; an entry that looks like an origin pattern but is not a valid
    /// one (a `*` anywhere but a whole leftmost label, a bare `*.com`) is an error.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.as_ref().trim();
            if e == "*" {
                return Ok(Self::any());
            }
            if e.is_empty() {
                return Err("an empty origin".into());
            }
            if e.contains('*') {
                let p = parts(e, true)
                    .filter(|p| {
                        p.host.starts_with("*.") && p.host.matches('.').count() >= 2 && !p.host[2..].contains('*')
                    })
                    .ok_or_else(|| format!("{e:?}: the only pattern is scheme://*.domain.tld[:port]"))?;
                rules.push(Rule::Subdomains {
                    prefix: format!("{}://", p.scheme),
                    suffix: p.host[1..].to_ascii_lowercase(),
                    port: port_suffix(p.port),
                });
            } else {
                if e.contains("://") && parts(e, false).is_none() && !e.eq_ignore_ascii_case("file://") {
                    return Err(format!("{e:?} is not an origin (scheme://host[:port], no path)"));
                }
                rules.push(Rule::Exact(normalize(e)));
            }
        }
        Ok(Self { any: false, rules })
    }

    /// The default: the page's own origin. `public_url` (the URL viewers open) gives it; without
    /// one, the listener's `host:port` over http and https (a loopback or wildcard listener also
    /// as `localhost`, `127.0.0.1` and `[::1]`: the addresses a page on this machine is opened at).
    pub fn default_for(public_url: Option<&str>, host: &str, port: u16) -> Result<Self, String> {
        if let Some(url) = public_url {
            let origin = origin_of_url(url).ok_or_else(|| format!("public_url {url:?} is not an http(s) URL"))?;
            return Ok(Self { any: false, rules: vec![Rule::Exact(origin)] });
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut hosts = vec![if host.contains(':') { format!("[{host}]") } else { host.to_ascii_lowercase() }];
        let local = matches!(host, "0.0.0.0" | "::" | "::1" | "localhost") || host.starts_with("127.");
        if local {
            for h in ["localhost", "127.0.0.1", "[::1]"] {
                if !hosts.iter().any(|x| x == h) {
                    hosts.push(h.to_owned());
                }
            }
        }
        let rules = hosts
            .iter()
            .flat_map(|h| ["http", "https"].map(|s| Rule::Exact(normalize(&format!("{s}://{h}:{port}")))))
            .collect();
        Ok(Self { any: false, rules })
    }

    /// Whether an upgrade carrying this `Origin` value (None: no header) may proceed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        let origin = normalize(origin.trim());
        self.rules.iter().any(|r| match r {
            Rule::Exact(o) => *o == origin,
            Rule::Subdomains { prefix, suffix, port } => origin
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(port.as_str()))
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                // `is_host` takes one trailing dot (a fully qualified name); here it would be an
                // empty label before the suffix (`a..example.com`), which no browser sends.
                .is_some_and(|sub| !sub.is_empty() && !sub.contains(':') && !sub.ends_with('.') && is_host(sub, false)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKS: &[&str] = &[
        "https://evil.com",
        "null",
        "file://",
        "https://evil.chat.example.com",
        "https://chat.example.com.evil.com",
        "https://evilchat.example.com",
        "https://chat.example.com:8443",
        "http://chat.example.com",
        "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
        "https://chat-example.com",
        "https://chat.example.com.",
        "https://chat.example.co",
    ];

    #[test]
    fn default_is_the_public_origin_only() {
        let p = OriginPolicy::default_for(Some("https://Chat.Example.com:443/live?x=1"), "0.0.0.0", 8765).unwrap();
        assert!(p.allows(Some("https://chat.example.com")));
        assert!(p.allows(Some("HTTPS://CHAT.EXAMPLE.COM")));
        assert!(p.allows(Some("https://chat.example.com:443")));
        assert!(p.allows(None), "no Origin: not a browser");
        for a in ATTACKS {
            assert!(!p.allows(Some(a)), "{a} allowed");
        }
        for bad in ["", "http://127.0.0.1:8765", "https://chat.example.com@evil.com", "https://chat.example.com/x"] {
            assert!(!p.allows(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn default_without_public_url_is_the_listener() {
        let p = OriginPolicy::default_for(None, "127.0.0.1", 8765).unwrap();
        for ok in ["http://127.0.0.1:8765", "http://localhost:8765", "https://[::1]:8765"] {
            assert!(p.allows(Some(ok)), "{ok}");
        }
        for bad in ["http://127.0.0.1:8766", "http://127.0.0.1", "http://evil.localhost:8765", "http://10.0.0.1:8765"] {
            assert!(!p.allows(Some(bad)), "{bad}");
        }
        let p = OriginPolicy::default_for(None, "10.1.2.3", 80).unwrap();
        assert!(p.allows(Some("http://10.1.2.3")) && !p.allows(Some("http://localhost")));
        assert!(OriginPolicy::default_for(Some("ftp:/x"), "h", 1).is_err());
    }

    #[test]
    fn each_attack_is_allowed_only_when_listed() {
        for a in ATTACKS {
            let p = OriginPolicy::new(&[*a]).unwrap();
            assert!(p.allows(Some(a)), "{a} listed but refused");
            for other in ATTACKS.iter().filter(|o| *o != a) {
                assert!(!p.allows(Some(other)), "{a} listed, {other} allowed");
            }
        }
        assert!(OriginPolicy::new(&["*"]).unwrap().allows(Some("https://evil.com")));
    }

    #[test]
    fn subdomain_pattern() {
        let p = OriginPolicy::new(&["https://*.example.com"]).unwrap();
        assert!(p.allows(Some("https://a.example.com")) && p.allows(Some("https://a.b.example.com")));
        for bad in [
            "https://example.com",
            "https://evilexample.com",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://a.example.com.evil.com",
            "https://.example.com",
            // Found by the handshake fuzz target: an empty label before the suffix was allowed.
            "https://a..example.com",
            "HTTPS://A..EXAMPLE.COM",
            "https://a.b..example.com",
        ] {
            assert!(!p.allows(Some(bad)), "{bad}");
        }
        let p = OriginPolicy::new(&["https://*.example.com:8443"]).unwrap();
        assert!(p.allows(Some("https://a.example.com:8443")) && !p.allows(Some("https://a.example.com")));
        for bad in
            ["https://*.com", "https://a.*.com", "https://*example.com", "*.example.com", "https://x.example.com/a b"]
        {
            assert!(OriginPolicy::new(&[bad]).is_err(), "{bad} accepted");
        }
        assert!(OriginPolicy::new(&[""]).is_err());
        for not_origin in ["https://a.example.com/app", "https://u@a.example.com", "https://a.example.com:x"] {
            assert!(OriginPolicy::new(&[not_origin]).is_err(), "{not_origin} accepted");
        }
    }

    #[test]
    fn normal_form() {
        assert_eq!(normalize("HTTP://Example.COM:80/"), "http://example.com");
        assert_eq!(normalize("https://example.com:0443"), "https://example.com");
        assert_eq!(normalize("https://example.com:8443"), "https://example.com:8443");
        assert_eq!(normalize("https://[::1]:8443"), "https://[::1]:8443");
        assert_eq!(normalize("Null"), "null");
        assert_eq!(normalize("https://example.com:99999"), "https://example.com:99999");
        assert_eq!(origin_of_url("wss://chat.example.com/live").as_deref(), Some("https://chat.example.com"));
        assert_eq!(origin_of_url("https://u@chat.example.com/"), None);
    }
}
