//! permessage-deflate (RFC 7692): offer negotiation, per-message compress and bounded inflate.
//!
//! The server always answers with `server_no_context_takeover`, so a message compresses the same
//! way for every client and one compressed tick frame serves them all (docs/operations.md §4,
//! Deflate).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// RFC 7692 §7.2.1: every compressed message ends in this empty stored block, stripped on the wire.
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];
/// Window our compressor uses; a client that caps the server window below it gets uncompressed
/// frames (RSV1 clear is always allowed), so the shared bytes never break its inflater.
pub const SERVER_WINDOW_BITS: u8 = 15;

/// What one connection agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The client resets its compressor per message: our inflater may too (no per-connection window).
    pub client_no_context_takeover: bool,
    /// The largest window the client lets us use (8–15).
    pub server_max_window_bits: u8,
}

impl DeflateParams {
    /// Whether frames compressed with our window may be sent to this client.
    pub fn accepts_shared_frames(&self) -> bool {
        self.server_max_window_bits >= SERVER_WINDOW_BITS
    }
}

fn parse_bits(value: Option<&str>) -> Option<u8> {
    let v = value?.trim().trim_matches('"');
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = v.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// One offer's parameters, or None when the offer is malformed (RFC 7692 §5: decline it).
fn parse_offer(params: &str) -> Option<DeflateParams> {
    let mut out = DeflateParams { client_no_context_takeover: false, server_max_window_bits: 15 };
    let (mut seen_snct, mut seen_cnct, mut seen_smwb, mut seen_cmwb) = (false, false, false, false);
    for raw in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = match raw.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v)),
            None => (raw, None),
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if !seen_snct && value.is_none() => seen_snct = true,
            "client_no_context_takeover" if !seen_cnct && value.is_none() => {
                seen_cnct = true;
                out.client_no_context_takeover = true;
            }
            "server_max_window_bits" if !seen_smwb => {
                seen_smwb = true;
                out.server_max_window_bits = parse_bits(value)?;
            }
            "client_max_window_bits" if !seen_cmwb => {
                seen_cmwb = true;
                if value.is_some() {
                    parse_bits(value)?;
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Pick the first acceptable permessage-deflate offer from the `Sec-WebSocket-Extensions`
/// header values; returns the agreed parameters and the response header value.
///
/// We never send `client_max_window_bits` (our inflater takes any window), and echo
/// `client_no_context_takeover` when offered so our inflater can be per-message.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<(DeflateParams, String)> {
    for value in header_values {
        for offer in value.split(',') {
            let (name, params) = match offer.split_once(';') {
                Some((n, p)) => (n.trim(), p),
                None => (offer.trim(), ""),
            };
            if !name.eq_ignore_ascii_case("permessage-deflate") {
                continue;
            }
            if let Some(p) = parse_offer(params) {
                let mut response = String::from("permessage-deflate; server_no_context_takeover");
                if p.client_no_context_takeover {
                    response.push_str("; client_no_context_takeover");
                }
                if p.server_max_window_bits < 15 {
                    response.push_str(&format!("; server_max_window_bits={}", p.server_max_window_bits));
                }
                return Some((p, response));
            }
        }
    }
    None
}

/// A compressor for whole messages with no context carried between them.
pub struct Deflater {
    inner: Compress,
}

impl Deflater {
    pub fn new(level: u32) -> Self {
        Self::with_window(level, SERVER_WINDOW_BITS)
    }

    /// A compressor whose back-references stay within `2^bits` bytes. zlib has no raw 8-bit
    /// window, so 8 gets stored blocks (level 0, no back-references at all), valid for any window.
    pub fn with_window(level: u32, bits: u8) -> Self {
        let level = if bits < 9 { 0 } else { level };
        let bits = bits.clamp(9, 15);
        Self { inner: Compress::new_with_window_bits(Compression::new(level), false, bits) }
    }

    /// Append the compressed form of `input` (tail stripped) to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.inner.reset();
        let start = out.len();
        out.reserve(input.len() / 2 + 64);
        let before_in = self.inner.total_in();
        loop {
            if out.capacity() - out.len() < 128 {
                out.reserve(out.capacity().max(256));
            }
            let consumed = (self.inner.total_in() - before_in) as usize;
            // Compressing into a Vec fails only on an internal stream-state bug.
            let _ = self.inner.compress_vec(&input[consumed..], out, FlushCompress::Sync);
            let all_in = (self.inner.total_in() - before_in) as usize == input.len();
            // The sync flush is whole once it stopped with output room to spare.
            if all_in && out.len() < out.capacity() {
                break;
            }
        }
        if out.len() >= start + 4 && out[out.len() - 4..] == TAIL {
            out.truncate(out.len() - 4);
        }
    }
}

/// One compressor per window size, made on first use (a thread serves clients that cap the
/// server window at different sizes; most never do, so usually only the 15-bit one exists).
pub struct DeflaterSet {
    level: u32,
    by_bits: [Option<Deflater>; 8],
}

impl DeflaterSet {
    pub fn new(level: u32) -> Self {
        Self { level, by_bits: Default::default() }
    }

    pub fn for_window(&mut self, bits: u8) -> &mut Deflater {
        let bits = bits.clamp(8, 15);
        let level = self.level;
        self.by_bits[usize::from(bits - 8)].get_or_insert_with(|| Deflater::with_window(level, bits))
    }
}

/// Why inflation stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The message inflates past the size limit (a deflate bomb or just too big): close 1009.
    TooBig,
    /// Not a valid deflate stream: close 1007.
    Corrupt,
}

/// A raw-deflate inflater for one connection's messages.
pub struct Inflater {
    inner: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Self { inner: Decompress::new(false) }
    }
}

