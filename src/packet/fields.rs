//! Reading and writing the field types of MQTT 3.1.1 (section 1.5): bytes, two-byte integers,
//! length-prefixed binary data and UTF-8 strings.

use super::{Error, Field, PacketId, PacketType};

/// A cursor over the body of one packet. Every read is bounds-checked and says which field ran
/// past the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Takes everything that has not been read yet.
    #[inline]
    pub(crate) fn take_rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    #[inline]
    pub(crate) fn bytes(&mut self, n: usize, field: Field) -> Result<&'a [u8], Error> {
        let (head, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or(Error::Truncated(field))?;
        self.buf = tail;
        Ok(head)
    }

    #[inline]
    pub(crate) fn u8(&mut self, field: Field) -> Result<u8, Error> {
        let (&b, tail) = self.buf.split_first().ok_or(Error::Truncated(field))?;
        self.buf = tail;
        Ok(b)
    }

    #[inline]
    pub(crate) fn u16(&mut self, field: Field) -> Result<u16, Error> {
        match *self.bytes(2, field)? {
            [hi, lo] => Ok(u16::from_be_bytes([hi, lo])),
            _ => Err(Error::Truncated(field)),
        }
    }

    #[inline]
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, Error> {
        PacketId::new(self.u16(Field::PacketId)?).ok_or(Error::ZeroPacketId)
    }

    /// Two-byte length, then that many bytes.
    #[inline]
    pub(crate) fn binary(&mut self, field: Field) -> Result<&'a [u8], Error> {
        let len = self.u16(field)?;
        self.bytes(usize::from(len), field)
    }

    /// A length-prefixed UTF-8 string without U+0000.
    #[inline]
    pub(crate) fn string(&mut self, field: Field) -> Result<&'a str, Error> {
        let raw = self.binary(field)?;
        check_string(raw, field)
    }

    /// Succeeds if the whole body was read.
    #[inline]
    pub(crate) fn finish(&self, packet_type: PacketType) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(packet_type))
        }
    }
}

/// Checks the two rules every MQTT string obeys: well-formed UTF-8 (which already excludes the
/// surrogates U+D800..U+DFFF) and no U+0000.
#[inline]
pub(crate) fn check_string(raw: &[u8], field: Field) -> Result<&str, Error> {
    let s = utf8(raw).ok_or(Error::InvalidUtf8(field))?;
    // In UTF-8 a zero byte only ever encodes U+0000.
    if any_byte(raw, |b| b == 0) {
        return Err(Error::NullCharacter(field));
    }
    Ok(s)
}

/// [`check_string`] for a field that is a `str` already: its type guarantees well-formed UTF-8,
/// so only U+0000 is left to look for.
#[inline]
pub(crate) fn check_no_null(s: &str, field: Field) -> Result<(), Error> {
    if any_byte(s.as_bytes(), |b| b == 0) {
        Err(Error::NullCharacter(field))
    } else {
        Ok(())
    }
}

/// `raw` as a `str` if it is well-formed UTF-8: the same answer as `core::str::from_utf8`.
///
/// MQTT strings are mostly short. For those, `from_utf8` steps byte by byte through an alignment
/// check before its word-at-a-time loop can start, while the first chunk of `utf8_chunks` is a
/// tight byte loop: it ends either at the end of the input (valid, nothing invalid after it) or
/// at the first ill-formed sequence.
///
/// Only on hosts with vector units (see [`any_byte`]); elsewhere it is `from_utf8` alone, one
/// validation routine in flash instead of two.
#[inline]
pub(crate) fn utf8(raw: &[u8]) -> Option<&str> {
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) && raw.len() <= 16 {
        match raw.utf8_chunks().next() {
            None => Some(""),
            Some(chunk) if chunk.invalid().is_empty() => Some(chunk.valid()),
            Some(_) => None,
        }
    } else {
        core::str::from_utf8(raw).ok()
    }
}

/// Is there a byte in `raw` for which `pred` holds?
///
/// The same answer as `raw.iter().any(pred)`, but the scan looks at 16 bytes at a time without
/// an exit per byte, which the compiler turns into a few vector compares per block. Strings and
/// topics are short, so the tail is covered by one overlapping block rather than a byte loop.
/// `pred` should combine its comparisons with `|`, not `||`, so it stays branch-free.
///
/// That pays only where 16-byte compares exist (SSE2, NEON: the 64-bit hosts). On an MCU the
/// unrolled blocks are plain byte compares that cost about 1.5 KiB of flash for the crate's
/// three scans and gain nothing, so there it is the byte loop.
#[inline]
pub(crate) fn any_byte(raw: &[u8], pred: impl Fn(u8) -> bool + Copy) -> bool {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return raw.iter().any(|&b| pred(b));
    }
    #[inline(always)]
    fn block<const N: usize>(block: &[u8; N], pred: impl Fn(u8) -> bool) -> bool {
        block.iter().fold(false, |found, &b| found | pred(b))
    }
    if let Some(last) = raw.last_chunk::<16>() {
        let (blocks, _) = raw.as_chunks::<16>();
        blocks.iter().any(|b| block(b, pred)) || block(last, pred)
    } else if let (Some(first), Some(last)) = (raw.first_chunk::<8>(), raw.last_chunk::<8>()) {
        block(first, pred) | block(last, pred)
    } else {
        raw.iter().fold(false, |found, &b| found | pred(b))
    }
}

