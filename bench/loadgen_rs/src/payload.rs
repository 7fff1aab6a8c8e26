//! The bench message and the two ways servers deliver it (see `bench/fanout/payload.py`).
//!
//! A bench message is 100 bytes: msgpack bin8 header `c4 62`, magic `LCB1`, sequence number
//! (u64 LE), the publisher's CLOCK_MONOTONIC send time in ns (i64 LE), zero padding. Peers
//! deliver each as its own WebSocket message; livechat delivers tick frames, a msgpack map
//! `{"t": "tick", "s": stream, "q": seq, "e": [message, ...]}`.

use crate::msgpack::{Head, Reader};

pub const PAYLOAD_BYTES: usize = 100;
const HEADER: [u8; 2] = [0xc4, (PAYLOAD_BYTES - 2) as u8];
const MAGIC: &[u8; 4] = b"LCB1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchMessage {
    pub seq: u64,
    pub sent_ns: i64,
}

fn le_bytes<const N: usize>(message: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&message[at..at + N]);
    out
}

/// One bench message, or why these bytes are not one.
pub fn decode(message: &[u8]) -> Result<BenchMessage, String> {
    if message.len() != PAYLOAD_BYTES || message[..2] != HEADER {
        return Err(format!(
            "not a bench message: {} ({} bytes)",
            python_repr(&message[..message.len().min(16)]),
            message.len()
        ));
    }
    if &message[2..6] != MAGIC {
        return Err(format!("bad magic {}", python_repr(&message[2..6])));
    }
    Ok(BenchMessage {
        seq: u64::from_le_bytes(le_bytes(message, 6)),
        sent_ns: i64::from_le_bytes(le_bytes(message, 14)),
    })
}

/// Appends to `out` the bench messages one delivered WebSocket message carries, in frame order.
/// On error `out` may hold part of the frame's messages: the caller discards them.
pub fn decode_into(message: &[u8], tick_frames: bool, out: &mut Vec<BenchMessage>) -> Result<(), String> {
    if tick_frames {
        decode_tick(message, out)
    } else {
        out.push(decode(message)?);
        Ok(())
    }
}

/// The bench messages of one tick frame. A frame with no events carries none.
pub fn decode_tick(message: &[u8], out: &mut Vec<BenchMessage>) -> Result<(), String> {
    let not_msgpack = |why: String| format!("tick frame is not msgpack: {why}");
    let not_tick = || format!("not a tick frame: {}", python_repr(&message[..message.len().min(32)]));
    let mut frame = Reader::new(message);
    let Head::Map(fields) = frame.head().map_err(not_msgpack)? else {
        return Err(not_tick());
    };
    let (mut kind, mut events) = (None, None);
    for _ in 0..fields {
        // As in a Python dict built from the map, a repeated key keeps its last value.
        match frame.head().map_err(not_msgpack)? {
            Head::Str(b"t") => kind = Some(frame.value().map_err(not_msgpack)?),
            Head::Str(b"e") => events = Some(frame.value().map_err(not_msgpack)?),
            Head::Str(_) | Head::Bin(_) => frame.skip().map_err(not_msgpack)?,
            // msgpack-python's default strict_map_key refuses these too.
            other => return Err(not_msgpack(format!("{} is not allowed for map key", other.python_type()))),
        }
    }
    if !frame.at_end() {
        return Err(not_msgpack(format!("extra data after byte {}", frame.position())));
    }
    match kind.map(|mut value| value.head()) {
        Some(Ok(Head::Str(b"tick"))) => {}
        _ => return Err(not_tick()),
    }
    let Some(mut events) = events else {
        return Ok(());
    };
    let count = match events.head().map_err(not_msgpack)? {
        Head::Array(count) => count,
        other => return Err(format!("tick frame 'e' is {}, not a list", other.python_type())),
    };
    for _ in 0..count {
        match events.head().map_err(not_msgpack)? {
            Head::Bin(raw) | Head::Str(raw) => out.push(decode(raw)?),
            other => {
                let kind = other.python_type();
                return Err(format!("tick event is {kind}, not bin or str"));
            }
        }
    }
    Ok(())
}

