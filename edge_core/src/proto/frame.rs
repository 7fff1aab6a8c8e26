//! RFC 6455 §5.2 frame headers: parse (client → server) and encode (server → client).

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A parsed frame header. `len` is the payload length; the payload starts at `header_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
    pub header_len: usize,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// A header that no policy could accept: a 64-bit length with the top bit set (§5.2).
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedLength;

/// Parse the header at the start of `buf`; `Ok(None)` means more bytes are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, MalformedLength> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(MalformedLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv2: b0 & 0x20 != 0,
        rsv3: b0 & 0x10 != 0,
        opcode: b0 & 0x0F,
        mask,
        len,
        header_len: pos,
    }))
}

/// Header bytes for a frame of `len` payload bytes: 2, 4 or 10 bytes, plus 4 when masked.
pub fn header_len(len: usize, masked: bool) -> usize {
    let base = if len < 126 {
        2
    } else if len <= 0xFFFF {
        4
    } else {
        10
    };
    base + if masked { 4 } else { 0 }
}

/// Append a frame header; server frames pass `mask: None`.
pub fn write_header(out: &mut Vec<u8>, fin: bool, rsv1: bool, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    let b0 = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | (opcode & 0x0F);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    if len < 126 {
        // len < 126 fits the 7-bit field.
        out.push(mbit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mbit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

/// A whole unmasked server frame.
pub fn encode_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len(), false) + payload.len());
    write_header(&mut out, true, rsv1, opcode, payload.len(), None);
    out.extend_from_slice(payload);
    out
}

/// A whole masked frame as a client sends it (tests, benchmarks, the Python test surface).
pub fn encode_client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len(), true) + payload.len());
    write_header(&mut out, fin, rsv1, opcode, payload.len(), Some(mask));
    let start = out.len();
    out.extend_from_slice(payload);
    super::mask::apply_mask(&mut out[start..], mask, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn length_forms() {
        for (len, hl) in [(0usize, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let f = encode_frame(OP_BINARY, false, &vec![7u8; len]);
            let h = parse_header(&f).unwrap().unwrap();
            assert_eq!((h.len as usize, h.header_len), (len, hl));
            assert_eq!(header_len(len, false), hl);
        }
    }

    #[test]
    fn top_bit_length_is_malformed() {
        let mut f = vec![0x82, 0xFF];
        f.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(parse_header(&f), Err(MalformedLength));
    }

    proptest! {
        #[test]
        fn header_round_trip(fin in any::<bool>(), rsv1 in any::<bool>(), opcode in 0u8..16,
                             len in prop_oneof![0usize..130, 65530usize..65540, 70000usize..70001],
                             mask in proptest::option::of(any::<[u8; 4]>())) {
            let mut out = Vec::new();
            write_header(&mut out, fin, rsv1, opcode, len, mask);
            let h = parse_header(&out).unwrap().unwrap();
            prop_assert_eq!(h.header_len, out.len());
            prop_assert_eq!(h.header_len, header_len(len, mask.is_some()));
            prop_assert_eq!((h.fin, h.rsv1, h.opcode, h.mask, h.len), (fin, rsv1, opcode, mask, len as u64));
            for cut in 0..out.len() {
                prop_assert_eq!(parse_header(&out[..cut]), Ok(None));
            }
        }
    }
}
