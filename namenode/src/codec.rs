//! The byte encoding shared by the edit log and the image: LEB128 varints, zigzag for
//! signed values, length-prefixed strings. The decoder checks every length against a cap
//! and against the bytes that remain before it allocates, so hostile input cannot make
//! it allocate more than the input's own size.

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated {what}: needs {needed} more bytes, {available} left")]
    Truncated { what: &'static str, needed: usize, available: usize },
    #[error("varint for {what} is longer than 10 bytes")]
    VarintOverflow { what: &'static str },
    #[error("{what} of {size} exceeds the limit of {max}")]
    TooLarge { what: &'static str, size: u64, max: u64 },
    #[error("{what} is not valid UTF-8")]
    BadUtf8 { what: &'static str },
    #[error("unknown {what} tag {tag}")]
    BadTag { what: &'static str, tag: u64 },
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// Longest varint (u64 in 7-bit groups).
const VARINT_SIZE_MAX: usize = 10;

#[derive(Debug, Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    pub fn with_buf(buf: Vec<u8>) -> Encoder {
        Encoder { buf }
    }

    pub fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub fn bool(&mut self, value: bool) {
        self.buf.push(u8::from(value));
    }

    pub fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    pub fn signed(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    pub fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    pub fn opt_str(&mut self, value: Option<&str>) {
        match value {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    pub fn u32_le(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u64_le(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
}

#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes, position: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn take(&mut self, size: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if size > self.remaining() {
            return Err(CodecError::Truncated { what, needed: size, available: self.remaining() });
        }
        let slice = &self.bytes[self.position..self.position + size];
        self.position += size;
        Ok(slice)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(CodecError::BadTag { what, tag: u64::from(tag) }),
        }
    }

    pub fn varint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for index in 0..VARINT_SIZE_MAX {
            let byte = self.u8(what)?;
            let bits = u64::from(byte & 0x7f);
            if index == VARINT_SIZE_MAX - 1 && byte > 1 {
                return Err(CodecError::VarintOverflow { what });
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::VarintOverflow { what })
    }

    /// A varint that must not exceed `max`.
    pub fn varint_max(&mut self, what: &'static str, max: u64) -> Result<u64, CodecError> {
        let value = self.varint(what)?;
        if value > max {
            return Err(CodecError::TooLarge { what, size: value, max });
        }
        Ok(value)
    }

    pub fn signed(&mut self, what: &'static str) -> Result<i64, CodecError> {
        let raw = self.varint(what)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A count of following items, each at least `item_size_min` bytes: capped by `max`
    /// and by what the remaining bytes could possibly hold, so a hostile count cannot
    /// drive an allocation.
    pub fn count(&mut self, what: &'static str, max: u64, item_size_min: usize) -> Result<usize, CodecError> {
        let count = self.varint_max(what, max)?;
        let possible = (self.remaining() / item_size_min.max(1)) as u64;
        if count > possible {
            return Err(CodecError::Truncated {
                what,
                needed: (count as usize).saturating_mul(item_size_min),
                available: self.remaining(),
            });
        }
        Ok(count as usize)
    }

    pub fn bytes(&mut self, what: &'static str, size_max: usize) -> Result<&'a [u8], CodecError> {
        let size = self.varint_max(what, size_max as u64)? as usize;
        self.take(size, what)
    }

    pub fn str(&mut self, what: &'static str, size_max: usize) -> Result<&'a str, CodecError> {
        let bytes = self.bytes(what, size_max)?;
        std::str::from_utf8(bytes).map_err(|_| CodecError::BadUtf8 { what })
    }

    pub fn opt_str(&mut self, what: &'static str, size_max: usize) -> Result<Option<&'a str>, CodecError> {
        if self.bool(what)? {
            Ok(Some(self.str(what, size_max)?))
        } else {
            Ok(None)
        }
    }

    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let bytes = self.take(8, what)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let mut enc = Encoder::new();
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            enc.varint(v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            enc.signed(v);
        }
        enc.str("héllo");
        enc.opt_str(None);
        enc.opt_str(Some("x"));
        let mut dec = Decoder::new(&enc.buf);
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(dec.varint("v").unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(dec.signed("s").unwrap(), v);
        }
        assert_eq!(dec.str("s", 100).unwrap(), "héllo");
        assert_eq!(dec.opt_str("o", 10).unwrap(), None);
        assert_eq!(dec.opt_str("o", 10).unwrap(), Some("x"));
        assert!(dec.is_empty());

        assert!(Decoder::new(&[0xff; 11]).varint("v").is_err());
        assert!(Decoder::new(&[0x05, b'a']).str("s", 100).is_err());
        assert!(Decoder::new(&[0x05, b'a', b'b', b'c', b'd', b'e']).str("s", 4).is_err());
        // A count larger than the bytes could hold is refused before allocating.
        assert!(Decoder::new(&[0xff, 0xff, 0x03]).count("c", u64::MAX, 1).is_err());
    }
}
