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
    let s = core::str::from_utf8(raw).map_err(|_| Error::InvalidUtf8(field))?;
    // In UTF-8 a zero byte only ever encodes U+0000.
    if raw.contains(&0) {
        return Err(Error::NullCharacter(field));
    }
    Ok(s)
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
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn overflowed(&self) -> bool {
        self.overflow
    }

    #[inline]
    pub(crate) fn bytes(&mut self, data: &[u8]) {
        let end = self.pos + data.len();
        match self.buf.get_mut(self.pos..end) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.pos = end;
            }
            None => self.overflow = true,
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self, b: u8) {
        self.bytes(&[b]);
    }

    #[inline]
    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    /// A length-prefixed field. Its length was checked by `check_len` before encoding began;
    /// saturating keeps this total anyway.
    #[inline]
    pub(crate) fn binary(&mut self, data: &[u8]) {
        self.u16(u16::try_from(data.len()).unwrap_or(u16::MAX));
        self.bytes(data);
    }

    /// Hands the rest of the buffer to a function that writes in place (the fixed header).
    #[inline]
    pub(crate) fn with_rest(&mut self, f: impl FnOnce(&mut [u8]) -> usize) {
        match self.buf.get_mut(self.pos..) {
            Some(rest) => self.pos += f(rest),
            None => self.overflow = true,
        }
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
