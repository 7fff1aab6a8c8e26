//! msgpack validation of what clients send (`proto::msgpack::validate`), two ways:
//! 1. raw bytes against an independent recursive reference validator written from the spec;
//! 2. values built from the input with the edge's own `write_*` encoders (every size class,
//!    nesting up to past `MAX_DEPTH`): valid iff within the depth limit, every strict prefix is
//!    refused, and a trailing byte is `TrailingBytes`.
#![no_main]

use edge_core::proto::msgpack::{self, MsgpackError, MAX_DEPTH};
use libfuzzer_sys::fuzz_target;

/// The reference: exactly one value, non-empty containers nested at most `MAX_DEPTH` deep, 0xC1
/// never.
fn ref_value(buf: &[u8], pos: &mut usize, depth: usize) -> Result<(), ()> {
    fn take<'a>(buf: &'a [u8], pos: &mut usize, n: u64) -> Result<&'a [u8], ()> {
        let n = usize::try_from(n).map_err(|_| ())?;
        let end = pos.checked_add(n).ok_or(())?;
        let s = buf.get(*pos..end).ok_or(())?;
        *pos = end;
        Ok(s)
    }
    fn uint(buf: &[u8], pos: &mut usize, n: u64) -> Result<u64, ()> {
        Ok(take(buf, pos, n)?.iter().fold(0, |a, b| (a << 8) | u64::from(*b)))
    }
    let m = take(buf, pos, 1)?[0];
    let (items, per_item) = match m {
        0x00..=0x7F | 0xE0..=0xFF | 0xC0 | 0xC2 | 0xC3 => return Ok(()),
        0xC1 => return Err(()),
        0x80..=0x8F => (u64::from(m & 0x0F), 2),
        0x90..=0x9F => (u64::from(m & 0x0F), 1),
        0xDC => (uint(buf, pos, 2)?, 1),
        0xDD => (uint(buf, pos, 4)?, 1),
        0xDE => (uint(buf, pos, 2)?, 2),
        0xDF => (uint(buf, pos, 4)?, 2),
        0xA0..=0xBF => return take(buf, pos, u64::from(m & 0x1F)).map(drop),
        // str8/16/32 and bin8/16/32: a 1, 2 or 4-byte length, then the bytes.
        0xD9 | 0xC4 => return uint(buf, pos, 1).and_then(|n| take(buf, pos, n)).map(drop),
        0xDA | 0xC5 => return uint(buf, pos, 2).and_then(|n| take(buf, pos, n)).map(drop),
        0xDB | 0xC6 => return uint(buf, pos, 4).and_then(|n| take(buf, pos, n)).map(drop),
        // ext8/16/32: length, type byte, data.
        0xC7 => return uint(buf, pos, 1).and_then(|n| take(buf, pos, n + 1)).map(drop),
        0xC8 => return uint(buf, pos, 2).and_then(|n| take(buf, pos, n + 1)).map(drop),
        0xC9 => return uint(buf, pos, 4).and_then(|n| take(buf, pos, n + 1)).map(drop),
        // fixext 1/2/4/8/16: type byte + data.
        0xD4 => return take(buf, pos, 2).map(drop),
        0xD5 => return take(buf, pos, 3).map(drop),
        0xD6 => return take(buf, pos, 5).map(drop),
        0xD7 => return take(buf, pos, 9).map(drop),
        0xD8 => return take(buf, pos, 17).map(drop),
        // float32/64, uint8-64, int8-64.
        0xCA | 0xCE | 0xD2 => return take(buf, pos, 4).map(drop),
        0xCB | 0xCF | 0xD3 => return take(buf, pos, 8).map(drop),
        0xCC | 0xD0 => return take(buf, pos, 1).map(drop),
        0xCD | 0xD1 => return take(buf, pos, 2).map(drop),
    };
    // An empty container has nothing to recurse into: it adds no depth (as `validate` counts).
    if items > 0 && depth + 1 > MAX_DEPTH {
        return Err(());
    }
    // Every item takes at least one byte, so a lying count fails within `buf.len()` steps.
    for _ in 0..items * per_item {
        ref_value(buf, pos, depth + 1)?;
    }
    Ok(())
}

fn reference(buf: &[u8]) -> bool {
    let mut pos = 0;
    ref_value(buf, &mut pos, 0).is_ok() && pos == buf.len()
}

/// Builds a value from input bytes with the edge's encoders; returns its container depth.
struct Gen<'a> {
    input: &'a [u8],
    out: Vec<u8>,
    budget: usize,
    long_used: bool,
}

