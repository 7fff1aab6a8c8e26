//! permessage-deflate inflation with the size limit (`proto::deflate::Inflater`), two ways:
//! 1. arbitrary bytes as one message: never more than `max` bytes returned and never more
//!    than `max + 1` held (a bomb is refused at the first byte past the limit); the outcome
//!    (bytes, too big, corrupt) agrees with miniz_oxide, an independent inflater, run with a
//!    `max + 1`-byte output buffer;
//! 2. messages from the input compressed by a client that keeps its context (flate2, sync flush,
//!    tail stripped: RFC 7692 §7.2.1) and by the edge's own `Deflater`: each inflates back to
//!    itself when within `max`, and is refused `TooBig` when not.
//!
//! Input: byte 0 = limit choice and mode, byte 1 = compression level / separator, rest = data.
#![no_main]

use std::cell::RefCell;

use edge_core::proto::deflate::{Deflater, InflateError, Inflater};
use flate2::{Compress, Compression, FlushCompress};
use libfuzzer_sys::fuzz_target;
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// Limits around the interesting sizes: tiny, a control frame, the 64 KiB output step and the
/// edge's default `max_message_bytes` (64 KiB), and 256 KiB (past several growth steps; a
/// bomb to 1 MiB would cost ~4x the run time for no new path).
const LIMITS: [usize; 8] = [0, 1, 125, 1000, 65_535, 65_536, 100_000, 1 << 18];
const TAIL: [u8; 4] = [0, 0, 0xFF, 0xFF];

/// Compressors, inflaters and buffers made once per process and reset per run: a zlib stream
/// costs ~300 KiB of fresh pages, which would otherwise dominate the run time.
struct Reused {
    clients: Vec<Compress>,
    deflaters: Vec<Deflater>,
    inflaters: [Inflater; 2],
    miniz: Box<DecompressorOxide>,
    miniz_out: Vec<u8>,
}

thread_local! {
    static REUSED: RefCell<Reused> = RefCell::new(Reused {
        clients: (0..10).map(|l| Compress::new(Compression::new(l), false)).collect(),
        deflaters: (0..10).map(Deflater::new).collect(),
        inflaters: Default::default(),
        miniz: Box::default(),
        miniz_out: vec![0; LIMITS[LIMITS.len() - 1] + 1],
    });
}

/// miniz_oxide's verdict on one message, and the bytes it produced before that verdict.
fn oracle(r: &mut Reused, input: &[u8], max: usize) -> (Result<(), InflateError>, Vec<u8>) {
    let mut whole = input.to_vec();
    whole.extend_from_slice(&TAIL);
    let out = &mut r.miniz_out[..max + 1];
    let d = &mut *r.miniz;
    d.init();
    // HAS_MORE_INPUT: a message may stop anywhere in a block (zlib waits for more; without the
    // flag miniz reads past the end as zeros and may call a half-read header corrupt).
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF | inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
    let (status, _, written) = decompress(d, &whole, out, 0, flags);
    let out = out[..written].to_vec();
    let verdict = match status {
        // A message ends with a sync flush, not a final block: running out of input is its end.
        TINFLStatus::Done | TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput if written <= max => {
            Ok(())
        }
        TINFLStatus::Done | TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
            Err(InflateError::TooBig)
        }
        TINFLStatus::HasMoreOutput => Err(InflateError::TooBig),
        TINFLStatus::Failed | TINFLStatus::BadParam | TINFLStatus::Adler32Mismatch => Err(InflateError::Corrupt),
    };
    (verdict, out)
}

