//! A minimal msgpack walker: enough to find the events of a tick frame without building values.

/// What one msgpack value starts with. Containers report their length; their items follow.
#[derive(Debug, PartialEq, Eq)]
pub enum Head<'a> {
    Map(usize),
    Array(usize),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    /// nil, bool, int, float or ext: consumed whole.
    Scalar(&'static str),
}

impl Head<'_> {
    /// The Python type msgpack would decode this into, for error messages.
    pub fn python_type(&self) -> &'static str {
        match self {
            Head::Map(_) => "dict",
            Head::Array(_) => "list",
            Head::Str(_) => "str",
            Head::Bin(_) => "bytes",
            Head::Scalar(name) => name,
        }
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let Some(end) = end else {
            return Err(format!("truncated at byte {} (wanted {n} more of {})", self.pos, self.buf.len()));
        };
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn length(&mut self, width: usize) -> Result<usize, String> {
        let bytes = self.take(width)?;
        Ok(bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
    }

    fn scalar(&mut self, skip: usize, name: &'static str) -> Result<Head<'a>, String> {
        self.take(skip)?;
        Ok(Head::Scalar(name))
    }

    fn ext(&mut self, width: usize) -> Result<Head<'a>, String> {
        let len = self.length(width)?;
        self.take(1 + len)?; // type byte, then data
        Ok(Head::Scalar("ExtType"))
    }

    /// The next value's head; scalars, strings and bins are consumed whole, containers only their header.
    pub fn head(&mut self) -> Result<Head<'a>, String> {
        let marker = self.take(1)?[0];
        match marker {
            0x00..=0x7f | 0xe0..=0xff => Ok(Head::Scalar("int")),
            0x80..=0x8f => Ok(Head::Map(usize::from(marker & 0x0f))),
            0x90..=0x9f => Ok(Head::Array(usize::from(marker & 0x0f))),
            0xa0..=0xbf => Ok(Head::Str(self.take(usize::from(marker & 0x1f))?)),
            0xc0 => Ok(Head::Scalar("NoneType")),
            0xc1 => Err(format!("reserved byte 0xc1 at {}", self.pos - 1)),
            0xc2 | 0xc3 => Ok(Head::Scalar("bool")),
            0xc4..=0xc6 => {
                let len = self.length(1 << (marker - 0xc4))?;
                Ok(Head::Bin(self.take(len)?))
            }
            0xc7..=0xc9 => self.ext(1 << (marker - 0xc7)),
            0xca => self.scalar(4, "float"),
            0xcb => self.scalar(8, "float"),
            0xcc..=0xcf => self.scalar(1 << (marker - 0xcc), "int"),
            0xd0..=0xd3 => self.scalar(1 << (marker - 0xd0), "int"),
            0xd4..=0xd8 => {
                self.take(1 + (1 << (marker - 0xd4)))?;
                Ok(Head::Scalar("ExtType"))
            }
            0xd9..=0xdb => {
                let len = self.length(1 << (marker - 0xd9))?;
                Ok(Head::Str(self.take(len)?))
            }
            0xdc | 0xdd => Ok(Head::Array(self.length(2 << (marker - 0xdc))?)),
            0xde | 0xdf => Ok(Head::Map(self.length(2 << (marker - 0xde))?)),
        }
    }

    /// Skips one whole value, containers included (iteratively: nesting depth cannot overflow the stack).
    pub fn skip(&mut self) -> Result<(), String> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            match self.head()? {
                // Every item takes at least one byte, so a lying length fails on truncation, not memory.
                Head::Map(n) => pending = pending.saturating_add(n.saturating_mul(2)),
                Head::Array(n) => pending = pending.saturating_add(n),
                _ => {}
            }
        }
        Ok(())
    }

    /// Skips one whole value and returns a reader over just its bytes.
    pub fn value(&mut self) -> Result<Reader<'a>, String> {
        let start = self.pos;
        self.skip()?;
        Ok(Reader::new(&self.buf[start..self.pos]))
    }
}

#[cfg(test)]
mod tests {
    use super::{Head, Reader};

    #[test]
    fn walks_nested_values() {
        // {"a": [1, -1, 3.5, nil, true], "bb": {"x": b"\x01\x02"}, "c": 300}
        let data = [
            0x83, 0xa1, b'a', 0x95, 0x01, 0xff, 0xcb, 0, 0, 0, 0, 0, 0, 0x0c, 0x40, 0xc0, 0xc3, 0xa2, b'b', b'b', 0x81,
            0xa1, b'x', 0xc4, 0x02, 0x01, 0x02, 0xa1, b'c', 0xcd, 0x01, 0x2c,
        ];
        let mut reader = Reader::new(&data);
        assert_eq!(reader.head().unwrap(), Head::Map(3));
        assert_eq!(reader.head().unwrap(), Head::Str(b"a"));
        reader.skip().unwrap();
        assert_eq!(reader.head().unwrap(), Head::Str(b"bb"));
        let mut inner = reader.value().unwrap();
        assert_eq!(inner.head().unwrap(), Head::Map(1));
        assert_eq!(inner.head().unwrap(), Head::Str(b"x"));
        assert_eq!(inner.head().unwrap(), Head::Bin(&[1, 2]));
        assert!(inner.at_end());
        assert_eq!(reader.head().unwrap(), Head::Str(b"c"));
        assert_eq!(reader.head().unwrap(), Head::Scalar("int"));
        assert!(reader.at_end());
    }

    #[test]
    fn long_lengths_are_big_endian() {
        let mut data = vec![0xc5, 0x01, 0x00];
        data.extend(std::iter::repeat_n(7u8, 256));
        assert_eq!(Reader::new(&data).head().unwrap(), Head::Bin(&data[3..]));
        assert_eq!(Reader::new(&[0xdc, 0x01, 0x02]).head().unwrap(), Head::Array(258));
        assert_eq!(Reader::new(&[0xdf, 0, 1, 0, 0]).head().unwrap(), Head::Map(65536));
    }

    #[test]
    fn rejects_truncation_and_reserved_bytes() {
        assert!(Reader::new(&[0xc4, 0x05, 1, 2]).head().is_err());
        assert!(Reader::new(&[0xc1]).head().is_err());
        assert!(Reader::new(&[]).head().is_err());
        // An array claiming 2^32-1 items in five bytes fails on truncation, quickly.
        assert!(Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff]).skip().is_err());
    }
}
