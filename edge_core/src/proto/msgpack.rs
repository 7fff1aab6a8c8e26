//! The msgpack subset the edge writes (tick frames) and a validator for what clients send.

/// Deepest nesting accepted from a client; deeper values are refused, not recursed into.
pub const MAX_DEPTH: usize = 32;

pub fn write_nil(out: &mut Vec<u8>) {
    out.push(0xC0);
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { 0xC3 } else { 0xC2 });
}

pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
    } else if let Ok(v) = u8::try_from(v) {
        out.extend_from_slice(&[0xCC, v]);
    } else if let Ok(v) = u16::try_from(v) {
        out.push(0xCD);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        out.push(0xCE);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xCF);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn write_len(out: &mut Vec<u8>, len: usize, fix: Option<(u8, usize)>, codes: [u8; 3]) {
    match fix {
        Some((base, limit)) if len < limit => out.push(base | len as u8),
        _ => {
            if let (Ok(l), true) = (u8::try_from(len), codes[0] != 0) {
                out.extend_from_slice(&[codes[0], l]);
            } else if let Ok(l) = u16::try_from(len) {
                out.push(codes[1]);
                out.extend_from_slice(&l.to_be_bytes());
            } else {
                out.push(codes[2]);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
    }
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_len(out, s.len(), Some((0xA0, 32)), [0xD9, 0xDA, 0xDB]);
    out.extend_from_slice(s.as_bytes());
}

pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    write_len(out, b.len(), None, [0xC4, 0xC5, 0xC6]);
    out.extend_from_slice(b);
}

pub fn write_array_len(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, Some((0x90, 16)), [0, 0xDC, 0xDD]);
}

pub fn write_map_len(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, Some((0x80, 16)), [0, 0xDE, 0xDF]);
}

/// Why a client's bytes are not one msgpack value.
#[derive(Debug, PartialEq, Eq)]
pub enum MsgpackError {
    Truncated,
    TrailingBytes,
    TooDeep,
    /// 0xC1, the one byte msgpack never uses.
    BadMarker,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self.pos.checked_add(n).ok_or(MsgpackError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(MsgpackError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, MsgpackError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
}

/// Skip one marker and its scalar payload; returns how many child values follow it.
fn skip_one(r: &mut Reader<'_>) -> Result<u64, MsgpackError> {
    let m = r.take(1)?[0];
    Ok(match m {
        0x00..=0x7F | 0xE0..=0xFF | 0xC0 | 0xC2 | 0xC3 => 0,
        0x80..=0x8F => u64::from(m & 0x0F) * 2,
        0x90..=0x9F => u64::from(m & 0x0F),
        0xA0..=0xBF => {
            r.take(usize::from(m & 0x1F))?;
            0
        }
        0xC1 => return Err(MsgpackError::BadMarker),
        0xC4 | 0xD9 => sized(r, 1, 0)?,
        0xC5 | 0xDA => sized(r, 2, 0)?,
        0xC6 | 0xDB => sized(r, 4, 0)?,
        0xC7 => sized(r, 1, 1)?,
        0xC8 => sized(r, 2, 1)?,
        0xC9 => sized(r, 4, 1)?,
        0xCA | 0xCE | 0xD2 => fixed(r, 4)?,
        0xCB | 0xCF | 0xD3 => fixed(r, 8)?,
        0xCC | 0xD0 => fixed(r, 1)?,
        0xCD | 0xD1 => fixed(r, 2)?,
        0xD4 => fixed(r, 2)?,
        0xD5 => fixed(r, 3)?,
        0xD6 => fixed(r, 5)?,
        0xD7 => fixed(r, 9)?,
        0xD8 => fixed(r, 17)?,
        0xDC => r.be(2)?,
        0xDD => r.be(4)?,
        0xDE => r.be(2)? * 2,
        0xDF => r.be(4)? * 2,
    })
}

fn fixed(r: &mut Reader<'_>, n: usize) -> Result<u64, MsgpackError> {
    r.take(n)?;
    Ok(0)
}

fn sized(r: &mut Reader<'_>, len_bytes: usize, ext_type: usize) -> Result<u64, MsgpackError> {
    let len = r.be(len_bytes)? as usize;
    r.take(ext_type + len)?;
    Ok(0)
}

/// Check that `buf` is exactly one msgpack value nested at most `MAX_DEPTH` deep, without
/// allocating (an explicit stack of remaining-children counts).
pub fn validate(buf: &[u8]) -> Result<(), MsgpackError> {
    let mut r = Reader { buf, pos: 0 };
    let mut stack: [u64; MAX_DEPTH + 1] = [0; MAX_DEPTH + 1];
    let mut depth = 0usize;
    stack[0] = 1;
    loop {
        while depth > 0 && stack[depth] == 0 {
            depth -= 1;
        }
        if depth == 0 && stack[0] == 0 {
            break;
        }
        stack[depth] -= 1;
        let children = skip_one(&mut r)?;
        if children > 0 {
            // Each child takes at least one byte: a count beyond the input is a lie.
            if children > (buf.len() - r.pos) as u64 {
                return Err(MsgpackError::Truncated);
            }
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(MsgpackError::TooDeep);
            }
            stack[depth] = children;
        }
    }
    if r.pos != buf.len() {
        return Err(MsgpackError::TrailingBytes);
    }
    Ok(())
}

/// A decoder and encoder of whole values, for tests only: the product writes with the `write_*`
/// functions and only validates what clients send.
#[cfg(test)]
pub(crate) mod value {
    use super::*;

    /// A decoded value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Nil,
        Bool(bool),
        Int(i128),
        F64(f64),
        Str(String),
        Bin(Vec<u8>),
        Array(Vec<Value>),
        Map(Vec<(Value, Value)>),
        Ext(i8, Vec<u8>),
    }