fn check_raw(r: &mut Reused, input: &[u8], max: usize, prefix: &[u8]) {
    let mut out = prefix.to_vec();
    let inflater = &mut r.inflaters[0];
    inflater.reset();
    let got = inflater.inflate(input, &mut out, max);
    assert_eq!(&out[..prefix.len()], prefix, "the inflater wrote over what was already in the buffer");
    let out = &out[prefix.len()..];
    match &got {
        Ok(()) => assert!(out.len() <= max, "{} bytes returned, limit {max}", out.len()),
        Err(InflateError::TooBig) => {
            // The buffer never grows past the limit + 1 (a bomb's excess is never held).
            assert_eq!(out.len(), max + 1, "bytes held past the limit {max}")
        }
        Err(InflateError::Corrupt) => {}
    }
    let (want, want_out) = oracle(r, input, max);
    match (got, want) {
        (Ok(()), Ok(())) => assert!(out == want_out, "inflated bytes differ from miniz_oxide"),
        (Err(a), Err(b)) if a == b => {}
        // Both inflaters refuse a broken stream, but not always at the same bit: zlib (like C
        // zlib) waits for the rest of a half-read dynamic-block header that miniz already calls
        // broken. Everything produced up to there must agree.
        (Ok(()), Err(InflateError::Corrupt)) | (Err(InflateError::Corrupt), Ok(())) => {
            let n = out.len().min(want_out.len());
            assert!(out[..n] == want_out[..n], "output before the refusal differs from miniz_oxide");
        }
        // Past the limit and broken: which is noticed first depends on how far each inflater
        // runs in one step; either answer closes the connection.
        (Err(_), Err(_)) if out.len().max(want_out.len()) > max => {
            let n = out.len().min(want_out.len());
            assert!(out[..n] == want_out[..n], "output before the refusal differs from miniz_oxide");
        }
        (a, b) => panic!("inflater {a:?} ({} bytes), miniz_oxide {b:?} ({} bytes)", out.len(), want_out.len()),
    }
}

fn check_round_trip(r: &mut Reused, messages: &[&[u8]], max: usize, level: usize) {
    // A client keeping its context across messages (no client_no_context_takeover).
    let client = &mut r.clients[level];
    client.reset();
    let [inflater, fresh] = &mut r.inflaters;
    inflater.reset();
    for m in messages {
        let mut z = Vec::with_capacity(m.len() + m.len() / 8 + 64);
        let before = client.total_in();
        loop {
            z.reserve(256);
            let done = (client.total_in() - before) as usize;
            client.compress_vec(&m[done..], &mut z, FlushCompress::Sync).expect("compress");
            // The flush is whole once all input is in and it stopped with room to spare.
            if (client.total_in() - before) as usize == m.len() && z.len() < z.capacity() {
                break;
            }
        }
        // An empty message right after a flush compresses to nothing (zlib has nothing to
        // flush); RFC 7692 §7.2.1 then appends an empty stored block, so it is sent as 0x00.
        // (An empty payload instead would leave the inflater inside a stored-block header.)
        if z.is_empty() && m.is_empty() {
            z.extend_from_slice(&[0x00, 0x00, 0x00, 0xFF, 0xFF]);
        }
        assert!(z.ends_with(&TAIL), "{z:x?}");
        z.truncate(z.len() - TAIL.len());
        let mut out = Vec::new();
        let got = inflater.inflate(&z, &mut out, max);
        if m.len() <= max {
            assert_eq!(got, Ok(()));
            assert!(out == *m, "context-takeover message did not round-trip");
        } else {
            assert_eq!(got, Err(InflateError::TooBig));
            // The connection is closed 1009 here; its inflater is not used again.
            return;
        }
    }
    // The edge's own compressor (no context, so any fresh or reset inflater reads each message).
    let d = &mut r.deflaters[level];
    for m in messages {
        let mut z = Vec::new();
        d.compress(m, &mut z);
        fresh.reset();
        let mut out = Vec::new();
        let got = fresh.inflate(&z, &mut out, max);
        if m.len() <= max {
            assert_eq!(got, Ok(()));
            assert!(out == *m, "Deflater message did not round-trip");
        } else {
            assert_eq!(got, Err(InflateError::TooBig));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, b1, rest @ ..] = data else { return };
    let max = LIMITS[usize::from(sel & 7)];
    if sel & 0x08 == 0 {
        let prefix: &[u8] = if sel & 0x10 != 0 { b"already here" } else { b"" };
        REUSED.with_borrow_mut(|r| check_raw(r, rest, max, prefix));
    } else {
        // Round trips compress every byte under the sanitizer: 100 000 is past every step.
        let max = max.min(100_000);
        // Messages separated by the byte b1; a repeat count stretches them past the limits.
        // One run in four stretched (compressing 100 KB twice dominates the run time).
        let repeat = [1, 1, 1, 1, 1, 1, 64, 8192][usize::from(sel >> 5)];
        // Just past the limit is enough to cross it; longer only slows the run.
        let len = (rest.len() * repeat).min(max + 2 * 1024);
        let long: Vec<u8> = rest.iter().copied().cycle().take(len).collect();
        let messages: Vec<&[u8]> = long.split(|b| *b == *b1).take(8).collect();
        REUSED.with_borrow_mut(|r| check_round_trip(r, &messages, max, usize::from(b1 % 10)));
    }
});
