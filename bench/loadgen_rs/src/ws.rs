//! The client side of RFC 6455 that a viewer needs: the upgrade, server frames, masked replies.

use base64::Engine;
use sha1::{Digest, Sha1};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// Larger messages are refused rather than buffered: a full-ladder tick frame is ~20 KB.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// RFC 6455 §1.3.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The upgrade request for `key` (16 bytes, base64), no extensions offered.
pub fn upgrade_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

pub fn new_key(random: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(random)
}

pub fn accept_for(key: &str) -> String {
    let mut hash = Sha1::new();
    hash.update(key.as_bytes());
    hash.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(hash.finalize())
}

/// `Ok(None)` until the response head is complete; then its length (frames may follow it).
pub fn check_upgrade_response(buf: &[u8], expected_accept: &str) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(format!("bad upgrade response: {err}")),
    };
    if response.code != Some(101) {
        return Err(format!("upgrade refused: {} {}", response.code.unwrap_or(0), response.reason.unwrap_or("")));
    }
    let header = |name: &str| {
        response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    if !header("upgrade").is_some_and(|value| value.eq_ignore_ascii_case("websocket")) {
        return Err("upgrade response without `Upgrade: websocket`".to_owned());
    }
    if header("sec-websocket-accept").as_deref() != Some(expected_accept) {
        return Err(format!("wrong Sec-WebSocket-Accept {:?}", header("sec-websocket-accept")));
    }
    if let Some(extensions) = header("sec-websocket-extensions") {
        return Err(format!("server chose extensions we did not offer: {extensions}"));
    }
    Ok(Some(length))
}

#[derive(Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

impl FrameHead {
    pub fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Frame(FrameHead),
    /// Not enough bytes yet; at least this many are needed in all (when the header says).
    Incomplete(usize),
    Invalid(&'static str),
}

/// The head of the server frame at the start of `buf`, validated as a client must (§5.1, §5.2, §5.5).
pub fn parse_frame(buf: &[u8]) -> Parsed {
    if buf.len() < 2 {
        return Parsed::Incomplete(2);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
    if b0 & 0x70 != 0 {
        return Parsed::Invalid("reserved bits set without a negotiated extension");
    }
    if b1 & 0x80 != 0 {
        return Parsed::Invalid("masked frame from the server");
    }
    let control = opcode & 0x08 != 0;
    if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Parsed::Invalid("reserved opcode");
    }
    let (header_len, payload_len) = match b1 & 0x7f {
        126 if buf.len() < 4 => return Parsed::Incomplete(4),
        126 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() < 10 => return Parsed::Incomplete(10),
        127 => {
            let mut length = [0u8; 8];
            length.copy_from_slice(&buf[2..10]);
            match usize::try_from(u64::from_be_bytes(length)) {
                Ok(length) if length <= MAX_MESSAGE_BYTES => (10, length),
                _ => return Parsed::Invalid("frame larger than the 64 MiB this client buffers"),
            }
        }
        short => (2, usize::from(short)),
    };
    if control && (!fin || payload_len > 125) {
        return Parsed::Invalid("fragmented or oversized control frame");
    }
    let head = FrameHead { fin, opcode, header_len, payload_len };
    if buf.len() < head.total_len() {
        return Parsed::Incomplete(head.total_len());
    }
    Parsed::Frame(head)
}

/// A masked client frame (FIN set) carrying `payload` (≤ 125 bytes: pong and close only).
pub fn client_control_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    debug_assert!(payload.len() <= 125);
    let mut frame = Vec::with_capacity(6 + payload.len());
    frame.push(0x80 | opcode);
    frame.push(0x80 | payload.len() as u8);
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn upgrade_response_is_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = accept_for(key);
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let mut good = head.clone().into_bytes();
        good.extend_from_slice(&[0x82, 0x00]); // a frame right behind the head
        assert_eq!(check_upgrade_response(&good, &accept), Ok(Some(head.len())));
        assert_eq!(check_upgrade_response(&good[..30], &accept), Ok(None));
        assert!(check_upgrade_response(b"HTTP/1.1 404 Not Found\r\n\r\n", &accept).unwrap_err().contains("404"));
        let wrong = head.replace(&accept, "AAAA");
        assert!(check_upgrade_response(wrong.as_bytes(), &accept).unwrap_err().contains("Accept"));
        let deflate = head.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        assert!(check_upgrade_response(deflate.as_bytes(), &accept).unwrap_err().contains("extensions"));
    }

    #[test]
    fn parses_all_three_length_forms() {
        assert_eq!(
            parse_frame(&[0x82, 0x02, 1, 2]),
            Parsed::Frame(FrameHead { fin: true, opcode: OP_BINARY, header_len: 2, payload_len: 2 })
        );
        let mut medium = vec![0x02, 126, 0x01, 0x00];
        assert_eq!(parse_frame(&medium), Parsed::Incomplete(260));
        medium.resize(260, 0);
        assert_eq!(
            parse_frame(&medium),
            Parsed::Frame(FrameHead { fin: false, opcode: OP_BINARY, header_len: 4, payload_len: 256 })
        );
        let long = [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(parse_frame(&long), Parsed::Incomplete(10 + 65536));
        assert_eq!(parse_frame(&long[..5]), Parsed::Incomplete(10));
        assert_eq!(parse_frame(&[0x82]), Parsed::Incomplete(2));
    }

    #[test]
    fn refuses_what_a_server_must_not_send() {
        assert!(matches!(parse_frame(&[0xc2, 0x00]), Parsed::Invalid(_)), "RSV1 without deflate");
        assert!(matches!(parse_frame(&[0x82, 0x80, 0, 0, 0, 0]), Parsed::Invalid(_)), "masked");
        assert!(matches!(parse_frame(&[0x83, 0x00]), Parsed::Invalid(_)), "reserved opcode");
        assert!(matches!(parse_frame(&[0x09, 0x00]), Parsed::Invalid(_)), "fragmented ping");
        assert!(matches!(parse_frame(&[0x89, 126, 0, 126]), Parsed::Invalid(_)), "long ping");
        let huge = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(parse_frame(&huge), Parsed::Invalid(_)));
    }

    #[test]
    fn control_frames_are_masked() {
        let frame = client_control_frame(OP_CLOSE, &[0x03, 0xe9], [1, 2, 3, 4]);
        assert_eq!(frame, [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe9 ^ 2]);
    }
}