/// Checks that a string or binary field fits its two-byte length prefix.
#[inline]
pub(crate) fn check_len(len: usize, field: Field) -> Result<(), Error> {
    if len > usize::from(u16::MAX) {
        Err(Error::FieldTooLong(field))
    } else {
        Ok(())
    }
}

/// On-wire size of a length-prefixed field.
#[inline]
pub(crate) const fn prefixed_len(len: usize) -> usize {
    2 + len
}

/// A cursor writing into a buffer that the encoder has already sized. Should a size computation
/// ever be wrong, the writer records the overflow instead of panicking, and the encoder turns it
/// into an error. (Public only so the sealed list trait can name it; not exported.)
pub struct Writer<'a> {
    /// The part of the buffer not written yet: every write splits its bytes off the front, so
    /// one length comparison is the whole bounds check.
    rest: &'a mut [u8],
    overflow: bool,
}

impl<'a> Writer<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            rest: buf,
            overflow: false,
        }
    }

    /// How many bytes of the buffer are still unwritten.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    #[inline]
    pub(crate) fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Splits the next `n` bytes off the buffer, or records the overflow (after which nothing
    /// more is written).
    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a mut [u8]> {
        match core::mem::take(&mut self.rest).split_at_mut_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                Some(head)
            }
            None => {
                self.overflow = true;
                None
            }
        }
    }

    #[inline]
    pub(crate) fn bytes(&mut self, data: &[u8]) {
        if let Some(dst) = self.take(data.len()) {
            dst.copy_from_slice(data);
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self, b: u8) {
        match core::mem::take(&mut self.rest).split_first_mut() {
            Some((first, tail)) => {
                *first = b;
                self.rest = tail;
            }
            None => self.overflow = true,
        }
    }

    #[inline]
    pub(crate) fn u16(&mut self, v: u16) {
        match core::mem::take(&mut self.rest).split_first_chunk_mut::<2>() {
            Some((first, tail)) => {
                *first = v.to_be_bytes();
                self.rest = tail;
            }
            None => self.overflow = true,
        }
    }

    /// A length-prefixed field. Its length was checked by `check_len` before encoding began;
    /// saturating keeps this total anyway.
    #[inline]
    pub(crate) fn binary(&mut self, data: &[u8]) {
        self.u16(u16::try_from(data.len()).unwrap_or(u16::MAX));
        self.bytes(data);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_string_rules() {
        assert_eq!(check_string(b"a/b", Field::TopicName), Ok("a/b"));
        assert_eq!(
            check_string(&[0xC3, 0x28], Field::ClientId),
            Err(Error::InvalidUtf8(Field::ClientId))
        );
        // U+D800 encoded as if it were a scalar value (CESU style) is not UTF-8.
        assert_eq!(
            check_string(&[0xED, 0xA0, 0x80], Field::Username),
            Err(Error::InvalidUtf8(Field::Username))
        );
        assert_eq!(
            check_string(b"a\0b", Field::Username),
            Err(Error::NullCharacter(Field::Username))
        );
    }

    #[test]
    fn test_reader_truncation_names_the_field() {
        let mut r = Reader::new(&[0x00, 0x05, b'a']);
        assert_eq!(
            r.string(Field::WillTopic),
            Err(Error::Truncated(Field::WillTopic))
        );
        let mut r = Reader::new(&[0x00]);
        assert_eq!(r.packet_id(), Err(Error::Truncated(Field::PacketId)));
        let mut r = Reader::new(&[0x00, 0x00]);
        assert_eq!(r.packet_id(), Err(Error::ZeroPacketId));
    }

    proptest::proptest! {
        #[test]
        fn test_utf8_agrees_with_core(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            proptest::prop_assert_eq!(utf8(&raw), core::str::from_utf8(&raw).ok());
        }

        #[test]
        fn test_utf8_agrees_with_core_on_text(text in "\\PC{0,40}", cut in 0usize..200) {
            // Well-formed text, and the same text cut anywhere (often inside a character).
            let raw = text.as_bytes();
            let raw = raw.get(..cut.min(raw.len())).unwrap_or(raw);
            proptest::prop_assert_eq!(utf8(raw), core::str::from_utf8(raw).ok());
        }

        #[test]
        fn test_any_byte_agrees_with_iter(
            raw in proptest::collection::vec(proptest::sample::select(&b"ab/+#\0\xC3\xFF"[..]), 0..80)
        ) {
            let pred = |b: u8| (b == b'+') | (b == b'#') | (b == 0);
            proptest::prop_assert_eq!(any_byte(&raw, pred), raw.iter().any(|&b| pred(b)));
        }
    }

    #[test]
    fn test_any_byte_every_position() {
        // Every length up to 40 with the one matching byte at every position: covers the
        // 16-byte blocks, the overlapping last block, the two 8-byte halves and the byte loop.
        for len in 0..40 {
            assert!(!any_byte(&vec![b'a'; len], |b| b == b'#'));
            for at in 0..len {
                let mut raw = vec![b'a'; len];
                raw[at] = b'#';
                assert!(any_byte(&raw, |b| b == b'#'), "len {len}, at {at}");
            }
        }
    }

    #[test]
    fn test_writer_records_overflow() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.binary(b"ab");
        assert!(w.overflowed());
        assert_eq!(
            check_len(65_536, Field::Password),
            Err(Error::FieldTooLong(Field::Password))
        );
        assert_eq!(check_len(65_535, Field::Password), Ok(()));
    }
}
