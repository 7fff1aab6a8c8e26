//! The client's address behind reverse proxies (`X-Forwarded-For`, RFC 7239 `Forwarded`).
//!
//! Anyone can send those headers, so they are read ONLY when the socket's peer is a configured
//! trusted proxy (`edge.trusted_proxies`, CIDRs; empty by default: the headers are ignored). Then
//! the hop list (`Forwarded`'s `for=` values when that header is present, else `X-Forwarded-For`;
//! repeated headers in order) is walked from the right, past every trusted proxy: the first hop
//! that is not one is the client. A hop that is not an IP address (`unknown`, an obfuscated
//! name, garbage) ends the walk at the trusted proxy that reported it. All hops trusted: the
//! leftmost. Never more than `MAX_HOPS` hops are read.

use std::net::{IpAddr, SocketAddr};

/// Hops read from the right of a forwarded list (a longer list is someone's padding).
const MAX_HOPS: usize = 16;

/// One CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    net: IpAddr,
    prefix: u8,
}

impl Block {
    fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{text:?}: bad prefix"))?,
        };
        Ok(Self { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, a dual-stack socket's view) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The proxies whose forwarding headers are believed. Built once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<Block>,
}

impl TrustedProxies {
    /// From CIDR blocks (`"10.0.0.0/8"`, `"::1"`; a bare address is one host).
    pub fn new(entries: &[String]) -> Result<Self, String> {
        Ok(Self { blocks: entries.iter().map(|e| Block::parse(e)).collect::<Result<_, _>>()? })
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.blocks.iter().any(|b| b.contains(ip))
    }

    /// The client's address for a connection from `peer`: `peer` as `ip:port` when it is not a
    /// trusted proxy (or no header names a hop), else the client's IP from the headers.
    pub fn client_address(&self, peer: SocketAddr, forwarded_for: Option<&str>, forwarded: Option<&str>) -> String {
        if !self.trusts(peer.ip()) {
            return peer.to_string();
        }
        let hops: Vec<&str> = match (forwarded, forwarded_for) {
            (Some(f), _) => forwarded_hops(f),
            (None, Some(x)) => x.split(',').map(str::trim).collect(),
            (None, None) => return peer.to_string(),
        };
        let mut client = peer.ip();
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(ip) = hop_ip(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        canonical(client).to_string()
    }
}

/// The `for=` values of `Forwarded` elements, in order (RFC 7239 §4).
fn forwarded_hops(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .map_or("", |(_, v)| v.trim())
        })
        .collect()
}

/// An IP address from a hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `"[2001:db8::1]:80"`.
fn hop_ip(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')).and_then(|h| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn headers_are_ignored_unless_the_peer_is_a_trusted_proxy() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_address(sock("127.0.0.1:5000"), Some("203.0.113.9"), None), "127.0.0.1:5000");
        let lan = proxies(&["10.0.0.0/8"]);
        assert_eq!(lan.client_address(sock("192.0.2.1:5000"), Some("203.0.113.9"), None), "192.0.2.1:5000");
        assert_eq!(lan.client_address(sock("10.1.2.3:5000"), Some("203.0.113.9"), None), "203.0.113.9");
        assert_eq!(lan.client_address(sock("10.1.2.3:5000"), None, None), "10.1.2.3:5000");
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client_not_what_the_client_wrote() {
        let lan = proxies(&["10.0.0.0/8"]);
        // The client wrote "1.1.1.1" itself; the proxies appended 198.51.100.7 and 10.0.0.2.
        let chain = "1.1.1.1, 198.51.100.7, 10.0.0.2";
        assert_eq!(lan.client_address(sock("10.0.0.1:1"), Some(chain), None), "198.51.100.7");
        assert_eq!(lan.client_address(sock("10.0.0.1:1"), Some("10.0.0.3, 10.0.0.2"), None), "10.0.0.3");
        // Not an address: the walk stops at the trusted proxy that reported it.
        assert_eq!(lan.client_address(sock("10.0.0.1:1"), Some("unknown"), None), "10.0.0.1");
        let padded = format!("198.51.100.7{}", ", 10.0.0.9".repeat(40));
        assert_eq!(lan.client_address(sock("10.0.0.1:1"), Some(&padded), None), "10.0.0.9");
    }

    #[test]
    fn forwarded_for_values_with_ports_quotes_and_ipv6() {
        let lan = proxies(&["10.0.0.0/8", "fd00::/8"]);
        let peer = sock("10.0.0.1:1");
        let f = r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#;
        assert_eq!(lan.client_address(peer, Some("9.9.9.9"), Some(f)), "2001:db8:cafe::17");
        assert_eq!(lan.client_address(peer, None, Some("For=192.0.2.43:80")), "192.0.2.43");
        assert_eq!(lan.client_address(sock("[fd00::1]:1"), Some("192.0.2.5"), None), "192.0.2.5");
        // A dual-stack socket's mapped IPv4 peer is matched as IPv4.
        assert_eq!(lan.client_address(sock("[::ffff:10.0.0.1]:1"), Some("192.0.2.5"), None), "192.0.2.5");
    }

    #[test]
    fn blocks_parse_and_match() {
        assert!(TrustedProxies::new(&["10.0.0.0/33".to_owned()]).is_err());
        assert!(TrustedProxies::new(&["proxy.local".to_owned()]).is_err());
        let p = proxies(&["192.168.1.0/24", "::1", "0.0.0.0/0"]);
        assert!(p.trusts("8.8.8.8".parse().unwrap()));
        let p = proxies(&["192.168.1.0/24", "::1"]);
        assert!(p.trusts("192.168.1.200".parse().unwrap()));
        assert!(!p.trusts("192.168.2.1".parse().unwrap()));
        assert!(p.trusts("::1".parse().unwrap()));
        assert!(!p.trusts("::2".parse().unwrap()));
    }
}