/// Lengths on both sides of every size-class boundary (fix/8/16/32-bit forms).
const LENGTHS: [usize; 12] = [0, 1, 15, 16, 17, 31, 32, 255, 256, 65535, 65536, 70000];

impl Gen<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.input.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.input = rest;
        b
    }

    /// One of the first `choices` LENGTHS; one long one per value, then only short ones (speed).
    fn length(&mut self, choices: usize) -> usize {
        let n = LENGTHS[usize::from(self.byte()) % choices];
        if self.long_used {
            return n.min(16);
        }
        self.long_used = n > 256;
        n
    }

    /// `n` values; once the budget is spent, the rest are nil (a long array costs a memset).
    fn values(&mut self, n: usize) -> usize {
        let mut deepest = 0;
        for i in 0..n {
            if self.budget == 0 {
                self.out.resize(self.out.len() + n - i, 0xC0);
                break;
            }
            deepest = deepest.max(self.value());
        }
        deepest
    }

    fn value(&mut self) -> usize {
        self.budget = self.budget.saturating_sub(1);
        let op = if self.budget == 0 { 0 } else { self.byte() };
        match op % 12 {
            0 => msgpack::write_nil(&mut self.out),
            1 => msgpack::write_bool(&mut self.out, op & 0x80 != 0),
            2 => {
                let shift = u32::from(self.byte() % 64);
                let (lo, hi) = (self.byte(), self.byte());
                let v = u64::from_le_bytes([lo, hi, 0, 0, 0, 0, 0, 1]) >> shift;
                msgpack::write_uint(&mut self.out, v);
            }
            3 | 4 => {
                let n = self.length(LENGTHS.len());
                let fill = char::from(b'a' + self.byte() % 26);
                if op % 12 == 3 {
                    msgpack::write_str(&mut self.out, &fill.to_string().repeat(n));
                } else {
                    msgpack::write_bin(&mut self.out, &vec![fill as u8; n]);
                }
            }
            5 | 6 => {
                // Fix and 16-bit forms; the 32-bit form (65 536 children) would cost ~50 ms per
                // run under the sanitizer, and raw inputs reach its parsing anyway.
                let n =
                    if op & 0x80 != 0 { LENGTHS[usize::from(self.byte()) % 5] } else { usize::from(self.byte() % 4) };
                let deepest = if op % 12 == 5 {
                    msgpack::write_array_len(&mut self.out, n);
                    self.values(n)
                } else {
                    msgpack::write_map_len(&mut self.out, n);
                    self.values(2 * n)
                };
                return if n == 0 { 0 } else { deepest + 1 };
            }
            7 => {
                // A chain of one-element arrays around a value: nesting to just past the limit.
                let levels = usize::from(self.byte()) % (MAX_DEPTH + 4);
                for _ in 0..levels {
                    msgpack::write_array_len(&mut self.out, 1);
                }
                return levels + self.value();
            }
            // Scalars the edge never writes but clients may: negative fixint, float64, int16, fixext4.
            8 => {
                let b = self.byte();
                self.out.push(0xE0 | b);
            }
            9 => {
                let b = self.byte();
                self.out.push(0xCB);
                self.out.extend_from_slice(&[b; 8]);
            }
            10 => {
                let (hi, lo) = (self.byte(), self.byte());
                self.out.extend_from_slice(&[0xD1, hi, lo]);
            }
            _ => {
                let t = self.byte();
                self.out.extend_from_slice(&[0xD6, t, 1, 2, 3, 4]);
            }
        }
        0
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. raw bytes: the validator and the reference agree.
    let got = msgpack::validate(data);
    assert_eq!(got.is_ok(), reference(data), "validate {got:?} on {data:x?}");

    // 2. generated values.
    let mut g = Gen { input: data, out: Vec::new(), budget: 300, long_used: false };
    let depth = g.value();
    let mut out = g.out;
    let got = msgpack::validate(&out);
    if depth <= MAX_DEPTH {
        assert_eq!(got, Ok(()), "depth {depth}");
        assert!(reference(&out));
        // Strict prefixes: a sample (all of them would be quadratic on 70 000-byte strings).
        let cuts: Vec<usize> = if out.len() < 4096 {
            (0..out.len()).step_by((out.len() / 8).max(1)).collect()
        } else {
            vec![0, out.len() / 2]
        };
        for cut in cuts.into_iter().chain([out.len() - 1]) {
            assert!(msgpack::validate(&out[..cut]).is_err(), "prefix {cut} of {} accepted", out.len());
        }
        out.push(0xC0);
        assert_eq!(msgpack::validate(&out), Err(MsgpackError::TrailingBytes));
    } else {
        assert_eq!(got, Err(MsgpackError::TooDeep), "depth {depth}");
    }
});
