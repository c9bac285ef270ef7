//! A compact inode name: names of up to [`INLINE_NAME_SIZE_MAX`] bytes (nearly all of them)
//! live inside the inode, longer ones on the heap. Saves an allocation per inode.

use std::cmp::Ordering;
use std::fmt;

/// Longest name stored inline; with the length byte and the tag it fills 24 bytes.
pub const INLINE_NAME_SIZE_MAX: usize = 22;

#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE_NAME_SIZE_MAX] },
    Heap(Box<str>),
}

impl Name {
    pub fn new(name: &str) -> Name {
        if name.len() <= INLINE_NAME_SIZE_MAX {
            let mut bytes = [0u8; INLINE_NAME_SIZE_MAX];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Name(Repr::Inline { len: name.len() as u8, bytes })
        } else {
            Name(Repr::Heap(name.into()))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built from a &str, so the inline bytes are always valid UTF-8.
            Repr::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Repr::Heap(s) => s,
        }
    }

    /// Bytes this name holds on the heap (0 when inline).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            Repr::Heap(s) => s.len(),
        }
    }

    pub fn cmp_bytes(&self, other: &[u8]) -> Ordering {
        self.as_bytes().cmp(other)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_names_round_trip() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        for s in [
            "",
            "a",
            "part-00000",
            "exactly-22-bytes-long!",
            "a-name-longer-than-twenty-two-bytes",
            "ünïcødé",
        ] {
            let name = Name::new(s);
            assert_eq!(name.as_str(), s);
            assert_eq!(name.as_bytes(), s.as_bytes());
            assert_eq!(name, Name::new(s));
        }
        assert_eq!(Name::new("a").cmp_bytes(b"b"), Ordering::Less);
    }
}