    /// Decode exactly one value.
    pub fn decode(buf: &[u8]) -> Result<Value, MsgpackError> {
        validate(buf)?;
        let mut r = Reader { buf, pos: 0 };
        read_value(&mut r)
    }

    fn read_value(r: &mut Reader<'_>) -> Result<Value, MsgpackError> {
        let m = r.take(1)?[0];
        let str_of = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(match m {
            0x00..=0x7F => Value::Int(i128::from(m)),
            0xE0..=0xFF => Value::Int(i128::from(m as i8)),
            0xC0 => Value::Nil,
            0xC2 => Value::Bool(false),
            0xC3 => Value::Bool(true),
            0x80..=0x8F => read_map(r, u64::from(m & 0x0F))?,
            0x90..=0x9F => read_array(r, u64::from(m & 0x0F))?,
            0xA0..=0xBF => Value::Str(str_of(r.take(usize::from(m & 0x1F))?)),
            0xC4..=0xC6 => {
                let n = r.be(1 << (m - 0xC4))? as usize;
                Value::Bin(r.take(n)?.to_vec())
            }
            0xD9..=0xDB => {
                let n = r.be(1 << (m - 0xD9))? as usize;
                Value::Str(str_of(r.take(n)?))
            }
            0xC7..=0xC9 => {
                let n = r.be(1 << (m - 0xC7))? as usize;
                let t = r.take(1)?[0] as i8;
                Value::Ext(t, r.take(n)?.to_vec())
            }
            0xCA => Value::F64(f64::from(f32::from_bits(r.be(4)? as u32))),
            0xCB => Value::F64(f64::from_bits(r.be(8)?)),
            0xCC..=0xCF => Value::Int(i128::from(r.be(1 << (m - 0xCC))?)),
            0xD0 => Value::Int(i128::from(r.be(1)? as u8 as i8)),
            0xD1 => Value::Int(i128::from(r.be(2)? as u16 as i16)),
            0xD2 => Value::Int(i128::from(r.be(4)? as u32 as i32)),
            0xD3 => Value::Int(i128::from(r.be(8)? as i64)),
            0xD4..=0xD8 => {
                let t = r.take(1)?[0] as i8;
                Value::Ext(t, r.take(1 << (m - 0xD4))?.to_vec())
            }
            0xDC | 0xDD => {
                let n = r.be(if m == 0xDC { 2 } else { 4 })?;
                read_array(r, n)?
            }
            0xDE | 0xDF => {
                let n = r.be(if m == 0xDE { 2 } else { 4 })?;
                read_map(r, n)?
            }
            0xC1 => return Err(MsgpackError::BadMarker),
        })
    }

    fn read_array(r: &mut Reader<'_>, n: u64) -> Result<Value, MsgpackError> {
        (0..n).map(|_| read_value(r)).collect::<Result<_, _>>().map(Value::Array)
    }

    fn read_map(r: &mut Reader<'_>, n: u64) -> Result<Value, MsgpackError> {
        (0..n).map(|_| Ok((read_value(r)?, read_value(r)?))).collect::<Result<_, _>>().map(Value::Map)
    }

    /// Encode a value.
    pub fn encode(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Nil => write_nil(out),
            Value::Bool(b) => write_bool(out, *b),
            Value::Int(i) if *i >= 0 => write_uint(out, *i as u64),
            Value::Int(i) => {
                if *i >= -32 {
                    out.push(*i as i8 as u8);
                } else {
                    out.push(0xD3);
                    out.extend_from_slice(&(*i as i64).to_be_bytes());
                }
            }
            Value::F64(f) => {
                out.push(0xCB);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Value::Str(s) => write_str(out, s),
            Value::Bin(b) => write_bin(out, b),
            Value::Array(a) => {
                write_array_len(out, a.len());
                a.iter().for_each(|x| encode(x, out));
            }
            Value::Map(m) => {
                write_map_len(out, m.len());
                for (k, x) in m {
                    encode(k, out);
                    encode(x, out);
                }
            }
            Value::Ext(t, d) => {
                write_len(out, d.len(), None, [0xC7, 0xC8, 0xC9]);
                // Ext puts the type byte after the length.
                out.push(*t as u8);
                out.extend_from_slice(d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::value::{decode, encode, Value};
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| Value::Int(i128::from(i))),
            any::<u64>().prop_map(|i| Value::Int(i128::from(i))),
            any::<f64>().prop_filter("nan", |f| !f.is_nan()).prop_map(Value::F64),
            ".{0,40}".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bin),
        ];
        leaf.prop_recursive(4, 64, 20, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..18).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in value()) {
            let mut out = Vec::new();
            encode(&v, &mut out);
            prop_assert_eq!(validate(&out), Ok(()));
            prop_assert_eq!(decode(&out).unwrap(), v);
            for cut in 0..out.len() {
                prop_assert!(validate(&out[..cut]).is_err());
            }
            out.push(0);
            prop_assert_eq!(validate(&out), Err(MsgpackError::TrailingBytes));
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = validate(&data);
            let _ = decode(&data);
        }
    }

    #[test]
    fn refuses_lies_and_depth() {
        assert_eq!(validate(&[0xDD, 0xFF, 0xFF, 0xFF, 0xFF]), Err(MsgpackError::Truncated));
        assert_eq!(validate(&[0xC1]), Err(MsgpackError::BadMarker));
        assert_eq!(validate(&[0x91; 40]), Err(MsgpackError::TooDeep));
        assert_eq!(validate(&[]), Err(MsgpackError::Truncated));
    }
}
