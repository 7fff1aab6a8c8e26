//! Close-frame payloads and which close codes may be sent or received (RFC 6455 §7.4); the
//! codes themselves are in `codes`.

use super::codes::NO_STATUS;

/// Whether Python may ask the edge to close with `code`: 1000, 1001, 1007-1014, or 3000-4999
/// (1002 and 1003 are the codec's own to send; 1004-1006 and 1015 never go on the wire).
pub fn may_send(code: u16) -> bool {
    matches!(code, 1000 | 1001 | 1007..=1014 | 3000..=4999)
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4.1-2, IANA registry).
pub fn is_valid_received(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a close payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CloseError {
    /// One byte, or a code no peer may send.
    BadCode,
    /// The reason is not UTF-8.
    BadReason,
}

/// Parse a received close payload into (code, reason); an empty payload means 1005.
pub fn parse_payload(payload: &[u8]) -> Result<(u16, &str), CloseError> {
    match payload.len() {
        0 => Ok((NO_STATUS, "")),
        1 => Err(CloseError::BadCode),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_received(code) {
                return Err(CloseError::BadCode);
            }
            let reason = simdutf8::basic::from_utf8(&payload[2..]).map_err(|_| CloseError::BadReason)?;
            Ok((code, reason))
        }
    }
}

/// Close payload: code then reason, the reason cut at a char boundary to fit 125 bytes.
pub fn encode_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_valid_received(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!is_valid_received(bad), "{bad}");
        }
        for ok in [1000, 1001, 1007, 1011, 1014, 3000, 4008, 4999] {
            assert!(may_send(ok), "{ok}");
        }
        for bad in [0, 999, 1002, 1003, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!may_send(bad), "{bad}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(&[]), Ok((NO_STATUS, "")));
        assert_eq!(parse_payload(&[3]), Err(CloseError::BadCode));
        assert_eq!(parse_payload(&[0x03, 0xe8, b'o', b'k']), Ok((1000, "ok")));
        assert_eq!(parse_payload(&[0x03, 0xe8, 0xff]), Err(CloseError::BadReason));
        let long = "é".repeat(100);
        let p = encode_payload(1000, &long);
        assert!(p.len() <= 125);
        assert!(parse_payload(&p).is_ok());
    }
}
