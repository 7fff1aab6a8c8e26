//! The client-frame decoder (`proto::codec::decode`): frame headers, masking, fragmentation,
//! control-frame rules, UTF-8, permessage-deflate and the size limit.
//!
//! Properties:
//! - the same bytes give the same messages, error and bytes consumed whether they arrive at once
//!   or in pieces (any read boundaries);
//! - without deflate, the outcome equals a reference decoder written here from RFC 6455 §5-7;
//! - every delivered text is UTF-8 (std), no message exceeds the limit, control payloads stay
//!   within 125 bytes, a close code is one a peer may send, and nothing follows a close;
//! - word-at-a-time masking equals byte-at-a-time, and a parsed header re-encodes to itself.
//!
//! Input: byte 0 = config (bit 0 deflate, bit 1 client_no_context_takeover, bits 2-3 the limit),
//! byte 1 = read size for the piecewise run, rest = what the client sent.
#![no_main]

use edge_core::proto::codec::{decode, Incoming, ProtocolError, RxConfig, RxState, Scratch};
use edge_core::proto::deflate::DeflateParams;
use edge_core::proto::frame;
use edge_core::proto::mask::{apply_mask, apply_mask_bytewise};
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [1, 126, 1000, 1 << 16];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Bin(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

/// Messages delivered, then the error code (None: no error), then bytes consumed.
type Outcome = (Vec<Ev>, Option<u16>, usize);

fn owned(m: Incoming<'_>) -> Ev {
    match m {
        Incoming::Text(t) => Ev::Text(t.to_vec()),
        Incoming::Binary(b) => Ev::Bin(b.to_vec()),
        Incoming::Ping(p) => Ev::Ping(p.to_vec()),
        Incoming::Pong(p) => Ev::Pong(p.to_vec()),
        Incoming::Close(c, r) => Ev::Close(c, r.to_owned()),
    }
}

fn code(r: Result<usize, ProtocolError>) -> Result<usize, u16> {
    r.map_err(|e| e.code)
}

fn whole(cfg: &RxConfig, wire: &[u8]) -> Outcome {
    let mut st = RxState::default();
    let mut scratch = Scratch::default();
    let mut buf = wire.to_vec();
    let mut evs = Vec::new();
    match code(decode(&mut st, cfg, &mut buf, &mut scratch, |m| {
        evs.push(owned(m));
        true
    })) {
        Ok(n) => {
            assert!(n <= wire.len());
            (evs, None, n)
        }
        Err(c) => (evs, Some(c), 0),
    }
}

fn piecewise(cfg: &RxConfig, wire: &[u8], read: usize) -> Outcome {
    let mut st = RxState::default();
    let mut scratch = Scratch::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut evs = Vec::new();
    let mut consumed = 0;
    for piece in wire.chunks(read) {
        pending.extend_from_slice(piece);
        let r = code(decode(&mut st, cfg, &mut pending, &mut scratch, |m| {
            evs.push(owned(m));
            true
        }));
        match r {
            Ok(n) => {
                assert!(n <= pending.len());
                consumed += n;
                pending.drain(..n);
            }
            Err(c) => return (evs, Some(c), 0),
        }
        if matches!(evs.last(), Some(Ev::Close(..))) {
            break;
        }
    }
    (evs, None, consumed)
}

/// RFC 6455 §5-7 as plainly as possible, on the whole input, no deflate.
fn reference(max: usize, wire: &[u8]) -> Outcome {
    const PROTOCOL: Option<u16> = Some(1002);
    const PAYLOAD: Option<u16> = Some(1007);
    let may_continue = |b: &[u8]| std::str::from_utf8(b).map_or_else(|e| e.error_len().is_none(), |_| true);
    let mut evs = Vec::new();
    let mut pos = 0;
    // (text, data so far) of a fragmented message.
    let mut frag: Option<(bool, Vec<u8>)> = None;
    loop {
        let rest = &wire[pos..];
        if rest.len() < 2 {
            return (evs, None, pos);
        }
        let (fin, rsv, opcode, masked) = (rest[0] >> 7 == 1, rest[0] & 0x70, rest[0] & 0x0F, rest[1] >> 7 == 1);
        let (len, mut at) = match rest[1] & 0x7F {
            126 if rest.len() >= 4 => (u64::from(rest[2]) << 8 | u64::from(rest[3]), 4),
            127 if rest.len() >= 10 => (rest[2..10].iter().fold(0u64, |a, b| a << 8 | u64::from(*b)), 10),
            126 | 127 => return (evs, None, pos),
            n => (u64::from(n), 2),
        };
        if len >= 1 << 63 {
            return (evs, PROTOCOL, 0);
        }
        if masked && rest.len() < at + 4 {
            return (evs, None, pos);
        }
        let control = opcode >= 8;
        let refused = !masked
            || rsv & 0x30 != 0
            || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10)
            || (control && (!fin || len > 125 || rsv != 0))
            || (matches!(opcode, 1 | 2) && (frag.is_some() || rsv != 0))
            || (opcode == 0 && (frag.is_none() || rsv != 0));
        if refused {
            return (evs, PROTOCOL, 0);
        }
        let so_far = frag.as_ref().map_or(0, |f| f.1.len() as u64);
        if len + so_far > max as u64 {
            return (evs, Some(1009), 0);
        }
        let key = [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
        at += 4;
        let len = len as usize;
        if rest.len() - at < len {
            return (evs, None, pos);
        }
        let payload: Vec<u8> = rest[at..at + len].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        pos += at + len;
        match opcode {
            9 => evs.push(Ev::Ping(payload)),
            10 => evs.push(Ev::Pong(payload)),
            8 => {
                if payload.is_empty() {
                    evs.push(Ev::Close(1005, String::new()));
                    return (evs, None, pos);
                }
                if payload.len() == 1 {
                    return (evs, PROTOCOL, 0);
                }
                let c = u16::from_be_bytes([payload[0], payload[1]]);
                if !matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                    return (evs, PROTOCOL, 0);
                }
                let Ok(reason) = String::from_utf8(payload[2..].to_vec()) else { return (evs, PAYLOAD, 0) };
                evs.push(Ev::Close(c, reason));
                return (evs, None, pos);
            }
            _ => {
                let (text, mut data) = frag.take().unwrap_or((opcode == 1, Vec::new()));
                data.extend_from_slice(&payload);
                if fin {
                    if text && std::str::from_utf8(&data).is_err() {
                        return (evs, PAYLOAD, 0);
                    }
                    evs.push(if text { Ev::Text(data) } else { Ev::Bin(data) });
                } else {
                    if text && !may_continue(&data) {
                        return (evs, PAYLOAD, 0);
                    }
                    frag = Some((text, data));
                }
            }
        }
    }
}

