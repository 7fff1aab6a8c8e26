//! Client → server message decoding: frame policy, fragmentation, control frames, UTF-8,
//! permessage-deflate and the size limit. Sans-IO: bytes in, messages out.

use super::close;
use super::codes;
use super::deflate::{DeflateParams, InflateError, Inflater};
use super::frame::{self, FrameHeader};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// One thing a client said.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A whole text message, already checked to be UTF-8.
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// The peer's close frame: code (1005 when absent) and reason.
    Close(u16, &'a str),
}

/// Why the connection must be failed, as the close frame to send.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct ProtocolError {
    pub code: u16,
    pub reason: &'static str,
}

const fn err(code: u16, reason: &'static str) -> ProtocolError {
    ProtocolError { code, reason }
}

/// Per-connection decoder settings.
#[derive(Debug, Clone, Copy)]
pub struct RxConfig {
    /// Largest message after reassembly and inflation.
    pub max_message: usize,
    /// Negotiated permessage-deflate, if any.
    pub deflate: Option<DeflateParams>,
}

/// A message arriving in several frames.
struct Fragment {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    utf8: Utf8Validator,
}

/// Per-connection decoder state: empty (16 bytes, no heap) between messages unless the client
/// keeps a compression context, which then costs one inflater (~40 KiB) from its first
/// compressed message on.
#[derive(Default)]
pub struct RxState {
    fragment: Option<Box<Fragment>>,
    inflater: Option<Box<Inflater>>,
}

impl RxState {
    /// Whether a fragmented message is half-received (the read buffer must then be kept).
    pub fn mid_message(&self) -> bool {
        self.fragment.is_some()
    }
}

/// Per-thread buffers shared by every connection of a thread.
#[derive(Default)]
pub struct Scratch {
    inflated: Vec<u8>,
    stateless_inflater: Inflater,
}

/// Largest message on the wire. Deflate can grow incompressible data (stored blocks: 5 bytes per
/// 64 KiB, more with some compressors' block choices), so compressed messages get 1/8 + 1 KiB of
/// slack; the inflater enforces the real limit on what they inflate to.
fn wire_limit(max_message: usize, compressed: bool) -> u64 {
    let max = max_message as u64;
    if compressed {
        max + max / 8 + 1024
    } else {
        max
    }
}

fn check_header(h: &FrameHeader, st: &RxState, cfg: &RxConfig) -> Result<(), ProtocolError> {
    if h.mask.is_none() {
        return Err(err(codes::PROTOCOL_ERROR, "client frames must be masked"));
    }
    if h.rsv2 || h.rsv3 {
        return Err(err(codes::PROTOCOL_ERROR, "reserved bits set"));
    }
    match h.opcode {
        frame::OP_CLOSE | frame::OP_PING | frame::OP_PONG => {
            if !h.fin {
                return Err(err(codes::PROTOCOL_ERROR, "fragmented control frame"));
            }
            if h.len > 125 {
                return Err(err(codes::PROTOCOL_ERROR, "control frame over 125 bytes"));
            }
            if h.rsv1 {
                return Err(err(codes::PROTOCOL_ERROR, "RSV1 on a control frame"));
            }
        }
        frame::OP_TEXT | frame::OP_BINARY => {
            if st.fragment.is_some() {
                return Err(err(codes::PROTOCOL_ERROR, "new message inside a fragmented one"));
            }
            if h.rsv1 && cfg.deflate.is_none() {
                return Err(err(codes::PROTOCOL_ERROR, "RSV1 without permessage-deflate"));
            }
        }
        frame::OP_CONTINUATION => {
            if st.fragment.is_none() {
                return Err(err(codes::PROTOCOL_ERROR, "continuation with no message to continue"));
            }
            if h.rsv1 {
                return Err(err(codes::PROTOCOL_ERROR, "RSV1 on a continuation frame"));
            }
        }
        _ => return Err(err(codes::PROTOCOL_ERROR, "reserved opcode")),
    }
    let so_far = st.fragment.as_ref().map_or(0, |f| f.data.len() as u64);
    let compressed = h.rsv1 || st.fragment.as_ref().is_some_and(|f| f.compressed);
    if h.len.saturating_add(so_far) > wire_limit(cfg.max_message, compressed) {
        return Err(err(codes::TOO_BIG, "message too big"));
    }
    Ok(())
}

