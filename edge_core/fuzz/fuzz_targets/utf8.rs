//! UTF-8 validation against `std::str::from_utf8` as the oracle: the streaming validator (text
//! split across frames at arbitrary points, failing fast), simdutf8 (the whole-message check the
//! codec uses) and close-frame reasons.
//!
//! Input: byte 0 = number of cut points (mod 8), then that many cut bytes, then the text.
#![no_main]

use edge_core::proto::close::{self, CloseError};
use edge_core::proto::utf8::Utf8Validator;
use libfuzzer_sys::fuzz_target;

/// What std says a prefix of a message fed so far may be: `true` while it can still become valid
/// UTF-8 (valid, or valid up to an unfinished last code point).
fn may_continue(prefix: &[u8]) -> bool {
    match std::str::from_utf8(prefix) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn check_streaming(text: &[u8], cut_bytes: &[u8]) {
    let mut cuts: Vec<usize> = cut_bytes.iter().map(|c| usize::from(*c) % (text.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(text.len());
    let mut v = Utf8Validator::default();
    let mut start = 0;
    for (i, &end) in cuts.iter().enumerate() {
        let last = i + 1 == cuts.len();
        let got = v.feed(&text[start..end], last).is_ok();
        // Fail fast: a piece is refused exactly when the message so far can no longer be valid;
        // the last piece is refused exactly when the whole message is not valid.
        let want = if last { std::str::from_utf8(&text[..end]).is_ok() } else { may_continue(&text[..end]) };
        assert_eq!(got, want, "piece {i} ending at {end} of {text:?} (cuts {cuts:?})");
        if !got {
            return;
        }
        start = end;
    }
    // A reset validator behaves like a fresh one.
    v.reset();
    assert_eq!(v.feed(text, true).is_ok(), std::str::from_utf8(text).is_ok());
}

fn check_simdutf8(text: &[u8]) {
    let std_result = std::str::from_utf8(text);
    assert_eq!(simdutf8::basic::from_utf8(text).is_ok(), std_result.is_ok());
    match (simdutf8::compat::from_utf8(text), std_result) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => assert_eq!((a.valid_up_to(), a.error_len()), (b.valid_up_to(), b.error_len())),
        (a, b) => panic!("simdutf8 {a:?} vs std {b:?}"),
    }
}

fn check_close_payload(payload: &[u8]) {
    let got = close::parse_payload(payload);
    match payload {
        [] => assert_eq!(got, Ok((1005, ""))),
        [_] => assert_eq!(got, Err(CloseError::BadCode)),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // RFC 6455 §7.4.1-2 and the IANA registry: what a peer may put on the wire.
            let code_ok = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            let want = if !code_ok {
                Err(CloseError::BadCode)
            } else {
                std::str::from_utf8(reason).map(|r| (code, r)).map_err(|_| CloseError::BadReason)
            };
            assert_eq!(got, want);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n % 8).min(rest.len());
    let (cut_bytes, text) = rest.split_at(n);
    check_streaming(text, cut_bytes);
    check_simdutf8(text);
    check_close_payload(text);
});