/// `bytes.__repr__` as Python prints it, so error texts read the same from either load generator.
pub fn python_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') { '"' } else { '\'' };
    let mut out = format!("b{quote}");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if char::from(b) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::{decode, decode_tick, python_repr, BenchMessage, PAYLOAD_BYTES};

    fn encode(seq: u64, sent_ns: i64) -> Vec<u8> {
        let mut message = vec![0xc4, 98];
        message.extend_from_slice(b"LCB1");
        message.extend_from_slice(&seq.to_le_bytes());
        message.extend_from_slice(&sent_ns.to_le_bytes());
        message.resize(PAYLOAD_BYTES, 0);
        message
    }

    fn str_head(text: &str) -> Vec<u8> {
        let mut out = vec![0xa0 | u8::try_from(text.len()).unwrap()];
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// `msgpack.packb({"t": "tick", "s": "fanout", "q": 3, "e": events})` with bytes events.
    fn tick(events: &[Vec<u8>]) -> Vec<u8> {
        let mut frame = vec![0x84];
        frame.extend(str_head("t"));
        frame.extend(str_head("tick"));
        frame.extend(str_head("s"));
        frame.extend(str_head("fanout"));
        frame.extend(str_head("q"));
        frame.push(3);
        frame.extend(str_head("e"));
        frame.push(0xdc);
        frame.extend_from_slice(&u16::try_from(events.len()).unwrap().to_be_bytes());
        for event in events {
            // The server wraps each published message, itself a msgpack bin8 value, in a bin8.
            frame.extend_from_slice(&[0xc4, u8::try_from(event.len()).unwrap()]);
            frame.extend_from_slice(event);
        }
        frame
    }

    #[test]
    fn decodes_the_python_encoding() {
        let message = encode(123_456_789, 987_654_321_012_345);
        assert_eq!(decode(&message).unwrap(), BenchMessage { seq: 123_456_789, sent_ns: 987_654_321_012_345 });
    }

    #[test]
    fn rejects_what_is_not_a_bench_message() {
        assert!(decode(b"").unwrap_err().starts_with("not a bench message: b'' (0 bytes)"));
        let mut bad_magic = encode(1, 2);
        bad_magic[2..6].copy_from_slice(b"XXXX");
        assert_eq!(decode(&bad_magic).unwrap_err(), "bad magic b'XXXX'");
        assert!(decode(&encode(1, 2)[..99]).is_err());
    }

    #[test]
    fn tick_frames_carry_every_message_in_order() {
        let frame = tick(&[encode(7, 1007), encode(8, 1008), encode(9, 1009)]);
        let mut out = Vec::new();
        decode_tick(&frame, &mut out).unwrap();
        let seqs: Vec<u64> = out.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [7, 8, 9]);
        assert_eq!(out[2].sent_ns, 1009);
        out.clear();
        decode_tick(&tick(&[]), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn rejects_other_frames() {
        let mut out = Vec::new();
        // {"t": "ack"}
        let ack = [0x81, 0xa1, b't', 0xa3, b'a', b'c', b'k'];
        assert!(decode_tick(&ack, &mut out).unwrap_err().starts_with("not a tick frame"));
        // [1, 2]
        assert!(decode_tick(&[0x92, 1, 2], &mut out).unwrap_err().starts_with("not a tick frame"));
        // {"t": "tick", "e": "nope"}
        let mut not_list = vec![0x82];
        not_list.extend(str_head("t"));
        not_list.extend(str_head("tick"));
        not_list.extend(str_head("e"));
        not_list.extend(str_head("nope"));
        assert_eq!(decode_tick(&not_list, &mut out).unwrap_err(), "tick frame 'e' is str, not a list");
        // {"t": "tick", "e": [5]}
        let mut int_event = not_list[..10].to_vec();
        int_event.extend([0x91, 5]);
        assert_eq!(decode_tick(&int_event, &mut out).unwrap_err(), "tick event is int, not bin or str");
        assert!(decode_tick(&[0xc1], &mut out).unwrap_err().starts_with("tick frame is not msgpack"));
        let mut extra = tick(&[]);
        extra.push(0);
        assert!(decode_tick(&extra, &mut out).unwrap_err().contains("extra data"));
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(python_repr(b"\xc4b LCB1\x00'\\\n"), r#"b"\xc4b LCB1\x00'\\\n""#);
        assert_eq!(python_repr(b"a'\""), r#"b'a\'"'"#);
    }
}