fn check_invariants(max: usize, out: &Outcome) {
    let (evs, _, _) = out;
    for (i, ev) in evs.iter().enumerate() {
        match ev {
            Ev::Text(t) => assert!(std::str::from_utf8(t).is_ok() && t.len() <= max),
            Ev::Bin(b) => assert!(b.len() <= max),
            Ev::Ping(p) | Ev::Pong(p) => assert!(p.len() <= 125),
            Ev::Close(c, r) => {
                assert!(*c == 1005 || matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999), "close code {c}");
                assert!(r.len() <= 123);
                assert_eq!(i + 1, evs.len(), "a message after the close frame");
            }
        }
    }
}

fn check_mask_and_header(wire: &[u8], seed: u8) {
    let key = [seed, seed.wrapping_mul(31), !seed, seed ^ 0x5A];
    let offset = usize::from(seed % 8);
    let mut fast = wire.to_vec();
    let mut slow = wire.to_vec();
    apply_mask(&mut fast, key, offset);
    apply_mask_bytewise(&mut slow, key, offset);
    assert_eq!(fast, slow);
    apply_mask(&mut fast, key, offset);
    assert_eq!(fast, wire);

    if let Ok(Some(h)) = frame::parse_header(wire) {
        let len = usize::try_from(h.len).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        frame::write_header(&mut out, h.fin, h.rsv1, h.opcode, len, h.mask);
        assert_eq!(out.len(), frame::header_len(len, h.mask.is_some()));
        let again = frame::parse_header(&out).unwrap().unwrap();
        assert_eq!(
            (again.fin, again.rsv1, again.opcode, again.mask, again.len, again.header_len),
            (h.fin, h.rsv1, h.opcode, h.mask, h.len, out.len())
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [c, read, wire @ ..] = data else { return };
    let deflate =
        (c & 1 != 0).then_some(DeflateParams { client_no_context_takeover: c & 2 != 0, server_max_window_bits: 15 });
    let max = LIMITS[usize::from(c >> 2) & 3];
    let cfg = RxConfig { max_message: max, deflate };

    let all = whole(&cfg, wire);
    check_invariants(max, &all);
    let pieces = piecewise(&cfg, wire, 1 + usize::from(*read));
    assert_eq!(pieces, all, "piecewise (reads of {}) and whole differ", 1 + usize::from(*read));
    if deflate.is_none() {
        assert_eq!(all, reference(max, wire), "decoder and reference differ");
    }
    check_mask_and_header(wire, *read);
});