impl Inflater {
    /// Inflate one message into `out`, stopping as soon as it exceeds `max` bytes.
    ///
    /// `out` never grows past `max + 1` bytes beyond its length at entry (zlib fills whatever
    /// spare capacity it is given, so a doubling `reserve` let a 1 MiB limit hold 2 MiB of a
    /// deflate bomb before refusing it).
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
        let start = out.len();
        let cap_limit = start.saturating_add(max).saturating_add(1);
        for piece in [input, &TAIL[..]] {
            let base_in = self.inner.total_in();
            loop {
                let consumed = (self.inner.total_in() - base_in) as usize;
                let produced = out.len() - start;
                if produced > max {
                    return Err(InflateError::TooBig);
                }
                let room = (max + 1 - produced).clamp(1, 64 * 1024);
                if out.capacity() - out.len() < room {
                    // Geometric growth (few copies for big messages), capped at the limit + 1.
                    let target = out.capacity().saturating_mul(2).max(out.len() + room).min(cap_limit);
                    out.reserve_exact(target - out.len());
                }
                let before_out = out.len();
                let status = self
                    .inner
                    .decompress_vec(&piece[consumed..], out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                let all_in = (self.inner.total_in() - base_in) as usize == piece.len();
                let progressed = out.len() != before_out;
                if status == Status::StreamEnd || (all_in && !progressed) {
                    break;
                }
                if !progressed && !all_in && out.capacity() > out.len() {
                    // Input left, room left, nothing produced: the stream is stuck.
                    return Err(InflateError::Corrupt);
                }
            }
        }
        if out.len() - start > max {
            return Err(InflateError::TooBig);
        }
        Ok(())
    }

    /// Drop the window (client_no_context_takeover).
    pub fn reset(&mut self) {
        self.inner.reset(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn negotiation() {
        let (p, r) = negotiate(["permessage-deflate; client_max_window_bits"]).unwrap();
        assert!(p.accepts_shared_frames() && !p.client_no_context_takeover);
        assert_eq!(r, "permessage-deflate; server_no_context_takeover");
        let (p, r) = negotiate([
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
        ])
        .unwrap();
        assert!(!p.accepts_shared_frames() && p.client_no_context_takeover);
        assert!(r.contains("server_max_window_bits=10") && r.contains("client_no_context_takeover"));
        // A malformed first offer is declined and the next one taken.
        let (p, _) = negotiate(["permessage-deflate; server_max_window_bits=7, permessage-deflate"]).unwrap();
        assert_eq!(p.server_max_window_bits, 15);
        assert!(negotiate(["permessage-deflate; foo"]).is_none());
        assert!(negotiate(["permessage-deflate; server_no_context_takeover; server_no_context_takeover"]).is_none());
        assert!(negotiate(["permessage-deflate; client_max_window_bits=16"]).is_none());
        assert!(negotiate(["permessage-deflate; server_no_context_takeover=1"]).is_none());
    }

    #[test]
    fn bomb_is_stopped_at_the_limit() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let mut c = Vec::new();
        Deflater::new(9).compress(&zeros, &mut c);
        assert!(c.len() < 20 * 1024);
        let mut out = Vec::new();
        assert_eq!(Inflater::default().inflate(&c, &mut out, 64 * 1024), Err(InflateError::TooBig));
        assert!(out.len() <= 64 * 1024 + 64 * 1024 + 1);
    }

    #[test]
    fn small_windows_stay_within_their_window() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 600) as u8).collect();
        let mut set = DeflaterSet::new(6);
        for bits in 8u8..=15 {
            let mut z = Vec::new();
            set.for_window(bits).compress(&data, &mut z);
            z.extend_from_slice(&TAIL);
            let mut d = Decompress::new_with_window_bits(false, bits.max(9));
            let mut out = Vec::with_capacity(data.len() + 64);
            d.decompress_vec(&z, &mut out, FlushDecompress::Sync).unwrap();
            assert_eq!(out, data, "window {bits}");
        }
    }

    #[test]
    fn bomb_never_holds_more_than_the_limit() {
        // Found by the inflate fuzz target: past 64 KiB the buffer doubled, so a 1 MiB limit held
        // 2 MiB of a bomb before refusing it.
        let mut c = Vec::new();
        Deflater::new(9).compress(&vec![0u8; 4 << 20], &mut c);
        for max in [1 << 20, 100_000, 65_536, 1000] {
            let mut out = b"kept".to_vec();
            assert_eq!(Inflater::default().inflate(&c, &mut out, max), Err(InflateError::TooBig));
            assert_eq!(out.len(), 4 + max + 1, "limit {max}");
            assert!(out.capacity() <= 4 + max + 1, "limit {max}: capacity {}", out.capacity());
            assert_eq!(&out[..4], b"kept");
            let mut exact = Vec::new();
            let data = vec![7u8; max];
            let mut z = Vec::new();
            Deflater::new(6).compress(&data, &mut z);
            assert_eq!(Inflater::default().inflate(&z, &mut exact, max), Ok(()));
            assert_eq!(exact, data, "a message of exactly the limit");
        }
    }

    #[test]
    fn corrupt_stream() {
        let mut out = Vec::new();
        assert_eq!(Inflater::default().inflate(&[0xFF, 0xFF, 0xFF], &mut out, 1000), Err(InflateError::Corrupt));
    }

    proptest! {
        #[test]
        fn round_trip(msgs in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3000), 1..4),
                      level in 1u32..9) {
            let mut d = Deflater::new(level);
            let mut inf = Inflater::default();
            for m in &msgs {
                let mut c = Vec::new();
                d.compress(m, &mut c);
                let mut out = Vec::new();
                inf.inflate(&c, &mut out, 1 << 20).unwrap();
                prop_assert_eq!(&out, m);
            }
        }
    }
}
