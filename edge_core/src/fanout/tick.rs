//! Tick frames: one msgpack message per stream per tick, framed and compressed once.

use crate::proto::deflate::Deflater;
use crate::proto::frame::{self, OP_BINARY};
use crate::proto::msgpack as mp;

/// One tick's frame, shared by every subscriber on every thread (never copied per connection).
#[derive(Debug)]
pub struct SharedFrame {
    /// The whole WebSocket frame (header + payload), uncompressed.
    pub plain: Box<[u8]>,
    /// The same message as a compressed frame (RSV1 set), when it was worth compressing.
    pub deflated: Option<Box<[u8]>>,
    /// Stream events inside, for the `deliveries` counter (0 for a direct message: an ack or a
    /// snapshot is not a stream event).
    pub events: u32,
    /// Priority frames are never skipped for slow consumers.
    pub priority: bool,
}

impl SharedFrame {
    /// The bytes a connection should get, given whether it takes shared compressed frames.
    pub fn bytes_for(&self, deflate: bool) -> &[u8] {
        match (&self.deflated, deflate) {
            (Some(d), true) => d,
            _ => &self.plain,
        }
    }

    /// Frame an arbitrary message once (a `send_many` to many connections).
    pub fn message(payload: &[u8], binary: bool, deflater: Option<(&mut Deflater, usize)>) -> Self {
        let opcode = if binary { OP_BINARY } else { frame::OP_TEXT };
        Self {
            plain: frame::encode_frame(opcode, false, payload).into_boxed_slice(),
            deflated: compress_frame(opcode, payload, deflater),
            events: 0,
            priority: true,
        }
    }
}

fn compress_frame(opcode: u8, payload: &[u8], deflater: Option<(&mut Deflater, usize)>) -> Option<Box<[u8]>> {
    let (d, min) = deflater?;
    if payload.len() < min {
        return None;
    }
    let mut z = Vec::with_capacity(payload.len() / 2 + 16);
    d.compress(payload, &mut z);
    // Incompressible payloads go plain: the header bit costs the client an inflate for nothing.
    if z.len() >= payload.len() {
        return None;
    }
    Some(frame::encode_frame(opcode, true, &z).into_boxed_slice())
}

/// The contents of one tick for one stream.
pub struct TickParts<'a> {
    pub stream: &'a str,
    pub seq: u64,
    /// Concatenated msgpack events (each one whole value), `count` of them.
    pub events: &'a [u8],
    pub count: u32,
    /// Latest-value slots: (key, msgpack value).
    pub state: &'a [(Box<str>, Box<[u8]>)],
    pub priority: bool,
}

/// `{"t": "tick", "s": stream, "q": seq, "e": [..], ["st": {..}], ["p": true]}` as msgpack.
pub fn encode_tick(p: &TickParts<'_>) -> Vec<u8> {
    let state_len: usize = p.state.iter().map(|(k, v)| k.len() + v.len() + 5).sum();
    let mut out = Vec::with_capacity(32 + p.stream.len() + p.events.len() + state_len);
    let fields = 4 + usize::from(!p.state.is_empty()) + usize::from(p.priority);
    mp::write_map_len(&mut out, fields);
    mp::write_str(&mut out, "t");
    mp::write_str(&mut out, "tick");
    mp::write_str(&mut out, "s");
    mp::write_str(&mut out, p.stream);
    mp::write_str(&mut out, "q");
    mp::write_uint(&mut out, p.seq);
    mp::write_str(&mut out, "e");
    mp::write_array_len(&mut out, p.count as usize);
    out.extend_from_slice(p.events);
    if !p.state.is_empty() {
        mp::write_str(&mut out, "st");
        mp::write_map_len(&mut out, p.state.len());
        for (k, v) in p.state {
            mp::write_str(&mut out, k);
            out.extend_from_slice(v);
        }
    }
    if p.priority {
        mp::write_str(&mut out, "p");
        mp::write_bool(&mut out, true);
    }
    out
}

/// Build the shared frame for a tick: encode once, compress once.
pub fn build(p: &TickParts<'_>, deflater: Option<(&mut Deflater, usize)>) -> SharedFrame {
    let payload = encode_tick(p);
    SharedFrame {
        plain: frame::encode_frame(OP_BINARY, false, &payload).into_boxed_slice(),
        deflated: compress_frame(OP_BINARY, &payload, deflater),
        events: p.count,
        priority: p.priority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::deflate::Inflater;
    use crate::proto::msgpack::value::{decode, Value};

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn tick_layout_and_compression() {
        let mut events = Vec::new();
        for i in 0..50u64 {
            mp::write_map_len(&mut events, 1);
            mp::write_str(&mut events, "id");
            mp::write_uint(&mut events, i);
        }
        let state = vec![("viewers".into(), vec![0xCD, 0x3A, 0x98].into_boxed_slice())];
        let parts = TickParts { stream: "s1", seq: 7, events: &events, count: 50, state: &state, priority: false };
        let mut d = Deflater::new(3);
        let f = build(&parts, Some((&mut d, 64)));
        let h = frame::parse_header(&f.plain).unwrap().unwrap();
        let v = decode(&f.plain[h.header_len..]).unwrap();
        let Value::Map(m) = v else { panic!() };
        assert_eq!(m[0], (s("t"), s("tick")));
        assert_eq!(m[1], (s("s"), s("s1")));
        assert_eq!(m[2], (s("q"), Value::Int(7)));
        let Value::Array(ev) = &m[3].1 else { panic!() };
        assert_eq!(ev.len(), 50);
        assert_eq!(m[4].1, Value::Map(vec![(s("viewers"), Value::Int(15000))]));
        let z = f.deflated.as_ref().expect("compressible");
        let zh = frame::parse_header(z).unwrap().unwrap();
        assert!(zh.rsv1 && z.len() < f.plain.len());
        let mut out = Vec::new();
        Inflater::default().inflate(&z[zh.header_len..], &mut out, 1 << 20).unwrap();
        assert_eq!(out, &f.plain[h.header_len..]);
    }
}