fn inflate<'s>(
    st: &mut RxState,
    cfg: &RxConfig,
    scratch: &'s mut Scratch,
    input: &[u8],
) -> Result<&'s [u8], ProtocolError> {
    scratch.inflated.clear();
    let stateless = cfg.deflate.is_some_and(|d| d.client_no_context_takeover);
    let inflater: &mut Inflater = if stateless {
        scratch.stateless_inflater.reset();
        &mut scratch.stateless_inflater
    } else {
        st.inflater.get_or_insert_with(Box::default)
    };
    match inflater.inflate(input, &mut scratch.inflated, cfg.max_message) {
        Ok(()) => Ok(&scratch.inflated),
        Err(InflateError::TooBig) => Err(err(codes::TOO_BIG, "message too big after inflation")),
        Err(InflateError::Corrupt) => Err(err(codes::INVALID_PAYLOAD, "bad deflate data")),
    }
}

fn deliver(text: bool, data: &[u8], on: &mut impl FnMut(Incoming<'_>) -> bool) -> Result<bool, ProtocolError> {
    if text {
        if simdutf8::basic::from_utf8(data).is_err() {
            return Err(err(codes::INVALID_PAYLOAD, "text message is not UTF-8"));
        }
        Ok(on(Incoming::Text(data)))
    } else {
        Ok(on(Incoming::Binary(data)))
    }
}

/// Decode every whole frame at the start of `buf` (unmasking it in place), calling `on` for
/// each message or control frame. Returns the bytes consumed; the caller keeps the rest for the
/// next read. Stops after a close frame, or when `on` returns false.
pub fn decode(
    st: &mut RxState,
    cfg: &RxConfig,
    buf: &mut [u8],
    scratch: &mut Scratch,
    mut on: impl FnMut(Incoming<'_>) -> bool,
) -> Result<usize, ProtocolError> {
    let mut pos = 0;
    loop {
        let h = match frame::parse_header(&buf[pos..]) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(pos),
            Err(_) => return Err(err(codes::PROTOCOL_ERROR, "frame length has the top bit set")),
        };
        check_header(&h, st, cfg)?;
        // check_header bounds len by max_message, so it fits usize.
        let len = h.len as usize;
        let start = pos + h.header_len;
        if buf.len() - start < len {
            return Ok(pos);
        }
        let end = start + len;
        let payload = &mut buf[start..end];
        if let Some(m) = h.mask {
            apply_mask(payload, m, 0);
        }
        pos = end;
        let payload = &buf[start..end];
        let go_on = match h.opcode {
            frame::OP_PING => on(Incoming::Ping(payload)),
            frame::OP_PONG => on(Incoming::Pong(payload)),
            frame::OP_CLOSE => {
                let (code, reason) = close::parse_payload(payload).map_err(|e| match e {
                    close::CloseError::BadCode => err(codes::PROTOCOL_ERROR, "invalid close code"),
                    close::CloseError::BadReason => err(codes::INVALID_PAYLOAD, "close reason is not UTF-8"),
                })?;
                on(Incoming::Close(code, reason));
                return Ok(pos);
            }
            frame::OP_TEXT | frame::OP_BINARY => {
                let text = h.opcode == frame::OP_TEXT;
                if h.fin {
                    if h.rsv1 {
                        let data = inflate(st, cfg, scratch, payload)?;
                        deliver(text, data, &mut on)?
                    } else {
                        deliver(text, payload, &mut on)?
                    }
                } else {
                    let mut f = Box::new(Fragment {
                        text,
                        compressed: h.rsv1,
                        data: Vec::with_capacity(len.max(256)),
                        utf8: Utf8Validator::default(),
                    });
                    if text && !h.rsv1 && f.utf8.feed(payload, false).is_err() {
                        return Err(err(codes::INVALID_PAYLOAD, "text message is not UTF-8"));
                    }
                    f.data.extend_from_slice(payload);
                    st.fragment = Some(f);
                    true
                }
            }
            _ => {
                let f = st.fragment.as_mut().ok_or(err(codes::PROTOCOL_ERROR, "continuation"))?;
                if f.text && !f.compressed && f.utf8.feed(payload, h.fin).is_err() {
                    return Err(err(codes::INVALID_PAYLOAD, "text message is not UTF-8"));
                }
                f.data.extend_from_slice(payload);
                if h.fin {
                    let f = st.fragment.take().ok_or(err(codes::PROTOCOL_ERROR, "continuation"))?;
                    if f.compressed {
                        let data = inflate(st, cfg, scratch, &f.data)?;
                        deliver(f.text, data, &mut on)?
                    } else {
                        // Text was validated piece by piece as it arrived.
                        on(if f.text { Incoming::Text(&f.data) } else { Incoming::Binary(&f.data) })
                    }
                } else {
                    true
                }
            }
        };
        if !go_on {
            return Ok(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::deflate::Deflater;
    use crate::proto::frame::{encode_client_frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT};
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Text(String),
        Bin(Vec<u8>),
        Ping(Vec<u8>),
        Close(u16, String),
    }

    fn cfg(deflate: bool) -> RxConfig {
        RxConfig {
            max_message: 1 << 16,
            deflate: deflate.then_some(DeflateParams { client_no_context_takeover: false, server_max_window_bits: 15 }),
        }
    }

    /// Feed `wire` in pieces of `chunk` bytes the way a socket would deliver it.
    fn run(cfg: &RxConfig, wire: &[u8], chunk: usize) -> Result<Vec<Got>, ProtocolError> {
        let mut st = RxState::default();
        let mut scratch = Scratch::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk.max(1)) {
            if matches!(got.last(), Some(Got::Close(..))) {
                break;
            }
            pending.extend_from_slice(piece);
            let used = decode(&mut st, cfg, &mut pending, &mut scratch, |m| {
                got.push(match m {
                    Incoming::Text(t) => Got::Text(String::from_utf8(t.to_vec()).unwrap()),
                    Incoming::Binary(b) => Got::Bin(b.to_vec()),
                    Incoming::Ping(p) => Got::Ping(p.to_vec()),
                    Incoming::Pong(_) => return true,
                    Incoming::Close(c, r) => Got::Close(c, r.to_owned()),
                });
                true
            })?;
            pending.drain(..used);
        }
        Ok(got)
    }

    const K: [u8; 4] = [1, 2, 3, 4];

    #[test]
    fn policy_errors() {
        let c = cfg(false);
        let unmasked = frame::encode_frame(OP_TEXT, false, b"hi");
        assert_eq!(run(&c, &unmasked, 100).unwrap_err().code, codes::PROTOCOL_ERROR);
        let rsv1 = encode_client_frame(true, true, OP_TEXT, b"hi", K);
        assert_eq!(run(&c, &rsv1, 100).unwrap_err().code, codes::PROTOCOL_ERROR);
        let op = encode_client_frame(true, false, 0x3, b"", K);
        assert_eq!(run(&c, &op, 100).unwrap_err().code, codes::PROTOCOL_ERROR);
        let big_ping = encode_client_frame(true, false, OP_PING, &[0; 126], K);
        assert_eq!(run(&c, &big_ping, 1000).unwrap_err().code, codes::PROTOCOL_ERROR);
        let cont = encode_client_frame(true, false, OP_CONTINUATION, b"x", K);
        assert_eq!(run(&c, &cont, 100).unwrap_err().code, codes::PROTOCOL_ERROR);
        let bad = encode_client_frame(true, false, OP_TEXT, &[0xCE, 0xBA, 0xFF], K);
        assert_eq!(run(&c, &bad, 100).unwrap_err().code, codes::INVALID_PAYLOAD);
        let bad_close = encode_client_frame(true, false, OP_CLOSE, &[0x03, 0xEC], K);
        assert_eq!(run(&c, &bad_close, 100).unwrap_err().code, codes::PROTOCOL_ERROR);
    }

    #[test]
    fn oversize_is_refused_from_the_header() {
        let c = RxConfig { max_message: 100, deflate: None };
        let f = encode_client_frame(true, false, OP_BINARY, &[0; 101], K);
        // Only the header has arrived: the refusal must not wait for the payload.
        assert_eq!(run(&c, &f[..8], 8).unwrap_err().code, codes::TOO_BIG);
        let mut two = encode_client_frame(false, false, OP_BINARY, &[0; 60], K);
        two.extend(encode_client_frame(true, false, OP_CONTINUATION, &[0; 60], K));
        assert_eq!(run(&c, &two, 1000).unwrap_err().code, codes::TOO_BIG);
    }

    #[test]
    fn incompressible_message_at_the_limit_is_accepted_compressed() {
        let c = RxConfig { max_message: 1000, ..cfg(true) };
        let data: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let mut z = Vec::new();
        Deflater::with_window(0, 15).compress(&data, &mut z);
        assert!(z.len() > 1000, "stored blocks grow the message");
        let f = encode_client_frame(true, true, OP_BINARY, &z, K);
        assert_eq!(run(&c, &f, 4096).unwrap(), vec![Got::Bin(data)]);
    }

    #[test]
    fn deflate_bomb_closes_1009() {
        let mut c = cfg(true);
        c.max_message = 1 << 16;
        let mut z = Vec::new();
        Deflater::new(9).compress(&vec![b'a'; 1 << 22], &mut z);
        let f = encode_client_frame(true, true, OP_BINARY, &z, K);
        assert_eq!(run(&c, &f, 1 << 20).unwrap_err().code, codes::TOO_BIG);
    }

    #[test]
    fn control_inside_fragments_and_close() {
        let mut w = encode_client_frame(false, false, OP_TEXT, "héllo ".as_bytes(), K);
        w.extend(encode_client_frame(true, false, OP_PING, b"p", K));
        w.extend(encode_client_frame(true, false, OP_CONTINUATION, "wörld".as_bytes(), K));
        w.extend(encode_client_frame(true, false, OP_CLOSE, &close::encode_payload(1000, "bye"), K));
        w.extend(encode_client_frame(true, false, OP_TEXT, b"after close", K));
        for chunk in [1, 3, 7, 1000] {
            let got = run(&cfg(false), &w, chunk).unwrap();
            assert_eq!(
                got,
                vec![Got::Ping(b"p".to_vec()), Got::Text("héllo wörld".into()), Got::Close(1000, "bye".into())]
            );
        }
    }

    fn fragments(data: &[u8], sizes: &[usize], opcode: u8, rsv1: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = data;
        let mut first = true;
        let mut i = 0;
        loop {
            let n = if sizes.is_empty() { rest.len() } else { sizes[i % sizes.len()].min(rest.len()) };
            i += 1;
            let (piece, tail) = rest.split_at(n);
            let fin = tail.is_empty();
            let op = if first { opcode } else { OP_CONTINUATION };
            out.extend(encode_client_frame(fin, first && rsv1, op, piece, K));
            first = false;
            rest = tail;
            if fin {
                return out;
            }
        }
    }

    proptest! {
        #[test]
        fn fragmented_messages_round_trip(text in "\\PC{0,200}", bin in proptest::collection::vec(any::<u8>(), 0..500),
                                          sizes in proptest::collection::vec(1usize..50, 0..4),
                                          chunk in 1usize..64, deflate in any::<bool>()) {
            let c = cfg(deflate);
            let mut wire = Vec::new();
            let mut d = Deflater::new(6);
            for (data, op) in [(text.as_bytes(), OP_TEXT), (bin.as_slice(), OP_BINARY)] {
                if deflate {
                    let mut z = Vec::new();
                    d.compress(data, &mut z);
                    wire.extend(fragments(&z, &sizes, op, true));
                } else {
                    wire.extend(fragments(data, &sizes, op, false));
                }
            }
            let got = run(&c, &wire, chunk).unwrap();
            prop_assert_eq!(got, vec![Got::Text(text.clone()), Got::Bin(bin.clone())]);
        }
    }
}
